#include "devices.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "join.h"
#include "paths.h"
#include "preflight.h"

enum { TODO, GIVEN, DONE }; /* a render's state in the queue */

typedef struct sched sched;

/* One device: its render on its own thread, fed by the queue. */
typedef struct {
    sched *s;
    int index;
    sdm_render_params p;
    sdm_render_hooks hooks;
    sdm_batch_source source;
    sdm_render_stats stats;
    sdm_error err;
    int rc;
    int renders; /* frames this device rendered that were kept */
    int dropped; /* failed: its renders went back to the queue */
} worker;

struct sched {
    const sdm_recipe *r;
    const sdm_render_params *p;
    sdm_preflight pf; /* the whole render's refusals and outputs */
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a render done or given back, or a worker gone */
    sdm_plan plan; /* the engines' plan (retimed where asked): the first one's */
    int have_plan;
    int prober; /* the engine probing the retime curves, index + 1 (0: none) */
    unsigned char *state; /* per render */
    int *holder; /* per render given: the worker */
    int fd; /* the scratch file: render i's frame at i * frame_bytes */
    size_t frame_bytes;
    uint8_t *frame;
    sdm_join_writer *writer;
    char fingerprint[32], recipe_fp[32];
    char *texts; /* the prompts' texts JSON, for the sidecars */
    int failed; /* the render cannot finish (err): every engine stops */
    sdm_error err;
    int rendered; /* renders done, of plan.n_renders */
    struct timespec t0, last_report; /* the start; the last progress line */
};

static void device_label(const worker *w, char *buf, size_t len)
{
    sdm_device d = w->p.device;

    if (d.type == SDM_DEVICE_CPU)
        snprintf(buf, len, "cpu (device %d)", w->index + 1);
    else
        sdm_device_name(d, buf, len);
}

/* A copy of plan into *to that owns its arrays and strings. */
static int plan_copy(const sdm_plan *from, sdm_plan *to)
{
    size_t nr = (size_t)(from->n_renders > 0 ? from->n_renders : 1),
           ns = (size_t)(from->n_sequence ? from->n_sequence : 1);

    memset(to, 0, sizeof *to);
    to->renders = malloc(nr * sizeof *to->renders);
    to->sequence = malloc(ns * sizeof *to->sequence);
    to->shown = malloc(ns * sizeof *to->shown);
    to->frame_index = malloc(ns * sizeof *to->frame_index);
    to->retime_json = from->retime_json ? strdup(from->retime_json) : NULL;
    if (!to->renders || !to->sequence || !to->shown || !to->frame_index || (from->retime_json && !to->retime_json))
        return -1;
    memcpy(to->renders, from->renders, (size_t)from->n_renders * sizeof *to->renders);
    memcpy(to->sequence, from->sequence, (size_t)from->n_sequence * sizeof *to->sequence);
    if (from->shown)
        memcpy(to->shown, from->shown, (size_t)from->n_sequence * sizeof *to->shown);
    else
        for (int i = 0; i < from->n_sequence; i++)
            to->shown[i] = from->renders[from->sequence[i]];
    memcpy(to->frame_index, from->frame_index, (size_t)from->n_sequence * sizeof *to->frame_index);
    to->n_renders = from->n_renders;
    to->n_sequence = from->n_sequence;
    to->fps = from->fps;
    return 0;
}

/* The engines agree on what to render: one recipe and one engine's
 * retiming curves (on_curves), so the same frames. */
static int same_plan(const sdm_plan *a, const sdm_plan *b)
{
    return a->n_renders == b->n_renders && a->n_sequence == b->n_sequence &&
           !memcmp(a->sequence, b->sequence, (size_t)a->n_sequence * sizeof *a->sequence) &&
           !a->retime_json == !b->retime_json && (!a->retime_json || !strcmp(a->retime_json, b->retime_json));
}

/* The frames' scratch file beside the first output, unlinked at once: it
 * goes when the render does, however it ends. */
static int open_scratch(sched *s, sdm_error *err)
{
    const char *first = s->pf.outs.files[0].path, *base = sdm_path_base(first);
    char path[SDM_PATH_MAX];

    if (snprintf(path, sizeof path, "%.*s.sdmorph-devices-XXXXXX", (int)(base - first), first) >= (int)sizeof path)
        return sdm_error_set(err, SDM_EXIT_USAGE, "output '%s': path too long", first);
    s->fd = mkostemp(path, O_CLOEXEC);
    if (s->fd < 0)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot make a file beside %s: %s", first, strerror(errno));
    unlink(path);
    return 0;
}

