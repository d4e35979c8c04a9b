/* libFuzzer target: a segment's manifest (what `sdmorph join` reads from
 * files it did not write) and the --shard spec, on any bytes. A manifest
 * that parses must describe renders inside the plan and a frames file
 * beside it; a spec that parses must give 1 <= I <= N, and the shards of N
 * must tile any plan. Built by `make fuzz` with -fsanitize=fuzzer,address,undefined. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "segment.h"
#include "shard.h"

static void check_shard(const uint8_t *data, size_t size)
{
    char spec[64];
    sdm_shard s;
    sdm_error err = { 0 };
    int first, end, next = 0;

    if (size >= sizeof spec)
        size = sizeof spec - 1;
    memcpy(spec, data, size);
    spec[size] = '\0';
    if (sdm_shard_parse(spec, &s, &err)) {
        if (!err.msg[0])
            abort();
        return;
    }
    if (s.index < 1 || s.index > s.count)
        abort();
    for (int n = s.count; n <= s.count + 3; n++, next = 0) {
        for (sdm_shard t = { 1, s.count }; t.index <= s.count && t.index <= 50; t.index++) {
            sdm_shard_range(&t, n, &first, &end);
            if (first != next || end < first || end > n)
                abort();
            next = end;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdm_segment_info s;
    sdm_error err = { 0 };

    check_shard(data, size);
    if (sdm_segment_parse((const char *)data, size, "dir/x.json", &s, &err) == 0) {
        if (s.first < 0 || s.n < 1 || s.first + s.n > s.n_total || s.index < 1 || s.index > s.count ||
            strncmp(s.frames, "dir/", 4) || strchr(s.frames + 4, '/'))
            abort();
        sdm_segment_clear(&s);
    } else if (!err.msg[0]) {
        abort();
    }
    return 0;
}
