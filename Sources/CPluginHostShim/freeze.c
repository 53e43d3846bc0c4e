#include "pluginhost_freeze.h"

uint8_t ph_atomic_load_u8(const void *address) {
    return __atomic_load_n((const uint8_t *)address, __ATOMIC_SEQ_CST);
}

void ph_atomic_store_u8(void *address, uint8_t value) {
    __atomic_store_n((uint8_t *)address, value, __ATOMIC_SEQ_CST);
}

int ph_atomic_exchange_u8(void *address, uint8_t expected, uint8_t desired) {
    return __atomic_compare_exchange_n((uint8_t *)address, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

int32_t ph_atomic_load_i32(const void *address) {
    return __atomic_load_n((const int32_t *)address, __ATOMIC_SEQ_CST);
}

void ph_atomic_store_i32(void *address, int32_t value) {
    __atomic_store_n((int32_t *)address, value, __ATOMIC_SEQ_CST);
}

uint64_t ph_atomic_load_u64(const void *address) {
    return __atomic_load_n((const uint64_t *)address, __ATOMIC_SEQ_CST);
}

void ph_atomic_store_u64(void *address, uint64_t value) {
    __atomic_store_n((uint64_t *)address, value, __ATOMIC_SEQ_CST);
}
