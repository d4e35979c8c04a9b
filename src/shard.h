/* Shards: one render split into N contiguous chunks of its distinct
 * renders, as render farms split a job (a Slurm array task, a Kubernetes
 * Indexed Job's pod each render one chunk, and `sdmorph join` makes the
 * outputs). Pure C: parsing the spec and the chunk arithmetic. */
#ifndef SDM_SHARD_H
#define SDM_SHARD_H

#include "error.h"

/* Shards that one render may be split into. */
#define SDM_MAX_SHARDS 100000

typedef struct {
    int index; /* 1..count */
    int count; /* 0: not sharded */
} sdm_shard;

/* "I/N" (1 <= I <= N), or "auto": the scheduler's task, from
 * SLURM_ARRAY_TASK_ID, _MIN, _STEP and _COUNT (an array need not start at
 * 0 or 1), else JOB_COMPLETION_INDEX (0-based) and JOB_COMPLETION_COUNT.
 * Errors name the spec or the variable; SDM_EXIT_USAGE. */
int sdm_shard_parse(const char *spec, sdm_shard *out, sdm_error *err);

/* Renders [*first, *end) of n are shard s's: the I-th of N chunks as equal
 * as they can be, in render order. */
void sdm_shard_range(const sdm_shard *s, int n, int *first, int *end);

#endif
