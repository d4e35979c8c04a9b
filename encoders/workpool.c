/* The ordered pool: a ring of `depth` entries. The caller's thread adds at
 * tail and takes at head; workers start the entries between next_run and
 * tail in order, and mark each done. Only the caller moves head and tail,
 * so it reads them without the lock. */
#include "workpool.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

typedef struct {
    void *job;
    int state;
    int rc;
} pool_entry;

typedef struct {
    sdm_workpool *pool;
    int index;
    pthread_t thread;
} pool_worker;

struct sdm_workpool {
    sdm_work_fn fn;
    void *ctx;
    pool_entry *ring;
    int depth;
    int64_t head, tail; /* next to take, next to submit (the caller's) */
    int64_t next_run; /* next queued entry a worker starts (under lock) */
    pool_worker *workers;
    int n_workers, started; /* threads asked for; started (0 when run inline) */
    int stopping;
    pthread_mutex_t lock;
    pthread_cond_t work; /* an entry was queued, or stopping */
    pthread_cond_t done; /* an entry finished */
};

static void *worker_main(void *arg)
{
    pool_worker *w = arg;
    sdm_workpool *p = w->pool;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        pool_entry *e;
        int rc;

        while (!p->stopping && p->next_run == p->tail)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->stopping)
            break;
        e = &p->ring[p->next_run++ % p->depth];
        e->state = JOB_RUNNING;
        pthread_mutex_unlock(&p->lock);
        rc = p->fn(p->ctx, w->index, e->job);
        pthread_mutex_lock(&p->lock);
        e->rc = rc;
        e->state = JOB_DONE;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int sdm_workpool_threads(int wanted)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (wanted > 0)
        return wanted;
    return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

int sdm_workpool_open(int threads, int depth, sdm_work_fn fn, void *ctx, sdm_workpool **out, sdm_error *err)
{
    sdm_workpool *p = NULL;
    int ret = -1;

    *out = NULL;
    if (threads < 1 || depth < threads || !fn)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "worker pool: %d threads, depth %d", threads, depth);
    p = calloc(1, sizeof *p);
    if (!p)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    p->fn = fn;
    p->ctx = ctx;
    p->depth = depth;
    p->n_workers = threads;
    p->ring = calloc((size_t)depth, sizeof *p->ring);
    p->workers = calloc((size_t)threads, sizeof *p->workers);
    if (!p->ring || !p->workers) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    for (int i = 0; threads > 1 && i < threads; i++) {
        int e;
        p->workers[i] = (pool_worker){ p, i, 0 };
        e = pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
        if (e) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot start an encoder worker thread: %s", strerror(e));
            goto end;
        }
        p->started++;
    }
    *out = p;
    p = NULL;
    ret = 0;
end:
    sdm_workpool_free(&p);
    return ret;
}

int sdm_workpool_submit(sdm_workpool *p, void *job)
{
    pool_entry *e;

    if (p->tail - p->head >= p->depth)
        return -1;
    e = &p->ring[p->tail % p->depth];
    if (p->started == 0) { /* one thread: run it here */
        *e = (pool_entry){ job, JOB_DONE, p->fn(p->ctx, 0, job) };
        p->tail++;
        return 0;
    }
    pthread_mutex_lock(&p->lock);
    *e = (pool_entry){ job, JOB_QUEUED, 0 };
    p->tail++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static void *take_oldest(sdm_workpool *p, int wait, int *rc)
{
    pool_entry *e;
    void *job = NULL;

    if (p->head == p->tail)
        return NULL;
    e = &p->ring[p->head % p->depth];
    pthread_mutex_lock(&p->lock);
    while (wait && e->state != JOB_DONE)
        pthread_cond_wait(&p->done, &p->lock);
    if (e->state == JOB_DONE) {
        job = e->job;
        *rc = e->rc;
        p->head++;
    }
    pthread_mutex_unlock(&p->lock);
    return job;
}

void *sdm_workpool_take(sdm_workpool *p, int *rc)
{
    return take_oldest(p, 1, rc);
}

void *sdm_workpool_poll(sdm_workpool *p, int *rc)
{
    return take_oldest(p, 0, rc);
}

int sdm_workpool_in_flight(const sdm_workpool *p)
{
    return (int)(p->tail - p->head);
}

int sdm_workpool_depth(const sdm_workpool *p)
{
    return p->depth;
}

void sdm_workpool_free(sdm_workpool **pp)
{
    sdm_workpool *p = pp ? *pp : NULL;

    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->workers[i].thread, NULL);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->lock);
    free(p->ring);
    free(p->workers);
    free(p);
    *pp = NULL;
}
