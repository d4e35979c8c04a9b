/* The sink: a ring of `queue_frames` frame slots shared by one encoder
 * thread per output. push() copies a frame into the next slot and returns at
 * once unless the slowest output is a whole ring behind; each thread reads
 * the slots in order and feeds its format (format.h). Memory is the ring plus
 * what each format holds, whatever the frame count. Files are written under
 * temporary names of a file set (fileset.h) beside their targets and
 * renamed onto them only when every output finished, so a failed render
 * never replaces a good file. */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ffutil.h"
#include "format.h"
#include "paths.h"

#define MAX_FILES (SDM_MAX_OUTPUTS + 1) /* the outputs and a contact sheet */

typedef struct {
    sdm_sink *sink;
    const sdm_format *fmt;
    void *ctx;
    const char *target; /* what the user asked for (the file set's copy) */
    const char *tmp; /* what we write */
    int file; /* its index in the file set */
    pthread_t thread;
    int started;
    int64_t read; /* frames this output has consumed (under lock) */
    sdm_error err; /* this thread's own error */
} sink_output;

struct sdm_sink {
    sdm_sink_params p;
    char *preset, *comment; /* copies p points into */
    sink_output out[MAX_FILES];
    int n_out;
    sdm_fileset *files; /* p.files, or own_files */
    sdm_fileset *own_files;

    pthread_mutex_t lock;
    pthread_cond_t more; /* a frame was queued, or closing/aborting */
    pthread_cond_t space; /* a slot was freed, or an output failed */
    uint8_t *slots;
    size_t frame_size;
    int cap;
    int64_t written; /* frames queued so far */
    double blocked; /* seconds push waited for a slot */
    int closing, aborting, failed;
    sdm_error err; /* the first output failure */
    int finished; /* finish() ran (successfully or not) */
    int ok; /* finish() succeeded */
};

sdm_sink_params sdm_sink_default_params(void)
{
    sdm_sink_params p = {
        .width = 512,
        .height = 512,
        .fps = 24.0,
        .crf = 18,
        .preset = "medium",
        .queue_frames = 8,
        .comment = NULL,
        .total_frames = 0,
        .gif_palette = SDM_GIF_PALETTE_DEFAULT,
        .gif_dither = SDM_GIF_DITHER_DEFAULT,
        .threads = 0,
    };
    return p;
}

/* ---- paths ---------------------------------------------------------------- */

/* Indexed by sdm_output_kind: output_name.c says which extension is which. */
static const sdm_format *const formats[SDM_OUTPUT_COUNT] = {
    [SDM_OUTPUT_MP4] = &sdm_format_mp4,
    [SDM_OUTPUT_GIF] = &sdm_format_gif,
    [SDM_OUTPUT_RAW] = &sdm_format_raw,
    [SDM_OUTPUT_SHEET] = &sdm_format_sheet,
};

static const sdm_format *format_for(const char *path, int sheet)
{
    int kind = sdm_output_kind_of(path, sheet);

    return kind < 0 ? NULL : formats[kind];
}

int sdm_sink_check_path(const char *path, int sheet, sdm_error *err)
{
    if (!path || !*path)
        return sdm_error_set(err, SDM_EXIT_USAGE, "empty output path");
    if (!*sdm_path_base(path))
        return sdm_error_set(err, SDM_EXIT_USAGE, "output '%s' names a directory, not a file", path);
    return sdm_output_check(path, sheet, err);
}

/* ---- encoder threads ------------------------------------------------------ */

