#include "join.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "outputs.h"
#include "pace.h"
#include "paths.h"
#include "plan.h"
#include "png.h"
#include "retime.h"
#include "segment.h"
#include "sink.h"

struct sdm_join_writer {
    sdm_join_writer_params p;
    sdm_fileset *files;
    sdm_sink *sink;
    size_t frame_bytes;
    int shown; /* output frames pushed */
    char comment[1024]; /* what every output records, as a render's */
    sdm_pace *pace; /* measured as a render measures it: the same sidecar */
    sdm_pace_report report; /* the pace, once finished */
    int has_report;
};

typedef struct {
    const sdm_recipe *r;
    const sdm_join_params *jp;
    sdm_plan plan;
    sdm_segment_info *segs;
    int *fds; /* each segment's frames, open */
    int *owner; /* per render: the segment that holds it, -1 none, -2 several */
    sdm_outputs outs;
    sdm_join_writer *writer;
    uint8_t *frame;
    size_t frame_bytes;
} join_state;

/* "0-3, 8, 12-15" of the indices i < n where flag[i], within len (cut with "..."). */
static void ranges(const unsigned char *flag, int n, char *buf, size_t len)
{
    size_t at = 0;

    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        int j = i;
        if (!flag[i])
            continue;
        while (j + 1 < n && flag[j + 1])
            j++;
        if (at + 32 >= len) {
            snprintf(buf + at, len - at, "...");
            return;
        }
        at += (size_t)snprintf(buf + at, len - at, j > i ? "%s%d-%d" : "%s%d", at ? ", " : "", i, j);
        i = j;
    }
}

/* The renders flagged, and the output frames that show them, for a message. */
static int coverage_error(join_state *S, const unsigned char *bad, const char *what, sdm_error *err)
{
    unsigned char *frames = calloc((size_t)S->plan.n_sequence, 1);
    char rs[200], fs[200];

    if (!frames)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    for (int i = 0; i < S->plan.n_sequence; i++)
        frames[i] = bad[S->plan.sequence[i]];
    ranges(bad, S->plan.n_renders, rs, sizeof rs);
    ranges(frames, S->plan.n_sequence, fs, sizeof fs);
    free(frames);
    return sdm_error_set(err, SDM_EXIT_USAGE, "%s: renders %s of %d (output frames %s) %s", S->r->path, rs,
                         S->plan.n_renders, fs, what);
}

/* Every render in exactly one segment; else the message names the renders
 * and frames missing or held twice. */
static int check_coverage(join_state *S, sdm_error *err)
{
    int n = S->plan.n_renders, missing = 0, twice = 0, rc;
    unsigned char *bad = calloc((size_t)n, 1);

    if (!bad)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    for (int i = 0; i < n; i++)
        S->owner[i] = -1;
    for (int k = 0; k < S->jp->n_segments; k++)
        for (int i = S->segs[k].first; i < S->segs[k].first + S->segs[k].n; i++)
            S->owner[i] = S->owner[i] == -1 ? k : -2;
    for (int i = 0; i < n; i++) {
        bad[i] = S->owner[i] == -2;
        twice |= bad[i];
    }
    if (twice) {
        rc = coverage_error(S, bad, "are in more than one segment; give each shard once", err);
        goto end;
    }
    for (int i = 0; i < n; i++) {
        bad[i] = S->owner[i] == -1;
        missing |= bad[i];
    }
    rc = missing ? coverage_error(S, bad, "are in no segment given; render their shard and join again", err) : 0;
end:
    free(bad);
    return rc;
}

/* Segment k against the recipe and segment 0, and its frames file opened. */
static int check_segment(join_state *S, int k, const char *recipe_fp, sdm_error *err)
{
    const sdm_segment_info *s = &S->segs[k], *s0 = &S->segs[0];
    const char *path = S->jp->segments[k];
    struct stat st;

    if (strcmp(s->recipe_fp, recipe_fp))
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "segment %s was rendered from another recipe than %s (fingerprint "
                             "%s, this one %s)",
                             path, S->r->path, s->recipe_fp, recipe_fp);
    if (strcmp(s->model_fp, s0->model_fp))
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "segments %s and %s were rendered by different models (fingerprints "
                             "%s and %s)",
                             S->jp->segments[0], path, s0->model_fp, s->model_fp);
    if (s->width != s0->width || s->height != s0->height)
        return sdm_error_set(err, SDM_EXIT_USAGE, "segments %s and %s differ in frame size (%dx%d, %dx%d)",
                             S->jp->segments[0], path, s0->width, s0->height, s->width, s->height);
    if (s->n_total != S->plan.n_renders)
        return sdm_error_set(err, SDM_EXIT_USAGE, "segment %s is of a plan with %d renders; %s has %d", path,
                             s->n_total, S->r->path, S->plan.n_renders);
    S->fds[k] = open(s->frames, O_RDONLY | O_CLOEXEC);
    if (S->fds[k] < 0)
        return sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: its frames %s: %s", path, s->frames, strerror(errno));
    if (fstat(S->fds[k], &st) || st.st_size != (off_t)((size_t)s->n * S->frame_bytes))
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "segment %s: %s holds %lld bytes, not the %d frames of %dx%d its "
                             "manifest says",
                             path, s->frames, (long long)st.st_size, s->n, s->width, s->height);
    return 0;
}

