#include "shard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A whole decimal number in [lo, hi]; 0, or -1. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int env_long(const char *name, long lo, long hi, long *out, sdm_error *err)
{
    const char *v = getenv(name);

    if (parse_long(v, lo, hi, out))
        return sdm_error_set(err, SDM_EXIT_USAGE, "--shard auto: %s is %s%s%s, not a number in %ld..%ld", name,
                             v ? "'" : "", v ? v : "not set", v ? "'" : "", lo, hi);
    return 0;
}

/* A Slurm array's task: its index counted from the array's first, in steps. */
static int from_slurm(sdm_shard *out, sdm_error *err)
{
    long id, min, step = 1, count;

    if (env_long("SLURM_ARRAY_TASK_ID", 0, 1L << 30, &id, err) ||
        env_long("SLURM_ARRAY_TASK_MIN", 0, 1L << 30, &min, err) ||
        (getenv("SLURM_ARRAY_TASK_STEP") && env_long("SLURM_ARRAY_TASK_STEP", 1, 1L << 30, &step, err)) ||
        env_long("SLURM_ARRAY_TASK_COUNT", 1, SDM_MAX_SHARDS, &count, err))
        return -1;
    if (id < min || (id - min) % step || (id - min) / step >= count)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "--shard auto: SLURM_ARRAY_TASK_ID %ld is not one of the %ld "
                             "tasks from %ld in steps of %ld",
                             id, count, min, step);
    out->index = (int)((id - min) / step) + 1;
    out->count = (int)count;
    return 0;
}

static int from_kubernetes(sdm_shard *out, sdm_error *err)
{
    long index, count;

    if (env_long("JOB_COMPLETION_COUNT", 1, SDM_MAX_SHARDS, &count, err) ||
        env_long("JOB_COMPLETION_INDEX", 0, count - 1, &index, err))
        return -1;
    out->index = (int)index + 1;
    out->count = (int)count;
    return 0;
}

int sdm_shard_parse(const char *spec, sdm_shard *out, sdm_error *err)
{
    const char *slash = spec ? strchr(spec, '/') : NULL;
    char head[32];
    long i, n;

    memset(out, 0, sizeof *out);
    if (spec && !strcmp(spec, "auto")) {
        if (getenv("SLURM_ARRAY_TASK_ID"))
            return from_slurm(out, err);
        if (getenv("JOB_COMPLETION_INDEX"))
            return from_kubernetes(out, err);
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "--shard auto: neither SLURM_ARRAY_TASK_ID (a Slurm array "
                             "task) nor JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set");
    }
    if (!slash || (size_t)(slash - spec) >= sizeof head)
        return sdm_error_set(err, SDM_EXIT_USAGE, "--shard must be I/N (e.g. 2/3) or auto, not '%s'", spec ? spec : "");
    memcpy(head, spec, (size_t)(slash - spec));
    head[slash - spec] = '\0';
    if (parse_long(slash + 1, 1, SDM_MAX_SHARDS, &n) || parse_long(head, 1, n, &i))
        return sdm_error_set(err, SDM_EXIT_USAGE, "--shard %s: I/N wants 1 <= I <= N <= %d", spec, SDM_MAX_SHARDS);
    out->index = (int)i;
    out->count = (int)n;
    return 0;
}

void sdm_shard_range(const sdm_shard *s, int n, int *first, int *end)
{
    *first = (int)((long long)(s->index - 1) * n / s->count);
    *end = (int)((long long)s->index * n / s->count);
}