static void *output_main(void *arg)
{
    sink_output *o = arg;
    sdm_sink *s = o->sink;
    int finish = 0, ret = 0;

    for (;;) {
        const uint8_t *frame;

        pthread_mutex_lock(&s->lock);
        while (o->read == s->written && !s->closing && !s->aborting)
            pthread_cond_wait(&s->more, &s->lock);
        if (s->aborting || o->read == s->written) {
            finish = !s->aborting;
            pthread_mutex_unlock(&s->lock);
            break;
        }
        /* The slot is ours until read advances: push never reuses a slot an
         * output has not consumed. */
        frame = s->slots + (size_t)(o->read % s->cap) * s->frame_size;
        pthread_mutex_unlock(&s->lock);

        ret = o->fmt->write(o->ctx, frame, &o->err);

        pthread_mutex_lock(&s->lock);
        o->read++;
        pthread_cond_broadcast(&s->space);
        pthread_mutex_unlock(&s->lock);
        if (ret < 0)
            break;
    }
    if (finish && s->written > 0)
        ret = o->fmt->finish(o->ctx, &o->err);
    if (ret < 0) {
        pthread_mutex_lock(&s->lock);
        s->failed = 1;
        sdm_error_set(&s->err, o->err.code, "%s", o->err.msg);
        pthread_cond_broadcast(&s->space);
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

static int64_t slowest_read(const sdm_sink *s)
{
    int64_t r = s->written;

    for (int i = 0; i < s->n_out; i++)
        if (s->out[i].read < r)
            r = s->out[i].read;
    return r;
}

static void stop_threads(sdm_sink *s, int abort)
{
    pthread_mutex_lock(&s->lock);
    s->aborting |= abort;
    s->closing |= !abort;
    pthread_cond_broadcast(&s->more);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < s->n_out; i++) {
        if (s->out[i].started)
            pthread_join(s->out[i].thread, NULL);
        s->out[i].started = 0;
    }
}

/* ---- public --------------------------------------------------------------- */

static int check_params(const sdm_sink_params *p, sdm_error *err)
{
    if (p->width <= 0 || p->height <= 0 || p->width > 16384 || p->height > 16384)
        return sdm_error_set(err, SDM_EXIT_USAGE, "frame size %dx%d is out of range", p->width, p->height);
    if (!(p->fps > 0 && p->fps <= 1000 && isfinite(p->fps)))
        return sdm_error_set(err, SDM_EXIT_USAGE, "frame rate %g is out of range (0, 1000]", p->fps);
    if (p->queue_frames < 1 || p->queue_frames > 1024)
        return sdm_error_set(err, SDM_EXIT_USAGE, "queue_frames %d is out of range 1..1024", p->queue_frames);
    if (p->threads < 0 || p->threads > 64)
        return sdm_error_set(err, SDM_EXIT_USAGE, "threads %d is out of range 0..64", p->threads);
    if (p->total_frames < 0)
        return sdm_error_set(err, SDM_EXIT_USAGE, "total_frames %d is negative", p->total_frames);
    if (p->gif_palette < 0 || p->gif_palette >= SDM_GIF_PALETTE_COUNT || p->gif_dither < 0 ||
        p->gif_dither >= SDM_GIF_DITHER_COUNT)
        return sdm_error_set(err, SDM_EXIT_USAGE, "unknown GIF palette or dither setting");
    return 0;
}

static int check_one(const char *target, int sheet, const sdm_sink_params *p, sdm_error *err)
{
    const sdm_format *fmt = format_for(target, sheet);

    if (sdm_sink_check_path(target, sheet, err) < 0)
        return -1;
    if (!fmt)
        return sdm_error_set(err, SDM_EXIT_USAGE, "output '%s': a still, which the render writes, not the sink",
                             target);
    return fmt->check ? fmt->check(target, p, err) : 0;
}

int sdm_sink_check(const char *const *outputs, int n_outputs, const char *contact_sheet, const sdm_sink_params *p,
                   sdm_error *err)
{
    if (check_params(p, err) < 0)
        return -1;
    if (n_outputs < 0 || (n_outputs > 0 && !outputs) || (n_outputs == 0 && !contact_sheet))
        return sdm_error_set(err, SDM_EXIT_USAGE, "no output file given");
    if (n_outputs > SDM_MAX_OUTPUTS)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%d outputs; at most %d (and a contact sheet)", n_outputs,
                             SDM_MAX_OUTPUTS);
    for (int i = 0; i < n_outputs; i++) {
        if (check_one(outputs[i], 0, p, err) < 0)
            return -1;
        for (int j = 0; j < i; j++)
            if (strcmp(outputs[i], outputs[j]) == 0)
                return sdm_error_set(err, SDM_EXIT_USAGE, "output '%s' is named twice", outputs[i]);
    }
    return contact_sheet ? check_one(contact_sheet, 1, p, err) : 0;
}

/* Joins target to the file set (unless it is in it already) and takes its temporary file. */
static int add_output(sdm_sink *s, const char *target, int sheet, sdm_error *err)
{
    sink_output *o = &s->out[s->n_out];
    int file = sdm_fileset_find(s->files, target);

    if (file < 0)
        file = sdm_fileset_add(s->files, target, err);
    if (file < 0)
        return -1;
    s->n_out++;
    o->sink = s;
    o->fmt = format_for(target, sheet);
    o->file = file;
    o->target = sdm_fileset_target(s->files, file);
    o->tmp = sdm_fileset_temp(s->files, file);
    return 0;
}

/* Starts one encoder thread per output. Every thread started from here on
 * (ours, and x264's own, made while its encoder opens) inherits a mask
 * without SIGINT, SIGTERM and SIGHUP, so those reach the render loop's
 * thread and it decides how to finish. */
static int start_outputs(sdm_sink *s, sdm_error *err)
{
    sigset_t block, old;
    int ret = -1;

    sdm_ff_log_init();
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int i = 0; i < s->n_out; i++) {
        sink_output *o = &s->out[i];
        if (o->fmt->open(&o->ctx, o->tmp, o->target, &s->p, err) < 0)
            goto end;
    }
    for (int i = 0; i < s->n_out; i++) {
        sink_output *o = &s->out[i];
        int e = pthread_create(&o->thread, NULL, output_main, o);
        if (e) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot start an encoder thread: %s", strerror(e));
            goto end;
        }
        o->started = 1;
    }
    ret = 0;
end:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ret;
}