/* Every manifest, read before the plan: a retimed plan needs their curves. */
static int read_manifests(join_state *S, sdm_error *err)
{
    int n = S->jp->n_segments;

    if (n < 1)
        return sdm_error_set(err, SDM_EXIT_USAGE, "join: no segment given");
    S->segs = calloc((size_t)n, sizeof *S->segs);
    S->fds = malloc((size_t)n * sizeof *S->fds);
    if (!S->segs || !S->fds)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    for (int k = 0; k < n; k++)
        S->fds[k] = -1;
    for (int k = 0; k < n; k++)
        if (sdm_segment_read(S->jp->segments[k], &S->segs[k], err))
            return -1;
    S->frame_bytes = (size_t)S->segs[0].width * S->segs[0].height * 3;
    return 0;
}

/* The recipe's plan; with `retime: even`, its frames placed by the curves
 * the shards' renders measured (kept in every manifest's sidecar), as the
 * render placed them (preflight.h, sdm_preflight_replan). */
static int make_plan(join_state *S, sdm_error *err)
{
    const sdm_segment_info *s0 = &S->segs[0];
    char manifest[SDM_SEGMENT_PATH_MAX];
    sdm_retime rt;
    int rc = -1;

    if (!sdm_retime_wanted(S->r))
        return sdm_plan_make(S->r, &S->plan, err);
    memset(&rt, 0, sizeof rt);
    if (sdm_retime_init(&rt, S->r, s0->model_fp, s0->width, s0->height, err))
        goto end;
    if (sdm_path_with_ext(s0->frames, "json", manifest, sizeof manifest) || !sdm_retime_load(&rt, manifest) ||
        sdm_retime_missing(&rt)) {
        sdm_error_set(err, SDM_EXIT_USAGE,
                      "%s: the recipe retimes its frames (retime: even), but segment %s holds no curve "
                      "for %d of its transitions; render the shards again",
                      S->r->path, S->jp->segments[0], sdm_retime_missing(&rt));
        goto end;
    }
    if (sdm_retime_place(&rt, S->r, err) ||
        sdm_plan_make_retimed(S->r, (const double *const *)rt.weights, &S->plan, err))
        goto end;
    if (!(S->plan.retime_json = sdm_retime_json(&rt))) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    rc = 0;
end:
    sdm_retime_free(&rt);
    return rc;
}

static int check_segments(join_state *S, sdm_error *err)
{
    char recipe_fp[24];

    S->owner = malloc((size_t)(S->plan.n_renders > 0 ? S->plan.n_renders : 1) * sizeof *S->owner);
    if (!S->owner)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    sdm_file_fingerprint(S->r->path, recipe_fp, sizeof recipe_fp);
    for (int k = 0; k < S->jp->n_segments; k++)
        if (check_segment(S, k, recipe_fp, err))
            return -1;
    return check_coverage(S, err);
}

/* The recipe's outputs (or -o's), refused as a render refuses them; the
 * segments are inputs no output may replace. */
static int open_outputs(join_state *S, sdm_error *err)
{
    const sdm_segment_info *s0 = &S->segs[0];
    int n = S->jp->n_segments;
    sdm_input *in = calloc(2 * (size_t)n + 1, sizeof *in);
    sdm_outputs_request q = { S->jp->outputs, S->jp->n_outputs, NULL, in, 0, &S->plan };
    sdm_join_writer_params wp = { S->r,          &S->plan,     &S->outs, s0->width, s0->height, s0->recipe_fp,
                                  s0->model_dir, s0->model_fp, NULL,     NULL,      NULL };
    int rc = -1;

    if (!in)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    in[q.n_inputs++] = (sdm_input){ S->r->path, "the recipe" };
    for (int k = 0; k < n; k++) {
        in[q.n_inputs++] = (sdm_input){ S->jp->segments[k], "a segment" };
        in[q.n_inputs++] = (sdm_input){ S->segs[k].frames, "a segment's frames" };
    }
    if (!sdm_outputs_make(S->r, &q, &S->outs, err) && !sdm_join_writer_open(&wp, &S->writer, err))
        rc = 0;
    free(in);
    return rc;
}

