/* The encoders' ordered worker pool: jobs that finish out of order come
 * back in the order they went in, no more than `depth` are in flight, a
 * failed job's result comes back with it, and one thread runs jobs inline. */
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "test.h"
#include "workpool.h"

typedef struct {
    int index;
    int worker;
    int ran;
} job;

typedef struct {
    pthread_mutex_t lock;
    int running, most_running;
    pthread_t inline_thread;
    int ran_elsewhere;
} pool_stats;

/* Later jobs sleep less, so they finish before earlier ones; job 13 fails. */
static int run_job(void *ctx, int worker, void *arg)
{
    pool_stats *st = ctx;
    job *j = arg;
    struct timespec ts = { 0, (long)(20 - j->index % 20) * 300000L };

    pthread_mutex_lock(&st->lock);
    if (++st->running > st->most_running)
        st->most_running = st->running;
    if (!pthread_equal(pthread_self(), st->inline_thread))
        st->ran_elsewhere = 1;
    pthread_mutex_unlock(&st->lock);
    nanosleep(&ts, NULL);
    j->worker = worker;
    j->ran = 1;
    pthread_mutex_lock(&st->lock);
    st->running--;
    pthread_mutex_unlock(&st->lock);
    return j->index == 13 ? -1 : 0;
}

static void run_pool(int threads, int depth)
{
    enum { N = 60 };
    job jobs[N];
    pool_stats st = { .lock = PTHREAD_MUTEX_INITIALIZER, .inline_thread = pthread_self() };
    sdm_workpool *p = NULL;
    sdm_error err = { 0 };
    int next_out = 0, rc = 0, order_ok = 1, rc_ok = 1, bounded = 1, workers_ok = 1, refused_ok = 1;

    CHECK_INT(sdm_workpool_open(threads, depth, run_job, &st, &p, &err), 0);
    if (!p)
        return;
    CHECK_INT(sdm_workpool_depth(p), depth);
    for (int i = 0; i < N; i++) {
        job *j;
        jobs[i] = (job){ i, -1, 0 };
        if (sdm_workpool_in_flight(p) == depth) {
            /* full: refused. A flag, not a check per refusal: how often the
               pool is full depends on the threads' timing, and the suite's
               count of checks should not */
            refused_ok &= sdm_workpool_submit(p, &jobs[i]) == -1;
            j = sdm_workpool_take(p, &rc);
            order_ok &= j == &jobs[next_out++] && j->ran;
            rc_ok &= rc == (j->index == 13 ? -1 : 0);
        }
        CHECK_INT(sdm_workpool_submit(p, &jobs[i]), 0);
        bounded &= sdm_workpool_in_flight(p) <= depth;
        while ((j = sdm_workpool_poll(p, &rc))) {
            order_ok &= j == &jobs[next_out++] && j->ran;
            rc_ok &= rc == (j->index == 13 ? -1 : 0);
        }
    }
    for (job *j; (j = sdm_workpool_take(p, &rc));) {
        order_ok &= j == &jobs[next_out++] && j->ran;
        rc_ok &= rc == (j->index == 13 ? -1 : 0);
    }
    for (int i = 0; i < N; i++)
        workers_ok &= jobs[i].worker >= 0 && jobs[i].worker < threads;
    CHECK_INT(next_out, N);
    CHECK(refused_ok);
    CHECK(order_ok);
    CHECK(rc_ok);
    CHECK(bounded);
    CHECK(workers_ok);
    CHECK_INT(sdm_workpool_in_flight(p), 0);
    CHECK(sdm_workpool_take(p, &rc) == NULL);
    CHECK(st.most_running <= threads);
    if (threads == 1) {
        CHECK_INT(st.ran_elsewhere, 0); /* inline, on this thread */
    } else {
        CHECK_INT(st.ran_elsewhere, 1);
        CHECK(st.most_running > 1); /* they did run side by side */
    }
    printf("pool: %d threads, depth %d: %d jobs in order, at most %d at once\n", threads, depth, N, st.most_running);
    sdm_workpool_free(&p);
    CHECK(p == NULL);
}

int main(void)
{
    sdm_workpool *p = NULL;
    sdm_error err = { 0 };

    run_pool(1, 2);
    run_pool(4, 8);
    run_pool(3, 3);
    /* bad sizes: refused, nothing started */
    CHECK_INT(sdm_workpool_open(0, 2, run_job, NULL, &p, &err), -1);
    CHECK_INT(sdm_workpool_open(4, 2, run_job, NULL, &p, &err), -1);
    CHECK(p == NULL);
    CHECK_INT(sdm_workpool_threads(5), 5);
    CHECK(sdm_workpool_threads(0) >= 1 && sdm_workpool_threads(0) <= 8);
    /* a pool freed with jobs queued and running drops the queued ones */
    {
        job jobs[6];
        pool_stats st = { .lock = PTHREAD_MUTEX_INITIALIZER, .inline_thread = pthread_self() };
        CHECK_INT(sdm_workpool_open(2, 6, run_job, &st, &p, &err), 0);
        for (int i = 0; i < 6; i++) {
            jobs[i] = (job){ i, -1, 0 };
            CHECK_INT(sdm_workpool_submit(p, &jobs[i]), 0);
        }
        sdm_workpool_free(&p);
        CHECK(p == NULL);
    }
    sdm_workpool_free(&p); /* NULL-safe */
    return test_report();
}