int sdm_sink_open(const char *const *outputs, int n_outputs, const char *contact_sheet, const sdm_sink_params *p,
                  sdm_sink **out, sdm_error *err)
{
    sdm_sink *s = NULL;
    int ret = -1;

    *out = NULL;
    if (sdm_sink_check(outputs, n_outputs, contact_sheet, p, err) < 0)
        goto end;
    s = calloc(1, sizeof *s);
    if (!s) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->more, NULL);
    pthread_cond_init(&s->space, NULL);
    s->p = *p;
    s->preset = p->preset ? strdup(p->preset) : NULL;
    s->comment = p->comment ? strdup(p->comment) : NULL;
    s->p.preset = s->preset;
    s->p.comment = s->comment;
    s->files = p->files;
    if (!s->files && sdm_fileset_new(&s->own_files, err) < 0)
        goto end;
    if (!s->files)
        s->files = s->own_files;
    for (int i = 0; i < n_outputs; i++)
        if (add_output(s, outputs[i], 0, err) < 0)
            goto end;
    if (contact_sheet && add_output(s, contact_sheet, 1, err) < 0)
        goto end;

    s->cap = p->queue_frames;
    s->frame_size = (size_t)p->width * p->height * 3;
    /* swscale's SIMD reads a little past the end of a picture: pad the
     * ring so reading the last slot never touches an unmapped page. */
    s->slots = malloc(s->frame_size * s->cap + 3 * (size_t)p->width + 256);
    if (!s->slots) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory for a queue of %d frames", s->cap);
        goto end;
    }
    if (start_outputs(s, err) < 0)
        goto end;
    *out = s;
    s = NULL;
    ret = 0;
end:
    sdm_sink_free(&s);
    return ret;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int sdm_sink_push(sdm_sink *s, const uint8_t *rgb, sdm_error *err)
{
    uint8_t *slot;

    if (!s || !rgb)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "sdm_sink_push: no sink or no frame");
    pthread_mutex_lock(&s->lock);
    if (!s->failed && !s->closing && s->written - slowest_read(s) >= s->cap) {
        double t0 = now_s();
        while (!s->failed && !s->closing && s->written - slowest_read(s) >= s->cap)
            pthread_cond_wait(&s->space, &s->lock);
        s->blocked += now_s() - t0;
    }
    if (s->failed || s->closing) {
        if (s->failed)
            sdm_error_set(err, s->err.code, "%s", s->err.msg);
        else
            sdm_error_set(err, SDM_EXIT_RUNTIME, "sdm_sink_push: the sink is already finished");
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    slot = s->slots + (size_t)(s->written % s->cap) * s->frame_size;
    pthread_mutex_unlock(&s->lock);

    /* Copied outside the lock: no reader touches this slot until written advances. */
    memcpy(slot, rgb, s->frame_size);

    pthread_mutex_lock(&s->lock);
    s->written++;
    pthread_cond_broadcast(&s->more);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void sdm_sink_close(sdm_sink *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->closing = 1; /* stop_threads(s, 0) without the join */
    pthread_cond_broadcast(&s->more);
    pthread_mutex_unlock(&s->lock);
}

int sdm_sink_finish(sdm_sink *s, int partial, sdm_error *err)
{
    int ret = -1;

    if (!s)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "sdm_sink_finish: no sink");
    if (s->finished)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "sdm_sink_finish: called twice");
    s->finished = 1;
    stop_threads(s, 0);
    if (s->failed) {
        sdm_error_set(err, s->err.code, "%s", s->err.msg);
        goto end;
    }
    if (s->written == 0) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "no frame was rendered: nothing written%s",
                      s->n_out ? "" : " (no outputs)");
        goto end;
    }
    if (s->own_files && sdm_fileset_commit(s->own_files, partial, err) < 0)
        goto end;
    s->ok = 1;
    ret = 0;
end:
    for (int i = 0; ret < 0 && i < s->n_out; i++)
        s->out[i].fmt->free(&s->out[i].ctx);
    if (ret < 0)
        sdm_fileset_free(&s->own_files);
    return ret;
}

double sdm_sink_blocked_seconds(const sdm_sink *s)
{
    return s ? s->blocked : 0;
}

int sdm_sink_n_outputs(const sdm_sink *s)
{
    return s ? s->n_out : 0;
}

const char *sdm_sink_output_path(const sdm_sink *s, int i)
{
    if (!s || !s->ok || i < 0 || i >= s->n_out)
        return NULL;
    return sdm_fileset_written(s->files, s->out[i].file);
}

void sdm_sink_free(sdm_sink **ps)
{
    sdm_sink *s = ps ? *ps : NULL;

    if (!s)
        return;
    stop_threads(s, 1);
    for (int i = 0; i < s->n_out; i++) {
        sink_output *o = &s->out[i];
        if (o->fmt)
            o->fmt->free(&o->ctx);
    }
    sdm_fileset_free(&s->own_files);
    free(s->slots);
    free(s->preset);
    free(s->comment);
    pthread_cond_destroy(&s->more);
    pthread_cond_destroy(&s->space);
    pthread_mutex_destroy(&s->lock);
    free(s);
    *ps = NULL;
}
