/* An ordered pool of worker threads for the encoders: jobs go in numbered,
 * run on whichever worker is free, and come back out in the order they went
 * in, so a format can spread its per-frame work over the machine's cores
 * and still write its packets in order. At most `depth` jobs are in flight
 * (submitted and not yet taken): the caller takes the oldest before it
 * submits another, so memory is bounded and a slow pool holds its producer
 * back. With one thread no thread is started: submit runs the job at once,
 * on the caller's thread.
 *
 * Call submit/take/poll from one thread. Threads started here inherit the
 * caller's signal mask (the sink's encoder threads block SIGINT and friends). */
#ifndef SDM_WORKPOOL_H
#define SDM_WORKPOOL_H

#include "error.h"

typedef struct sdm_workpool sdm_workpool;

/* Runs one job on worker `worker` (0..threads-1: a worker may keep state of
 * its own, indexed by it). Returns 0, or -1 with the job's own error set. */
typedef int (*sdm_work_fn)(void *ctx, int worker, void *job);

/* threads >= 1; depth >= threads (2 * threads keeps every worker busy while
 * the caller handles finished jobs). */
int sdm_workpool_open(int threads, int depth, sdm_work_fn fn, void *ctx, sdm_workpool **out, sdm_error *err);
/* Queues a job (the caller's; it leaves it alone until take or poll gives
 * it back). -1 if `depth` jobs are in flight already. */
int sdm_workpool_submit(sdm_workpool *p, void *job);
/* The oldest job in flight, waiting until it has run, with fn's result in
 * *rc; NULL if none is in flight. */
void *sdm_workpool_take(sdm_workpool *p, int *rc);
/* The same, but NULL at once if the oldest job has not finished. */
void *sdm_workpool_poll(sdm_workpool *p, int *rc);
/* Jobs submitted and not yet taken. */
int sdm_workpool_in_flight(const sdm_workpool *p);
int sdm_workpool_depth(const sdm_workpool *p);
/* Jobs still queued are dropped, running ones finish; joins the workers. NULL-safe. */
void sdm_workpool_free(sdm_workpool **p);

/* Workers for a pool: `wanted` if > 0, else one per online CPU, at most 8. */
int sdm_workpool_threads(int wanted);

#endif
