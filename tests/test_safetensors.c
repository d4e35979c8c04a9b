/* The safetensors reader on hand-built files: good ones read back value
 * for value (F32, F16 with its subnormals and infinities, BF16, F64,
 * scalars, empty tensors, padded headers, from memory and from disk), and
 * hostile ones, each refused with a message saying what is wrong: every
 * length, overflow, bounds and layout case. */
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "safetensors.h"
#include "test.h"

static unsigned char file[4096];

#define OWN UINT64_MAX

/* 8-byte little-endian header length (hlen; OWN: the header's own), the
 * header, the data. */
static size_t build(const char *header, uint64_t hlen, const void *data, size_t dlen)
{
    size_t n = strlen(header);
    uint64_t len = hlen == OWN ? n : hlen;

    for (int i = 0; i < 8; i++)
        file[i] = (unsigned char)(len >> (8 * i));
    memcpy(file + 8, header, n);
    if (dlen)
        memcpy(file + 8 + n, data, dlen);
    return 8 + n + dlen;
}

static void expect_bad(const char *header, uint64_t hlen, size_t dlen, const char *part)
{
    static const unsigned char zeros[256];
    sdm_safetensors *st = (sdm_safetensors *)1;
    sdm_error err = { 0 };
    size_t n = build(header, hlen, zeros, dlen);

    CHECK_INT(sdm_safetensors_open_memory("hostile.safetensors", file, n, &st, &err), -1);
    CHECK(st == NULL);
    CHECK_INT(err.code, SDM_EXIT_USAGE);
    CHECK_CONTAINS(err.msg, "hostile.safetensors is not a valid safetensors file: ");
    CHECK_CONTAINS(err.msg, part);
}

static void le16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void test_good(void)
{
    /* F32 [2,3] at 0..24, F16 [6] at 24..36, BF16 [2] at 36..40, F64 [] at 40..48, U8 [0] at 48..48 */
    const char *header =
        "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"hand-built\"},"
        "\"b\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[24,36]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"c\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[36,40]},"
        "\"empty\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[48,48]},"
        "\"d\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[40,48]}}    ";
    unsigned char data[48];
    float a[6] = { 1.5f, -2.25f, 0.0f, 3.0e-39f, 1e30f, -0.0f }, got[6];
    double d = 2.0 / 3.0;
    sdm_safetensors *st = NULL;
    sdm_error err = { 0 };
    const sdm_st_tensor *t;
    size_t n;

    memcpy(data, a, sizeof a);
    le16(data + 24, 0x3c00); /* 1 */
    le16(data + 26, 0xc000); /* -2 */
    le16(data + 28, 0x7bff); /* 65504, the largest */
    le16(data + 30, 0x0001); /* 2^-24, the smallest subnormal */
    le16(data + 32, 0xfc00); /* -inf */
    le16(data + 34, 0x7e00); /* nan */
    le16(data + 36, 0x3f80); /* bf16 1 */
    le16(data + 38, 0xc049); /* bf16 -3.140625 */
    memcpy(data + 40, &d, sizeof d);
    n = build(header, OWN, data, sizeof data);
    CHECK_INT(sdm_safetensors_open_memory("good.safetensors", file, n, &st, &err), 0);
    if (!st) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_INT(sdm_safetensors_count(st), 5);
    /* in the order of their data */
    CHECK_STR(sdm_safetensors_tensor(st, 0)->name, "a");
    CHECK_STR(sdm_safetensors_tensor(st, 4)->name, "empty");
    CHECK(sdm_safetensors_tensor(st, 5) == NULL && sdm_safetensors_tensor(st, -1) == NULL);
    CHECK_STR(sdm_safetensors_metadata(st, "note"), "hand-built");
    CHECK(sdm_safetensors_metadata(st, "absent") == NULL);
    CHECK(sdm_safetensors_find(st, "zz") == NULL);

    t = sdm_safetensors_find(st, "a");
    CHECK(t && t->dtype == SDM_ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->numel == 6);
    CHECK_INT(sdm_safetensors_read_f32(st, t, got, 6, &err), 0);
    CHECK(!memcmp(got, a, sizeof a));

    t = sdm_safetensors_find(st, "b");
    CHECK_INT(sdm_safetensors_read_f32(st, t, got, 6, &err), 0);
    CHECK(got[0] == 1.0f && got[1] == -2.0f && got[2] == 65504.0f && got[3] == 0x1p-24f);
    CHECK(isinf(got[4]) && got[4] < 0 && isnan(got[5]));

    t = sdm_safetensors_find(st, "c");
    CHECK_INT(sdm_safetensors_read_f32(st, t, got, 2, &err), 0);
    CHECK(got[0] == 1.0f && got[1] == -3.140625f);

    t = sdm_safetensors_find(st, "d");
    CHECK(t && t->ndim == 0 && t->numel == 1);
    CHECK_INT(sdm_safetensors_read_f32(st, t, got, 1, &err), 0);
    CHECK(got[0] == (float)(2.0 / 3.0));

    /* wrong count, and a dtype that is not read as float */
    CHECK_INT(sdm_safetensors_read_f32(st, sdm_safetensors_find(st, "c"), got, 3, &err), -1);
    CHECK_CONTAINS(err.msg, "has 2 elements, not 3");
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_safetensors_read_f32(st, sdm_safetensors_find(st, "empty"), got, 0, &err), -1);
    CHECK_CONTAINS(err.msg, "tensor \"empty\" is U8; only F32, F16, BF16 and F64 are read");
    sdm_safetensors_free(&st);
    CHECK(st == NULL);
    sdm_safetensors_free(&st);

    /* an empty header with no data is a valid, empty file (white space after it is JSON's) */
    n = build("{}\n ", OWN, NULL, 0);
    CHECK_INT(sdm_safetensors_open_memory("empty.safetensors", file, n, &st, &err), 0);
    CHECK_INT(sdm_safetensors_count(st), 0);
    sdm_safetensors_free(&st);
}