/* Every output frame, read from the segment that holds its render. */
static int write_frames(join_state *S, sdm_error *err)
{
    S->frame = malloc(S->frame_bytes);
    if (!S->frame)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    for (int i = 0; i < S->plan.n_sequence; i++) {
        int r = S->plan.sequence[i], k = S->owner[r];
        off_t at = (off_t)((size_t)(r - S->segs[k].first) * S->frame_bytes);
        ssize_t got = pread(S->fds[k], S->frame, S->frame_bytes, at);
        if (got != (ssize_t)S->frame_bytes)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "reading %s: %s", S->segs[k].frames,
                                 got < 0 ? strerror(errno) : "the file is shorter than its manifest says");
        if (sdm_join_writer_push(S->writer, S->frame, err))
            return -1;
    }
    return 0;
}

static void join_state_clear(join_state *S)
{
    sdm_join_writer_free(&S->writer);
    sdm_outputs_free(&S->outs);
    for (int k = 0; S->fds && k < S->jp->n_segments; k++)
        if (S->fds[k] >= 0)
            close(S->fds[k]);
    free(S->fds);
    for (int k = 0; S->segs && k < S->jp->n_segments; k++)
        sdm_segment_clear(&S->segs[k]);
    free(S->segs);
    free(S->owner);
    free(S->frame);
    sdm_plan_free(&S->plan);
}

/* The shards' devices, each once, in shard order ("cuda:0,cpu"). */
static void devices_of(const join_state *S, char *buf, size_t len)
{
    size_t n = 0;

    buf[0] = '\0';
    for (int k = 0; k < S->jp->n_segments; k++) {
        const char *d = S->segs[k].device;
        int seen = !*d;
        for (int j = 0; j < k && !seen; j++)
            seen = !strcmp(S->segs[j].device, d);
        if (!seen && n < len)
            n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "," : "", d);
    }
}

/* The outputs with their sidecars, which record what the shards' renders
 * used (the first shard's dtypes, batch and time ids: one recipe and one
 * model, checked, give them all the same). */
static int commit(join_state *S, sdm_error *err)
{
    const sdm_segment_info *s0 = &S->segs[0];
    sdm_sidecar_used used;
    char devices[256];

    memset(&used, 0, sizeof used);
    devices_of(S, devices, sizeof devices);
    used.model_dir = s0->model_dir;
    used.fingerprint = s0->model_fp;
    used.width = s0->width;
    used.height = s0->height;
    used.texts = s0->texts;
    used.device = devices;
    used.dtype = s0->dtype;
    used.batch = s0->batch;
    used.vae_dtype = *s0->vae_dtype ? s0->vae_dtype : NULL;
    used.sampler_auto = *s0->sampler_auto ? s0->sampler_auto : NULL;
    used.time_ids = s0->has_time_ids ? s0->time_ids : NULL;
    return sdm_join_writer_finish(S->writer, &used, 0, err);
}

int sdm_join(const sdm_recipe *r, const sdm_join_params *jp, sdm_join_stats *stats, sdm_error *err)
{
    join_state S;
    struct timespec t0, t1;
    int rc = -1;

    memset(&S, 0, sizeof S);
    S.r = r;
    S.jp = jp;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (read_manifests(&S, err) || make_plan(&S, err) || check_segments(&S, err) || open_outputs(&S, err) ||
        write_frames(&S, err) || commit(&S, err))
        goto end;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (stats) {
        stats->frames_shown = S.plan.n_sequence;
        stats->renders = S.plan.n_renders;
        stats->seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    }
    rc = 0;
end:
    join_state_clear(&S);
    return rc;
}

/* ---- the writer ---------------------------------------------------------- */

