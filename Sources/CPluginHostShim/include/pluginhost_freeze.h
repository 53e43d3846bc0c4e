/*
 * What the freeze guard's threads share: sequentially consistent atomics on plain memory
 * (the freeze journal is a shared file mapping, updated by several threads and read by the
 * host), which Swift cannot do on a raw pointer. No function here allocates or blocks.
 */
#ifndef PLUGINHOST_FREEZE_H
#define PLUGINHOST_FREEZE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(hidden)

uint8_t ph_atomic_load_u8(const void *_Nonnull address);
void ph_atomic_store_u8(void *_Nonnull address, uint8_t value);
/* Stores `desired` if the byte holds `expected`; returns 1 if it did, else 0. */
int ph_atomic_exchange_u8(void *_Nonnull address, uint8_t expected, uint8_t desired);

int32_t ph_atomic_load_i32(const void *_Nonnull address);
void ph_atomic_store_i32(void *_Nonnull address, int32_t value);

/* 8-byte aligned. */
uint64_t ph_atomic_load_u64(const void *_Nonnull address);
void ph_atomic_store_u64(void *_Nonnull address, uint64_t value);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
