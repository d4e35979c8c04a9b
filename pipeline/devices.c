#include "devices.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "join.h"
#include "paths.h"
#include "preflight.h"

typedef struct {
    const sdm_recipe *r;
    sdm_render_params p;
    const char *segment; /* the .rgb */
    char manifest[SDM_PATH_MAX];
    sdm_render_stats stats;
    sdm_error err;
    int rc;
} device_job;

static void *device_main(void *arg)
{
    device_job *j = arg;

    j->rc = sdm_render(j->r, &j->p, &j->stats, &j->err);
    return NULL;
}

/* A folder of our own beside the first output, for the segments. */
static int make_scratch(const sdm_preflight *pf, char *dir, size_t len, sdm_error *err)
{
    const char *first = pf->outs.files[0].path, *base = sdm_path_base(first);

    if (snprintf(dir, len, "%.*s.sdmorph-devices-XXXXXX", (int)(base - first), first) >= (int)len)
        return sdm_error_set(err, SDM_EXIT_USAGE, "output '%s': path too long", first);
    if (!mkdtemp(dir))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot make a folder beside %s: %s", first, strerror(errno));
    return 0;
}

/* Every file the shards left, then the folder. */
static void remove_scratch(const char *dir, device_job *jobs, int n)
{
    char partial[SDM_PATH_MAX];

    for (int i = 0; i < n; i++) {
        if (!jobs[i].segment)
            continue;
        unlink(jobs[i].segment);
        unlink(jobs[i].manifest);
        if (!sdm_partial_path(jobs[i].segment, partial, sizeof partial))
            unlink(partial);
        free((char *)jobs[i].segment);
    }
    rmdir(dir);
}

/* The shards on their threads; 0, 1 if one was interrupted, -1 (err: the first failure). */
static int run_shards(device_job *jobs, int n, sdm_error *err)
{
    pthread_t *t = calloc((size_t)n, sizeof *t);
    int started = 0, rc = 0;
    char dev[32];

    if (!t)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    for (; started < n; started++)
        if (pthread_create(&t[started], NULL, device_main, &jobs[started]))
            break;
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    free(t);
    if (started < n)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot start a thread per device");
    for (int i = 0; i < n && rc >= 0; i++) {
        if (jobs[i].rc < 0) {
            sdm_device d = jobs[i].p.device;
            snprintf(dev, sizeof dev, d.type == SDM_DEVICE_CPU ? "cpu (device %d)" : "cuda:%d",
                     d.type == SDM_DEVICE_CPU ? i + 1 : d.index);
            rc = sdm_error_set(err, jobs[i].err.code, "%s: %s", dev, jobs[i].err.msg);
        } else if (jobs[i].rc == 1) {
            rc = 1;
        }
    }
    return rc;
}

static int set_up_jobs(const sdm_recipe *r, const sdm_render_params *p, const sdm_device *devs, int n, const char *dir,
                       device_job *jobs, sdm_error *err)
{
    for (int i = 0; i < n; i++) {
        char rgb[SDM_PATH_MAX];
        device_job *j = &jobs[i];
        j->r = r;
        j->p = *p;
        j->p.device = devs[i];
        j->p.engine = NULL; /* each thread opens its own on its device */
        j->p.on_written = NULL;
        j->p.shard.index = i + 1;
        j->p.shard.count = n;
        j->p.progress = 0;
        snprintf(rgb, sizeof rgb, "%s/shard-%d.rgb", dir, i + 1);
        if (sdm_path_with_ext(rgb, "json", j->manifest, sizeof j->manifest) || !(j->segment = strdup(rgb)))
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        j->p.outputs = &j->segment;
        j->p.n_outputs = 1;
    }
    return 0;
}

static void sum_stats(const device_job *jobs, int n, const sdm_join_stats *js, double seconds, sdm_render_stats *s)
{
    memset(s, 0, sizeof *s);
    s->frames_shown = js->frames_shown;
    s->width = jobs[0].stats.width;
    s->height = jobs[0].stats.height;
    s->batch = jobs[0].stats.batch;
    s->seconds = seconds;
    for (int i = 0; i < n; i++) {
        s->frames_rendered += jobs[i].stats.frames_rendered;
        s->batch_halved += jobs[i].stats.batch_halved;
        if (jobs[i].stats.load_seconds > s->load_seconds)
            s->load_seconds = jobs[i].stats.load_seconds;
    }
    s->seconds_per_render = s->frames_rendered ? seconds / s->frames_rendered : 0;
}

int sdm_render_devices(const sdm_recipe *r, const sdm_render_params *p, const sdm_device *devs, int n,
                       sdm_render_stats *stats, sdm_error *err)
{
    device_job *jobs = calloc((size_t)n, sizeof *jobs);
    const char **segs = calloc((size_t)n, sizeof *segs);
    sdm_join_params jp = { segs, n, p->outputs, p->n_outputs };
    sdm_join_stats js = { 0 };
    sdm_preflight pf;
    char dir[SDM_PATH_MAX] = "";
    struct timespec t0, t1;
    int rc = -1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(&pf, 0, sizeof pf);
    if (!jobs || !segs) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    /* the whole render's refusals first, and where its outputs go */
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (p->frames || p->shard.count || !p->write_outputs) {
        sdm_error_set(err, SDM_EXIT_USAGE, "--devices renders the whole recipe: not with --frames or --shard");
        goto end;
    }
    if (sdm_preflight_run(r, p, &pf, err) || make_scratch(&pf, dir, sizeof dir, err) ||
        set_up_jobs(r, p, devs, n, dir, jobs, err))
        goto end;
    rc = run_shards(jobs, n, err);
    if (rc)
        goto end;
    for (int i = 0; i < n; i++)
        segs[i] = jobs[i].manifest;
    rc = sdm_join(r, &jp, &js, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!rc && stats)
        sum_stats(jobs, n, &js, (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9, stats);
end:
    if (dir[0] && jobs)
        remove_scratch(dir, jobs, n);
    sdm_preflight_free(&pf);
    free(segs);
    free(jobs);
    return rc;
}