static void test_file(void)
{
    char path[] = "/tmp/sdm_st_XXXXXX";
    const char *header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[70000],\"data_offsets\":[0,280000]}}";
    float *w = malloc(70000 * sizeof *w), *got = malloc(70000 * sizeof *got);
    sdm_safetensors *st = NULL;
    sdm_error err = { 0 };
    int fd = mkstemp(path);
    unsigned char len8[8];
    size_t hn = strlen(header);
    int ok = 1;

    CHECK(fd >= 0 && w && got);
    if (fd < 0 || !w || !got)
        goto end;
    /* more than one read chunk */
    for (int i = 0; i < 70000; i++)
        w[i] = (float)i * 0.5f - 7.0f;
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((unsigned long long)hn >> (8 * i));
    ok = write(fd, len8, 8) == 8 && write(fd, header, hn) == (ssize_t)hn &&
         write(fd, w, 70000 * sizeof *w) == (ssize_t)(70000 * sizeof *w);
    CHECK(ok);
    CHECK_INT(sdm_safetensors_open(path, &st, &err), 0);
    if (st) {
        CHECK_INT(sdm_safetensors_read_f32(st, sdm_safetensors_find(st, "w"), got, 70000, &err), 0);
        CHECK(!memcmp(w, got, 70000 * sizeof *w));
        /* cut short while open: a runtime error, not garbage */
        CHECK_INT(ftruncate(fd, 8 + (off_t)hn + 1000), 0);
        CHECK_INT(sdm_safetensors_read_f32(st, sdm_safetensors_find(st, "w"), got, 70000, &err), -1);
        CHECK_INT(err.code, SDM_EXIT_RUNTIME);
        CHECK_CONTAINS(err.msg, "ends before its header says it does");
        sdm_safetensors_free(&st);
    }
    /* now the file is shorter than its header says */
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_safetensors_open(path, &st, &err), -1);
    CHECK_CONTAINS(err.msg, "data_offsets [0, 280000] are not inside the 1000 bytes of data");
    /* a header length over the format's limit, in a (sparse) file big enough to hold it */
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)(100000001ull >> (8 * i));
    CHECK_INT(pwrite(fd, len8, 8, 0), 8);
    CHECK_INT(ftruncate(fd, 200000000), 0);
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_safetensors_open(path, &st, &err), -1);
    CHECK_CONTAINS(err.msg, "its header length, 100000001 bytes, is over the format's limit of 100 MB");
    /* missing files and directories name the path */
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_safetensors_open("/nonexistent/e.safetensors", &st, &err), -1);
    CHECK_STR(err.msg, "cannot open /nonexistent/e.safetensors: No such file or directory");
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_safetensors_open("/tmp", &st, &err), -1);
    CHECK_STR(err.msg, "/tmp is not a regular file");
end:
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    free(w);
    free(got);
}

