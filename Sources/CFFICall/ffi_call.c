#include "pluginhost_ffi.h"

#include <ffi.h>
#include <stdbool.h>

static ffi_type *ffi_type_for(int type) {
    switch (type) {
    case PH_FFI_VOID: return &ffi_type_void;
    case PH_FFI_INT32: return &ffi_type_sint32;
    case PH_FFI_INT64: return &ffi_type_sint64;
    case PH_FFI_UINT32: return &ffi_type_uint32;
    case PH_FFI_UINT64: return &ffi_type_uint64;
    case PH_FFI_BOOL: return &ffi_type_uint8;
    case PH_FFI_STRING: return &ffi_type_pointer;
    default: return NULL;
    }
}

int ph_ffi_call(void *function, int count, const int *types, const ph_ffi_value *values,
                int return_type, int64_t *result) {
    enum { MAX_ARGS = 16 };
    if (count < 0 || count > MAX_ARGS) return -1;
    ffi_type *arg_types[MAX_ARGS];
    void *arg_values[MAX_ARGS];
    /* Storage of the right width for each argument, so libffi reads exactly what C expects. */
    union { int32_t i32; int64_t i64; uint32_t u32; uint64_t u64; bool b; const char *s; } storage[MAX_ARGS];
    for (int i = 0; i < count; i++) {
        if ((arg_types[i] = ffi_type_for(types[i])) == NULL || types[i] == PH_FFI_VOID) return -1;
        switch (types[i]) {
        case PH_FFI_INT32: storage[i].i32 = (int32_t)values[i].integer; break;
        case PH_FFI_INT64: storage[i].i64 = values[i].integer; break;
        case PH_FFI_UINT32: storage[i].u32 = (uint32_t)values[i].integer; break;
        case PH_FFI_UINT64: storage[i].u64 = (uint64_t)values[i].integer; break;
        case PH_FFI_BOOL: storage[i].b = values[i].integer != 0; break;
        case PH_FFI_STRING: storage[i].s = values[i].string; break;
        }
        arg_values[i] = &storage[i];
    }
    ffi_type *rtype = ffi_type_for(return_type);
    if (rtype == NULL || return_type == PH_FFI_STRING) return -1;
    ffi_cif cif;
    if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, (unsigned)count, rtype, arg_types) != FFI_OK) return -1;
    ffi_arg raw = 0; /* at least as wide as a register; small integer returns are widened */
    int64_t wide = 0;
    void *rvalue = (return_type == PH_FFI_INT64 || return_type == PH_FFI_UINT64) ? (void *)&wide : (void *)&raw;
    ffi_call(&cif, FFI_FN(function), rvalue, arg_values);
    switch (return_type) {
    case PH_FFI_VOID: *result = 0; break;
    case PH_FFI_INT32: *result = (int32_t)raw; break;
    case PH_FFI_UINT32: *result = (uint32_t)raw; break;
    case PH_FFI_BOOL: *result = (uint8_t)raw != 0; break;
    default: *result = wide; break;
    }
    return 0;
}
