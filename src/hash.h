/* Hashing and seed mixing, in one place so every hash and derived seed in
 * the tree is the same arithmetic: FNV-1a 64 for bytes (file and recipe
 * fingerprints, hash tables), splitmix64's finaliser to mix words (derived
 * seeds, hash combining), and an index that finds the first of equal items
 * by their hash. The values are stable across platforms: outputs, sidecars
 * and test fixtures store some of them. */
#ifndef SDM_HASH_H
#define SDM_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SDM_FNV1A64_OFFSET 0xcbf29ce484222325ull
#define SDM_FNV1A64_PRIME 0x100000001b3ull
/* 2^64 / golden ratio: splitmix64's increment, the step between seeds */
#define SDM_GOLDEN_GAMMA 0x9e3779b97f4a7c15ull

/* FNV-1a 64 of n bytes, continuing from h (SDM_FNV1A64_OFFSET to start). */
uint64_t sdm_fnv1a64(uint64_t h, const void *data, size_t n);
/* One FNV-1a step over a whole word v, as if it were one byte: (h ^ v) * prime. */
uint64_t sdm_fnv1a64_word(uint64_t h, uint64_t v);

/* splitmix64's finaliser: z ^= z >> 30, z *= 0xbf58476d1ce4e5b9,
 * z ^= z >> 27, z *= 0x94d049bb133111eb, z ^ (z >> 31). A bijection on
 * 64-bit words whose every input bit reaches every output bit. */
uint64_t sdm_mix64(uint64_t z);

/* h with v folded in, well mixed (boost's hash_combine, then sdm_mix64). */
uint64_t sdm_hash_combine(uint64_t h, uint64_t v);
/* The same for a double's bits; -0 hashes as 0, as they compare equal. */
uint64_t sdm_hash_double(uint64_t h, double d);
/* A NUL-terminated string: FNV-1a 64, then mixed. */
uint64_t sdm_hash_string(const char *s);

/* Open addressing over item indices: the hash narrows the search, `same`
 * decides exactly. Items live in the caller's array. */
typedef int (*sdm_same_fn)(const void *items, int a, int b);

typedef struct {
    int *slot; /* item index, -1 when empty */
    uint64_t *hash;
    size_t mask;
} sdm_index;

/* Room for `items` items; 0, or -1 out of memory (then free it anyway). */
int sdm_index_init(sdm_index *t, size_t items);
/* The first item added that is the same as `item`, or `item` itself, now added. */
int sdm_index_intern(sdm_index *t, uint64_t h, int item, sdm_same_fn same, const void *items);
void sdm_index_free(sdm_index *t);

#endif