static void test_hostile(void)
{
    sdm_safetensors *st = NULL;
    sdm_error err = { 0 };

    /* lengths */
    CHECK_INT(sdm_safetensors_open_memory("short", "\x02\0\0\0", 4, &st, &err), -1);
    CHECK_CONTAINS(err.msg, "it is 4 bytes long, shorter than the 8 bytes of the header length");
    expect_bad("{}", 3, 0, "its header length, 3 bytes, is more than the file holds");
    expect_bad("{}", UINT64_MAX - 1, 0, "its header length, 18446744073709551614 bytes, is more than the file holds");
    expect_bad("{}", 0, 0, "does not start with '{'");
    /* the header itself */
    expect_bad("[1,2]", OWN, 0, "does not start with '{'");
    expect_bad(" {}", OWN, 0, "does not start with '{'");
    expect_bad("{\"a\":1", OWN, 0, "its JSON header ends before its JSON does");
    expect_bad("{\"a\":}", OWN, 0, "its JSON header does not parse");
    expect_bad("{'a':1}", OWN, 0, "its JSON header does not parse (a single quote"); /* strict JSON only */
    expect_bad("{\"a\":1,}", OWN, 0, "its JSON header does not parse");
    expect_bad("{\"\xff\":1}", OWN, 0, "its JSON header does not parse"); /* not UTF-8 */
    expect_bad("{\"a\":\"x\ny\"}", OWN, 0, "a control character in a string");
    expect_bad("{} x", OWN, 0, "its JSON header does not parse");
    expect_bad("{}\n\t\r x", OWN, 0, "its JSON header does not parse (unexpected character at byte 6)");
    {
        char nul[] = "{}  ";
        size_t n = build(nul, OWN, NULL, 0);
        file[8 + 2] = '\0';
        memset(&err, 0, sizeof err);
        CHECK_INT(sdm_safetensors_open_memory("nul", file, n, &st, &err), -1);
        CHECK_CONTAINS(err.msg, "holds a NUL byte");
    }
    expect_bad("{\"__metadata__\":[1]}", OWN, 0, "\"__metadata__\" is not an object");
    expect_bad("{\"__metadata__\":{\"a\":1}}", OWN, 0, "a \"__metadata__\" value is not a string");
    /* one tensor's entry */
    expect_bad("{\"t\":3}", OWN, 0, "tensor \"t\": not an object with \"dtype\", \"shape\" and \"data_offsets\"");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", OWN, 0, "not an object with");
    expect_bad("{\"t\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", OWN, 4,
               "tensor \"t\": unknown \"dtype\"");
    expect_bad("{\"t\":{\"dtype\":1,\"shape\":[1],\"data_offsets\":[0,4]}}", OWN, 4, "unknown \"dtype\"");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", OWN, 4, "\"shape\" is not a list");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", OWN, 4,
               "a \"shape\" entry is not a non-negative integer");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", OWN, 4,
               "a \"shape\" entry is not a non-negative integer");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[18446744073709551615],\"data_offsets\":[0,4]}}", OWN, 4,
               "a \"shape\" entry is not a non-negative integer");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", OWN, 4,
               "9 dimensions; at most 8 are read");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,4]}}", OWN, 4,
               "its element count overflows 64 bits");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", OWN, 4,
               "its size in bytes overflows 64 bits");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", OWN, 4,
               "\"data_offsets\" is not two non-negative integers");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", OWN, 4,
               "\"data_offsets\" is not two non-negative integers");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", OWN, 4,
               "data_offsets [4, 0] are not inside the 4 bytes of data");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", OWN, 4,
               "data_offsets [0, 8] are not inside the 4 bytes of data");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}", OWN, 4,
               "are not inside the 4 bytes of data");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", OWN, 4,
               "data_offsets hold 4 bytes, its dtype and shape 8");
    /* the layout of the data */
    expect_bad(
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
        OWN, 12, "tensor \"b\": starts at byte 4 of the data, where the tensor before it has not ended");
    expect_bad(
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
        OWN, 12, "tensor \"b\": starts at byte 8 of the data, where nothing has ended (a gap)");
    expect_bad(
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        OWN, 8, "tensor \"b\": starts at byte 0 of the data, where the tensor before it has not ended");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", OWN, 8,
               "its tensors end at byte 4 of the data, the file at byte 8");
    expect_bad("{}", OWN, 1, "its tensors end at byte 0 of the data, the file at byte 1");
    /* a name too long for a message is cut, not overflowed */
    {
        char h[600];
        snprintf(h, sizeof h, "{\"%0300d\":5}", 7);
        expect_bad(h, OWN, 0, "tensor \"0000000000");
    }
}

int main(void)
{
    test_good();
    test_file();
    test_hostile();
    return test_report();
}
