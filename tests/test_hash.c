/* The shared helpers of src/: hash.h (the values are pinned: outputs,
 * sidecars and fixtures store some of them; the index finds the first of
 * equal items) and enum_table.h (names, aliases, lists). */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "bundle.h"
#include "condition.h"
#include "enum_table.h"
#include "hash.h"
#include "test.h"

static void test_fnv1a(void)
{
    /* the published FNV-1a 64 test vectors */
    CHECK(sdm_fnv1a64(SDM_FNV1A64_OFFSET, "", 0) == 0xcbf29ce484222325ull);
    CHECK(sdm_fnv1a64(SDM_FNV1A64_OFFSET, "a", 1) == 0xaf63dc4c8601ec8cull);
    CHECK(sdm_fnv1a64(SDM_FNV1A64_OFFSET, "foobar", 6) == 0x85944171f73967e8ull);
    /* in pieces, the same as whole */
    CHECK(sdm_fnv1a64(sdm_fnv1a64(SDM_FNV1A64_OFFSET, "foo", 3), "bar", 3) == 0x85944171f73967e8ull);
    /* a word step is one byte step for a word below 256 */
    CHECK(sdm_fnv1a64_word(SDM_FNV1A64_OFFSET, 'a') == 0xaf63dc4c8601ec8cull);
}

static void test_file_fingerprint(void)
{
    char path[64], hex[32];
    FILE *f;

    snprintf(path, sizeof path, "/tmp/sdm-hash-%ld.txt", (long)getpid());
    f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("hello\n", f);
    fclose(f);
    sdm_file_fingerprint(path, hex, sizeof hex);
    CHECK_STR(hex, "a9bc80cca21f28b3"); /* FNV-1a 64 of "hello\n" */
    unlink(path);
    sdm_file_fingerprint(path, hex, sizeof hex);
    CHECK_STR(hex, "0000000000000000");
}

static void test_mix(void)
{
    /* splitmix64 seeded with 0: its first two outputs */
    CHECK(sdm_mix64(SDM_GOLDEN_GAMMA) == 0xe220a8397b1dcdafull);
    CHECK(sdm_mix64(2 * SDM_GOLDEN_GAMMA) == 0x6e789e6aa1b965f4ull);
    CHECK(sdm_mix64(0) == 0);
    /* the walk's per-frame noise seeds, as every earlier release made them */
    CHECK(sdm_walk_noise_seed(0, 0) == 0xe220a8397b1dcdafull);
    CHECK(sdm_walk_noise_seed(1234, 5) == 0x9a1c0a098e87b403ull);
    CHECK(sdm_walk_noise_seed(UINT64_MAX, 99) == 0xb8b318ef32d196a8ull);
    CHECK(sdm_hash_combine(0, 0) == 0xe220a8397b1dcdafull);
    CHECK(sdm_hash_string("abc") == sdm_hash_combine(sdm_fnv1a64(SDM_FNV1A64_OFFSET, "abc", 3), 0));
    CHECK(sdm_hash_string("abc") == 0x8dd39a481e2f8ab2ull);
    CHECK(sdm_hash_double(7, -0.0) == sdm_hash_double(7, 0.0));
    CHECK(sdm_hash_double(7, 0.5) != sdm_hash_double(7, 0.25));
}

static int same_int(const void *items, int a, int b)
{
    const int *v = items;
    return v[a] == v[b];
}

/* Every item maps to the first equal one, even when all hashes collide. */
static void test_index(void)
{
    static const int values[] = { 5, 7, 5, 9, 7, 7, 1, 5 };
    static const int first[] = { 0, 1, 0, 3, 1, 1, 6, 0 };
    int n = (int)(sizeof values / sizeof values[0]);

    for (int collide = 0; collide < 2; collide++) {
        sdm_index t = { 0 };
        CHECK_INT(sdm_index_init(&t, (size_t)n), 0);
        for (int i = 0; i < n; i++) {
            uint64_t h = collide ? 42 : sdm_hash_combine(0, (uint64_t)values[i]);
            CHECK_INT(sdm_index_intern(&t, h, i, same_int, values), first[i]);
        }
        sdm_index_free(&t);
        CHECK(t.slot == NULL);
    }
}

enum { RED, GREEN = 5, BLUE };
static const sdm_enum_entry colour_entries[] = {
    { "red", RED }, { "green", GREEN }, { "blue", BLUE }, { "verde", GREEN }
};
static const sdm_enum_table colours = SDM_ENUM_TABLE(colour_entries);

static void test_enum_table(void)
{
    static const sdm_enum_table one = { colour_entries, 1, "none" };
    char list[64];
    int v = -7;

    CHECK_STR(sdm_enum_name(&colours, GREEN), "green"); /* the first entry, never the alias */
    CHECK_STR(sdm_enum_name(&colours, 4), "?");
    CHECK_STR(sdm_enum_name(&one, BLUE), "none");
    CHECK_INT(sdm_enum_parse(&colours, "verde", &v), 0);
    CHECK_INT(v, GREEN);
    CHECK_INT(sdm_enum_parse(&colours, "blue", &v), 0);
    CHECK_INT(v, BLUE);
    v = -7;
    CHECK_INT(sdm_enum_parse(&colours, "Blue", &v), -1); /* exact: names are case-sensitive */
    CHECK_INT(sdm_enum_parse(&colours, NULL, &v), -1);
    CHECK_INT(sdm_enum_parse(&colours, "", &v), -1);
    CHECK_INT(v, -7); /* untouched on failure */
    sdm_enum_list(&colours, list, sizeof list);
    CHECK_STR(list, "red, green or blue");
    sdm_enum_list(&one, list, sizeof list);
    CHECK_STR(list, "red");
    sdm_enum_list(&colours, list, 6); /* cut, still a string */
    CHECK_STR(list, "red, ");
}

/* The public pairs over those tables, aliases included. */
static void test_enum_pairs(void)
{
    sdm_prediction p;
    sdm_beta_schedule b;

    CHECK_INT(sdm_prediction_from_str("v", &p), 0);
    CHECK_INT(p, SDM_PRED_V);
    CHECK_STR(sdm_prediction_name(p), "v_prediction");
    CHECK_INT(sdm_prediction_from_str("epsilon", &p), 0);
    CHECK_INT(p, SDM_PRED_EPSILON);
    CHECK_INT(sdm_prediction_from_str(NULL, &p), -1);
    CHECK_INT(sdm_beta_schedule_from_str("linear", &b), 0);
    CHECK_INT(b, SDM_BETAS_LINEAR);
    CHECK_STR(sdm_beta_schedule_name(SDM_BETAS_SCALED_LINEAR), "scaled_linear");
    CHECK_STR(sdm_beta_schedule_name(SDM_BETAS_COUNT), "?");
    CHECK_STR(sdm_dtype_name(SDM_DTYPE_COUNT), "unknown");
}

int main(void)
{
    test_enum_table();
    test_enum_pairs();
    test_fnv1a();
    test_file_fingerprint();
    test_mix();
    test_index();
    return test_report();
}