/* The first engine's plan: the queue, the scratch file and the outputs. */
static int start_plan(sched *s, const sdm_plan *plan, const char *texts, sdm_error *err)
{
    sdm_join_writer_params wp = { s->r,
                                  &s->plan,
                                  &s->pf.outs,
                                  s->pf.width,
                                  s->pf.height,
                                  s->recipe_fp,
                                  s->p->model_dir ? s->p->model_dir : "",
                                  s->fingerprint,
                                  s->p->on_frame,
                                  s->p->on_written,
                                  s->p->user };
    size_t n = (size_t)(plan->n_renders > 0 ? plan->n_renders : 1);

    if (plan_copy(plan, &s->plan) || !(s->state = calloc(n, 1)) || !(s->holder = calloc(n, sizeof *s->holder)) ||
        (texts && !(s->texts = strdup(texts))) || !(s->frame = malloc(s->frame_bytes)))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    s->have_plan = 1;
    if (s->plan.n_sequence != s->pf.plan.n_sequence)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: the engine's plan shows %d frames, not %d",
                             s->plan.n_sequence, s->pf.plan.n_sequence);
    if (open_scratch(s, err))
        return -1;
    return sdm_join_writer_open(&wp, &s->writer, err);
}

static int on_planned(void *user, const sdm_plan *plan, const char *texts, sdm_error *err)
{
    worker *w = user;
    sched *s = w->s;
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    if (s->failed)
        rc = sdm_error_set(err, s->err.code, "%s", s->err.msg);
    else if (!s->have_plan && start_plan(s, plan, texts, &s->err))
        s->failed = 1, rc = sdm_error_set(err, s->err.code, "%s", s->err.msg);
    else if (!same_plan(plan, &s->plan))
        rc = sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: its plan differs from the first device's");
    pthread_cond_broadcast(&s->changed); /* engines waiting for the curves (on_curves) */
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* One engine probes the retime curves, the others take its: the frames
 * land at the same weights whatever the devices (one of another kind
 * would place them a little differently), and the probe's GPU time is
 * spent once. An engine that ends before its plan hands the probe on. */
static int on_curves(void *user, const char **json, sdm_error *err)
{
    worker *w = user;
    sched *s = w->s;
    int rc = 0;

    *json = NULL;
    pthread_mutex_lock(&s->lock);
    while (!s->failed && !s->have_plan && s->prober && s->prober != w->index + 1)
        pthread_cond_wait(&s->changed, &s->lock);
    if (s->failed)
        rc = sdm_error_set(err, s->err.code, "%s", s->err.msg);
    else if (s->have_plan)
        *json = s->plan.retime_json;
    else
        s->prober = w->index + 1;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* The first run of renders still to do, at most `most` of them, given to w. */
static int take(sched *s, worker *w, int most, int *first, int *n)
{
    int i = 0;

    while (i < s->plan.n_renders && s->state[i] != TODO)
        i++;
    if (i == s->plan.n_renders)
        return 1;
    *first = i;
    for (*n = 0; i < s->plan.n_renders && *n < most && s->state[i] == TODO; i++, (*n)++) {
        s->state[i] = GIVEN;
        s->holder[i] = w->index;
    }
    return 0;
}

/* Renders to do next. None left: 1 at once while w has a batch in flight
 * (it lands it and asks again); else, while other devices hold renders
 * that may come back (a device that fails gives its renders back), wait. */
static int on_next(void *user, int most, int *first, int *n)
{
    worker *w = user;
    sched *s = w->s;
    int rc;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        int given = 0, mine = 0;
        rc = 1;
        if (s->failed || (s->p->stop && *s->p->stop))
            break;
        rc = take(s, w, most > 0 ? most : 1, first, n);
        if (!rc)
            break;
        for (int i = 0; i < s->plan.n_renders; i++) {
            given |= s->state[i] == GIVEN;
            mine |= s->state[i] == GIVEN && s->holder[i] == w->index;
        }
        if (!given || mine)
            break;
        pthread_cond_wait(&s->changed, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Every output frame whose render is done, in display order, to the outputs. */
static int emit_ready(sched *s, sdm_error *err)
{
    for (int i = sdm_join_writer_shown(s->writer); i < s->plan.n_sequence; i++) {
        int r = s->plan.sequence[i];
        ssize_t got;
        if (s->state[r] != DONE)
            break;
        got = pread(s->fd, s->frame, s->frame_bytes, (off_t)((size_t)r * s->frame_bytes));
        if (got != (ssize_t)s->frame_bytes)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "reading back frame %d: %s", i,
                                 got < 0 ? strerror(errno) : "short read");
        if (sdm_join_writer_push(s->writer, s->frame, err))
            return -1;
    }
    return 0;
}

/* The render's progress as one device's render reports it (render.c): a
 * line rewritten on a terminal, a line every progress_every seconds in a log. */
static void progress_line(sched *s)
{
    struct timespec t;
    double el, since, eta;

    if (s->p->progress == SDM_PROGRESS_NONE)
        return;
    clock_gettime(CLOCK_MONOTONIC, &t);
    el = (double)(t.tv_sec - s->t0.tv_sec) + (t.tv_nsec - s->t0.tv_nsec) * 1e-9;
    since = (double)(t.tv_sec - s->last_report.tv_sec) + (t.tv_nsec - s->last_report.tv_nsec) * 1e-9;
    eta = s->rendered ? el / s->rendered * (s->plan.n_renders - s->rendered) : 0;
    if (s->p->progress == SDM_PROGRESS_LOG && since < s->p->progress_every && s->rendered < s->plan.n_renders)
        return;
    fprintf(stderr,
            s->p->progress == SDM_PROGRESS_TERMINAL ? "\rsdmorph: frame %d/%d (rendered %d/%d), ETA %d:%02d%s"
                                                    : "sdmorph: frame %d/%d (rendered %d/%d), ETA %d:%02d%s",
            sdm_join_writer_shown(s->writer), s->plan.n_sequence, s->rendered, s->plan.n_renders, (int)eta / 60,
            (int)eta % 60, s->p->progress == SDM_PROGRESS_LOG || s->rendered == s->plan.n_renders ? "\n" : "  ");
    fflush(stderr);
    s->last_report = t;
}

static int on_done(void *user, int first, int n, const uint8_t *rgb, sdm_error *err)
{
    worker *w = user;
    sched *s = w->s;
    size_t bytes = (size_t)n * s->frame_bytes;
    int rc = -1;

    pthread_mutex_lock(&s->lock);
    if (s->failed) {
        sdm_error_set(err, s->err.code, "%s", s->err.msg);
        goto end;
    }
    for (size_t at = 0; at < bytes;) {
        ssize_t put = pwrite(s->fd, rgb + at, bytes - at, (off_t)((size_t)first * s->frame_bytes + at));
        if (put <= 0) {
            s->failed = 1;
            sdm_error_set(&s->err, SDM_EXIT_RUNTIME, "writing frames beside %s: %s", s->pf.outs.files[0].path,
                          put < 0 ? strerror(errno) : "no space");
            sdm_error_set(err, s->err.code, "%s", s->err.msg);
            goto end;
        }
        at += (size_t)put;
    }
    for (int i = first; i < first + n; i++)
        s->state[i] = DONE;
    w->renders += n;
    s->rendered += n;
    if (emit_ready(s, &s->err)) {
        s->failed = 1;
        sdm_error_set(err, s->err.code, "%s", s->err.msg);
        goto end;
    }
    progress_line(s);
    rc = 0;
end:
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* A device's render; when it ends, the renders it still held go back to
 * the queue (a failure: with a warning; the others finish the render). */
static void *worker_main(void *arg)
{
    worker *w = arg;
    sched *s = w->s;
    char dev[32];

    w->rc = sdm_render_hooked(s->r, &w->p, &w->hooks, &w->stats, &w->err);
    pthread_mutex_lock(&s->lock);
    for (int i = 0; s->have_plan && i < s->plan.n_renders; i++)
        if (s->state[i] == GIVEN && s->holder[i] == w->index)
            s->state[i] = TODO;
    if (s->prober == w->index + 1)
        s->prober = 0; /* planned, or gone before: another engine may probe */
    if (w->rc < 0 && !s->failed) {
        w->dropped = 1;
        device_label(w, dev, sizeof dev);
        sdm_warn("%s dropped out: %s; the other devices render its frames", dev, w->err.msg);
    }
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void set_up_workers(sched *s, const sdm_device *devs, const sdm_render_hooks *const *hooks, int n, worker *ws)
{
    for (int i = 0; i < n; i++) {
        worker *w = &ws[i];
        w->s = s;
        w->index = i;
        w->p = *s->p;
        w->p.device = devs[i];
        w->p.engine = NULL; /* each opens its own on its device */
        w->p.write_outputs = 0;
        w->p.outputs = NULL;
        w->p.n_outputs = 0;
        w->p.on_frame = NULL;
        w->p.on_written = NULL;
        w->p.progress = SDM_PROGRESS_NONE;
        if (hooks && hooks[i])
            w->hooks = *hooks[i];
        w->source = (sdm_batch_source){
            .planned = on_planned, .curves = on_curves, .next = on_next, .done = on_done, .user = w
        };
        w->hooks.source = &w->source;
    }
}

/* The workers on their threads, until every one has ended. */
static int run_workers(worker *ws, int n, sdm_error *err)
{
    pthread_t *t = calloc((size_t)n, sizeof *t);
    int started = 0;

    if (!t)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    for (; started < n; started++)
        if (pthread_create(&t[started], NULL, worker_main, &ws[started]))
            break;
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    free(t);
    return started < n ? sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot start a thread per device") : 0;
}

/* How the render ended: 0 every frame shown, 1 interrupted, -1 failed (err:
 * the render's own failure, else the first device's). */
static int outcome(sched *s, const worker *ws, int n, sdm_error *err)
{
    char dev[32];

    if (s->failed)
        return sdm_error_set(err, s->err.code, "%s", s->err.msg);
    if (s->have_plan && sdm_join_writer_shown(s->writer) == s->plan.n_sequence)
        return 0;
    if (s->p->stop && *s->p->stop)
        return 1;
    for (int i = 0; i < n; i++) {
        if (ws[i].rc < 0) {
            device_label(&ws[i], dev, sizeof dev);
            return sdm_error_set(err, ws[i].err.code ? ws[i].err.code : SDM_EXIT_RUNTIME, "every device failed; %s: %s",
                                 dev, ws[i].err.msg);
        }
    }
    for (int i = 0; i < n; i++)
        if (ws[i].rc == 1)
            return 1;
    return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: the devices ended with frames left to render");
}

/* The outputs committed (onto .partial names when interrupted), with the
 * sidecar's record of what rendered them. */
static int finish(sched *s, const worker *ws, int n, int partial, double seconds, sdm_error *err)
{
    sdm_sidecar_used used;
    char devices[32 * 8] = "", dev[32];
    sdm_sidecar_facts facts;

    for (int i = 0; i < n && strlen(devices) + 34 < sizeof devices; i++) {
        sdm_device_name(ws[i].p.device, dev, sizeof dev);
        snprintf(devices + strlen(devices), sizeof devices - strlen(devices), "%s%s", i ? "," : "", dev);
    }
    memset(&used, 0, sizeof used);
    used.model_dir = s->p->model_dir;
    used.fingerprint = s->fingerprint;
    used.device = devices;
    used.dtype = s->pf.bundle.dtype;
    used.width = s->pf.width;
    used.height = s->pf.height;
    used.batch = ws[0].stats.batch;
    used.seconds = seconds;
    for (int i = 0; i < n; i++)
        used.load_seconds = ws[i].stats.load_seconds > used.load_seconds ? ws[i].stats.load_seconds : used.load_seconds;
    used.texts = s->texts;
    sdm_sidecar_model_facts(&used, &facts, s->r, &s->pf.bundle, s->pf.width, s->pf.height);
    if (partial && !sdm_join_writer_shown(s->writer))
        return 0; /* interrupted before the first frame: nothing written */
    return sdm_join_writer_finish(s->writer, &used, partial, err);
}

static void fill_stats(const sched *s, const worker *ws, int n, double seconds, int partial, sdm_render_stats *st)
{
    double slowest_load = -1;

    memset(st, 0, sizeof *st);
    st->frames_shown = sdm_join_writer_shown(s->writer);
    st->interrupted = partial;
    st->width = s->pf.width;
    st->height = s->pf.height;
    st->seconds = seconds;
    for (int i = 0; i < n; i++) {
        st->frames_rendered += ws[i].renders;
        st->batch_halved += ws[i].stats.batch_halved;
        st->probe_renders += ws[i].stats.probe_renders;
        st->probe_steps = ws[i].stats.probe_steps > st->probe_steps ? ws[i].stats.probe_steps : st->probe_steps;
        st->probe_seconds =
            ws[i].stats.probe_seconds > st->probe_seconds ? ws[i].stats.probe_seconds : st->probe_seconds;
        st->load_seconds = ws[i].stats.load_seconds > st->load_seconds ? ws[i].stats.load_seconds : st->load_seconds;
        st->warmup_seconds =
            ws[i].stats.warmup_seconds > st->warmup_seconds ? ws[i].stats.warmup_seconds : st->warmup_seconds;
        if (!st->batch && !ws[i].dropped)
            st->batch = ws[i].stats.batch;
        /* --timings: device time on all devices, added */
        st->sample_seconds += ws[i].stats.sample_seconds;
        st->sample_steps += ws[i].stats.sample_steps;
        st->sample_batches += ws[i].stats.sample_batches;
        st->decode_seconds += ws[i].stats.decode_seconds;
        st->decoded_frames += ws[i].stats.decoded_frames;
        /* loading: each device's own engine; the slowest device's */
        if (ws[i].stats.load_seconds >= slowest_load) {
            slowest_load = ws[i].stats.load_seconds;
            st->loading = ws[i].stats.loading;
        }
        /* memory: each device's own; the most of any */
        if (ws[i].stats.device_used_bytes > st->device_used_bytes) {
            st->device_used_bytes = ws[i].stats.device_used_bytes;
            st->device_total_bytes = ws[i].stats.device_total_bytes;
        }
    }
    st->seconds_per_render = st->frames_rendered ? seconds / st->frames_rendered : 0;
    if (!partial)
        sdm_join_writer_pace(s->writer, &st->pace);
}

/* One line: how many frames each device rendered (the queue at work). */
static void report_devices(const worker *ws, int n)
{
    char line[1024] = "", dev[32];
    size_t at = 0;

    for (int i = 0; i < n && at + 80 < sizeof line; i++) {
        device_label(&ws[i], dev, sizeof dev);
        at += (size_t)snprintf(line + at, sizeof line - at, "%s%s %d%s", i ? ", " : "", dev, ws[i].renders,
                               ws[i].dropped ? " (dropped out)" : "");
    }
    sdm_info("frames rendered per device: %s", line);
}

/* The render's own time since t0, as one device's render counts it: without
 * the loading (the devices load at once: the longest). */
static double seconds_since(const struct timespec *t0, const worker *ws, int n)
{
    struct timespec t1;
    double s, load = 0;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    s = (double)(t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) * 1e-9;
    for (int i = 0; i < n; i++)
        load = ws[i].stats.load_seconds > load ? ws[i].stats.load_seconds : load;
    return s > load ? s - load : 0;
}

/* The whole render's refusals first (as one device's render would refuse),
 * and where its outputs go. */
static int prepare(sched *s, sdm_error *err)
{
    const sdm_render_params *p = s->p;

    if (p->frames || p->shard.count || !p->write_outputs)
        return sdm_error_set(err, SDM_EXIT_USAGE, "--devices renders the whole recipe: not with --frames or --shard");
    if (sdm_preflight_run(s->r, p, &s->pf, err))
        return -1;
    if (s->pf.has_bundle)
        sdm_bundle_fingerprint(&s->pf.bundle, s->fingerprint, sizeof s->fingerprint);
    sdm_file_fingerprint(s->r->path, s->recipe_fp, sizeof s->recipe_fp);
    s->frame_bytes = (size_t)s->pf.width * s->pf.height * 3;
    return 0;
}

static void sched_clear(sched *s)
{
    sdm_join_writer_free(&s->writer);
    if (s->fd >= 0)
        close(s->fd);
    sdm_plan_free(&s->plan);
    sdm_preflight_free(&s->pf);
    free(s->state);
    free(s->holder);
    free(s->frame);
    free(s->texts);
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->lock);
}

int sdm_render_devices_hooked(const sdm_recipe *r, const sdm_render_params *p, const sdm_device *devs,
                              const sdm_render_hooks *const *hooks, int n, sdm_render_stats *stats, sdm_error *err)
{
    worker *ws = calloc((size_t)n, sizeof *ws);
    sched s;
    struct timespec t0;
    int rc = -1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(&s, 0, sizeof s);
    s.t0 = s.last_report = t0;
    s.r = r;
    s.p = p;
    s.fd = -1;
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.changed, NULL);
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (!ws) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    if (prepare(&s, err))
        goto end;
    set_up_workers(&s, devs, hooks, n, ws);
    if (run_workers(ws, n, err))
        goto end;
    rc = outcome(&s, ws, n, err);
    if (rc >= 0 && finish(&s, ws, n, rc, seconds_since(&t0, ws, n), err))
        rc = -1;
    if (rc >= 0 && stats)
        fill_stats(&s, ws, n, seconds_since(&t0, ws, n), rc, stats);
    if (rc >= 0 && p->progress != SDM_PROGRESS_NONE)
        report_devices(ws, n);
end:
    sched_clear(&s);
    free(ws);
    return rc;
}

int sdm_render_devices(const sdm_recipe *r, const sdm_render_params *p, const sdm_device *devs, int n,
                       sdm_render_stats *stats, sdm_error *err)
{
    return sdm_render_devices_hooked(r, p, devs, NULL, n, stats, err);
}