int sdm_join_writer_open(const sdm_join_writer_params *wp, sdm_join_writer **out, sdm_error *err)
{
    sdm_join_writer *w = calloc(1, sizeof *w);
    sdm_sink_params kp = sdm_sink_default_params();
    const sdm_outputs *o = wp->outs;

    *out = w;
    if (!w)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    w->p = *wp;
    w->frame_bytes = (size_t)wp->width * wp->height * 3;
    if (sdm_outputs_open(o, &w->files, err))
        return -1;
    sdm_outputs_comment(w->comment, sizeof w->comment, wp->r->path, wp->recipe_fp, wp->model_dir, wp->model_fp);
    kp.width = wp->width;
    kp.height = wp->height;
    kp.fps = wp->r->fps;
    kp.total_frames = wp->plan->n_sequence;
    kp.gif_palette = wp->r->gif_palette;
    kp.gif_dither = wp->r->gif_dither;
    kp.comment = w->comment;
    kp.files = w->files;
    if (!o->n_videos && !o->sheet)
        return 0; /* stills alone need no sink */
    return sdm_sink_open(o->videos, o->n_videos, o->sheet, &kp, &w->sink, err);
}

/* The stills of output frame w->shown (rgb), into their temporary files. */
static int write_stills(sdm_join_writer *w, const uint8_t *rgb, sdm_error *err)
{
    const sdm_outputs *o = w->p.outs;

    for (int k = o->first_still; k < o->first_still + o->n_stills; k++) {
        int at = o->files[k].frame == w->shown ? sdm_fileset_find(w->files, o->files[k].path) : -2;
        if (at == -1)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: still %s is not in the file set", o->files[k].path);
        if (at >= 0 && sdm_png_write(sdm_fileset_temp(w->files, at), rgb, w->p.width, w->p.height, w->comment,
                                     o->files[k].path, err))
            return -1;
    }
    return 0;
}

/* Output frame w->shown's part of the pace, as the render's pace_frame does it. */
static int pace_frame(sdm_join_writer *w, const uint8_t *rgb, sdm_error *err)
{
    const sdm_plan_frame *f = &w->p.plan->shown[w->shown];

    if (!w->pace && !(w->pace = sdm_pace_new(w->p.width, w->p.height)))
        return 0; /* frames too small for SSIM: no pace, as in a render */
    if (sdm_pace_push(w->pace, rgb, f->walk_k >= 0 ? -1 : f->key_a, f->walk_k >= 0 ? -1 : f->key_b))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    return 0;
}

int sdm_join_writer_push(sdm_join_writer *w, const uint8_t *rgb, sdm_error *err)
{
    if (w->shown >= w->p.plan->n_sequence)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: more frames than the plan shows");
    if ((w->sink && sdm_sink_push(w->sink, rgb, err)) || pace_frame(w, rgb, err) || write_stills(w, rgb, err))
        return -1;
    if (w->p.on_frame && w->p.on_frame(w->p.user, w->shown, rgb, w->p.width, w->p.height))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "frame callback failed");
    w->shown++;
    return 0;
}

int sdm_join_writer_shown(const sdm_join_writer *w)
{
    return w ? w->shown : 0;
}

/* The pace into the plan, where the sidecar reads it (a whole render only). */
static int pace_report(sdm_join_writer *w, sdm_error *err)
{
    if (!w->pace)
        return 0;
    free(w->p.plan->pace_json);
    if (sdm_pace_report_make(w->pace, &w->report) || !(w->p.plan->pace_json = sdm_pace_json(&w->report)))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    w->has_report = 1;
    return 0;
}

int sdm_join_writer_pace(const sdm_join_writer *w, sdm_pace_report *out)
{
    if (!w || !w->has_report)
        return 1;
    *out = w->report;
    return 0;
}

int sdm_join_writer_finish(sdm_join_writer *w, const sdm_sidecar_used *used, int partial, sdm_error *err)
{
    const sdm_outputs *o = w->p.outs;

    if (w->sink && sdm_sink_finish(w->sink, partial, err))
        return -1;
    if (!partial && pace_report(w, err))
        return -1;
    for (int i = o->first_still; i < o->first_still + o->n_stills; i++)
        if (o->files[i].frame >= w->shown)
            sdm_fileset_skip(w->files, sdm_fileset_find(w->files, o->files[i].path));
    if (sdm_outputs_commit(o, w->files, w->p.r, w->p.plan, used, partial, err))
        return -1;
    for (int i = 0; w->p.on_written && i < sdm_fileset_count(w->files); i++)
        if (sdm_fileset_written(w->files, i))
            w->p.on_written(w->p.user, sdm_fileset_written(w->files, i));
    return 0;
}

void sdm_join_writer_free(sdm_join_writer **w)
{
    if (!*w)
        return;
    sdm_sink_free(&(*w)->sink);
    sdm_fileset_free(&(*w)->files);
    sdm_pace_free(&(*w)->pace);
    free(*w);
    *w = NULL;
}
