#include "hash.h"

#include <stdlib.h>
#include <string.h>

uint64_t sdm_fnv1a64(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * SDM_FNV1A64_PRIME;
    return h;
}

uint64_t sdm_fnv1a64_word(uint64_t h, uint64_t v)
{
    return (h ^ v) * SDM_FNV1A64_PRIME;
}

uint64_t sdm_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t sdm_hash_combine(uint64_t h, uint64_t v)
{
    return sdm_mix64(h ^ (v + SDM_GOLDEN_GAMMA + (h << 6) + (h >> 2)));
}

uint64_t sdm_hash_double(uint64_t h, double d)
{
    uint64_t bits;

    if (d == 0)
        d = 0; /* -0 == 0: equal values, equal hashes */
    memcpy(&bits, &d, sizeof bits);
    return sdm_hash_combine(h, bits);
}

uint64_t sdm_hash_string(const char *s)
{
    return sdm_hash_combine(sdm_fnv1a64(SDM_FNV1A64_OFFSET, s, strlen(s)), 0);
}

int sdm_index_init(sdm_index *t, size_t items)
{
    size_t cap = 16;

    while (cap < 2 * items)
        cap *= 2;
    t->slot = malloc(cap * sizeof *t->slot);
    t->hash = malloc(cap * sizeof *t->hash);
    t->mask = cap - 1;
    if (!t->slot || !t->hash)
        return -1;
    for (size_t i = 0; i <= t->mask; i++)
        t->slot[i] = -1;
    return 0;
}

int sdm_index_intern(sdm_index *t, uint64_t h, int item, sdm_same_fn same, const void *items)
{
    size_t i = h & t->mask;

    while (t->slot[i] >= 0) {
        if (t->hash[i] == h && same(items, t->slot[i], item))
            return t->slot[i];
        i = (i + 1) & t->mask;
    }
    t->slot[i] = item;
    t->hash[i] = h;
    return item;
}

void sdm_index_free(sdm_index *t)
{
    free(t->slot);
    free(t->hash);
    memset(t, 0, sizeof *t);
}
