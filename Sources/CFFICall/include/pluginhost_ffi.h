/* One libffi call with a small, fixed set of argument types: what a manifest of kind "ffi"
 * can declare. The only code that touches libffi. */
#ifndef PLUGINHOST_FFI_H
#define PLUGINHOST_FFI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ph_ffi_type {
    PH_FFI_VOID = 0,   /* return type only */
    PH_FFI_INT32 = 1,
    PH_FFI_INT64 = 2,
    PH_FFI_UINT32 = 3,
    PH_FFI_UINT64 = 4,
    PH_FFI_BOOL = 5,   /* C _Bool */
    PH_FFI_STRING = 6, /* const char * */
} ph_ffi_type;

/* One argument: integers and booleans in `integer`, strings in `string`. */
typedef struct ph_ffi_value {
    int64_t integer;
    const char *_Nullable string;
} ph_ffi_value;

/*
 * Calls `function` with `count` arguments of `types` (at most 16) and stores the return
 * value, widened to 64 bits, in `result`. Returns 0, or -1 when the signature cannot be
 * prepared (bad type, too many arguments).
 */
int ph_ffi_call(void *_Nonnull function, int count, const int *_Nullable types,
                const ph_ffi_value *_Nullable values, int return_type, int64_t *_Nonnull result);

#ifdef __cplusplus
}
#endif
#endif
