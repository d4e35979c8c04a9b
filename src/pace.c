/* The SSIMs run on a pool of workers (workpool.h), each pair of adjacent
 * frames a job: push copies the frame into a ring and returns unless every
 * job is in flight; results come back in push order, where the pairs are
 * given to their transitions. The ring holds one frame more than the jobs
 * in flight, so a frame a running job reads is never overwritten. */
#include "pace.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "workpool.h"

/* Workers at most: SSIM is cheap beside the encoders that share the cores. */
#define PACE_MAX_THREADS 4
/* Frames waiting to be measured at most (with workers): two batches of a
 * render, so one landing never waits on the SSIMs of the one before. */
#define PACE_QUEUE 16

typedef struct {
    int from, to;
    double *d;
    int n, cap;
} segment;

/* Frame k in display order: its distance to frame k-1. */
typedef struct {
    int64_t k;
    int from, to;
    int moved; /* differs from frame k-1 */
    double d;
} pace_job;

struct sdm_pace {
    size_t frame_bytes;
    sdm_workpool *pool;
    sdm_ssim **ssim; /* one per worker */
    int threads;
    uint8_t *ring; /* n_ring frames: frame k at k % n_ring */
    pace_job *jobs; /* the pool's depth: frame k's at k % n_jobs */
    int n_ring, n_jobs;
    int64_t pushed;
    uint8_t *first;
    int frames, prev_from, prev_to; /* of the frames whose results came back */
    double first_pair, last_pair; /* (first, second) and the latest pair, holds included */
    int failed; /* out of memory */
    segment *seg;
    int n_seg, cap_seg;
    double *all;
    int n_all, cap_all;
};

static const uint8_t *ring_frame(const sdm_pace *p, int64_t k)
{
    return p->ring + (size_t)(k % p->n_ring) * p->frame_bytes;
}

static int measure_pair(void *ctx, int worker, void *job)
{
    sdm_pace *p = ctx;
    pace_job *j = job;
    const uint8_t *a, *b;

    if (j->k == 0)
        return 0;
    a = ring_frame(p, j->k - 1);
    b = ring_frame(p, j->k);
    j->moved = memcmp(a, b, p->frame_bytes) != 0;
    j->d = j->moved ? sdm_ssim_distance(sdm_ssim_rgb(p->ssim[worker], a, b)) : 0;
    return 0;
}

sdm_pace *sdm_pace_new_threads(int width, int height, int threads)
{
    sdm_pace *p = calloc(1, sizeof *p);
    sdm_error ignored = { 0 };
    int ok;

    if (!p)
        return NULL;
    p->frame_bytes = (size_t)width * height * 3;
    p->threads = threads > 0 ? threads : sdm_workpool_threads(0);
    p->threads = p->threads > PACE_MAX_THREADS ? PACE_MAX_THREADS : p->threads;
    p->n_jobs = p->threads > 1 ? (2 * p->threads > PACE_QUEUE ? 2 * p->threads : PACE_QUEUE) : 2;
    p->n_ring = p->n_jobs + 1;
    p->ssim = calloc((size_t)p->threads, sizeof *p->ssim);
    p->jobs = calloc((size_t)p->n_jobs, sizeof *p->jobs);
    p->ring = malloc((size_t)p->n_ring * p->frame_bytes);
    p->first = malloc(p->frame_bytes);
    ok = p->ssim && p->jobs && p->ring && p->first;
    for (int i = 0; ok && i < p->threads; i++)
        ok = (p->ssim[i] = sdm_ssim_new(width, height)) != NULL;
    if (!ok || sdm_workpool_open(p->threads, p->n_jobs, measure_pair, p, &p->pool, &ignored))
        sdm_pace_free(&p);
    return p;
}

sdm_pace *sdm_pace_new(int width, int height)
{
    return sdm_pace_new_threads(width, height, 0);
}

static int grow(double **d, int *n, int *cap, double v)
{
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 64;
        double *g = realloc(*d, (size_t)c * sizeof *g);
        if (!g)
            return -1;
        *d = g;
        *cap = c;
    }
    (*d)[(*n)++] = v;
    return 0;
}

static segment *segment_of(sdm_pace *p, int from, int to)
{
    for (int i = 0; i < p->n_seg; i++)
        if (p->seg[i].from == from && p->seg[i].to == to)
            return &p->seg[i];
    if (p->n_seg == p->cap_seg) {
        int c = p->cap_seg ? 2 * p->cap_seg : 8;
        segment *g = realloc(p->seg, (size_t)c * sizeof *g);
        if (!g)
            return NULL;
        p->seg = g;
        p->cap_seg = c;
    }
    memset(&p->seg[p->n_seg], 0, sizeof *p->seg);
    p->seg[p->n_seg].from = from;
    p->seg[p->n_seg].to = to;
    return &p->seg[p->n_seg++];
}

/* A measured frame, in display order: its pair to its transition. */
static int take_result(sdm_pace *p, const pace_job *j)
{
    int from = j->from, to = j->to;
    segment *s;

    if (p->frames > 0 && j->moved) {
        if (from == to && p->prev_from != p->prev_to) { /* onto a keyframe: the transition into it */
            from = p->prev_from;
            to = p->prev_to;
        } else if (from == to && from != p->prev_from) { /* keyframe to keyframe */
            from = p->prev_from;
        }
        s = segment_of(p, from, to);
        if (!s || grow(&s->d, &s->n, &s->cap, j->d) || grow(&p->all, &p->n_all, &p->cap_all, j->d))
            return -1;
        p->last_pair = j->d;
    } else {
        p->last_pair = 0;
    }
    if (p->frames == 1)
        p->first_pair = p->last_pair;
    p->prev_from = from;
    p->prev_to = to;
    p->frames++;
    return 0;
}

/* Takes the oldest job in flight (waiting for it with wait != 0). 1 if one was taken. */
static int collect_one(sdm_pace *p, int wait)
{
    int rc = 0;
    pace_job *j = wait ? sdm_workpool_take(p->pool, &rc) : sdm_workpool_poll(p->pool, &rc);

    if (!j)
        return 0;
    if (rc || take_result(p, j))
        p->failed = 1;
    return 1;
}

int sdm_pace_push(sdm_pace *p, const uint8_t *rgb, int from, int to)
{
    pace_job *j;

    if (sdm_workpool_in_flight(p->pool) == p->n_jobs)
        collect_one(p, 1);
    while (collect_one(p, 0))
        ;
    if (p->failed)
        return -1;
    if (p->pushed == 0)
        memcpy(p->first, rgb, p->frame_bytes);
    memcpy(p->ring + (size_t)(p->pushed % p->n_ring) * p->frame_bytes, rgb, p->frame_bytes);
    j = &p->jobs[p->pushed % p->n_jobs];
    *j = (pace_job){ p->pushed, from, to, 0, 0 };
    p->pushed++;
    return sdm_workpool_submit(p->pool, j) ? -1 : 0;
}

int sdm_pace_report_make(sdm_pace *p, sdm_pace_report *out)
{
    double seam[3];

    memset(out, 0, sizeof *out);
    while (collect_one(p, 1))
        ;
    if (p->failed)
        return -1;
    out->frames = p->frames;
    for (int i = 0; i < p->n_seg; i++) {
        if (out->n_segments == SDM_PACE_MAX_SEGMENTS) {
            out->segments_left_out++;
            continue;
        }
        out->segments[out->n_segments].from = p->seg[i].from;
        out->segments[out->n_segments].to = p->seg[i].to;
        if (sdm_distance_summarise(p->seg[i].d, p->seg[i].n, &out->segments[out->n_segments++].s))
            return -1;
    }
    if (sdm_distance_summarise(p->all, p->n_all, &out->all))
        return -1;
    if (p->frames >= 3) {
        seam[0] = p->last_pair;
        seam[1] = sdm_ssim_distance(sdm_ssim_rgb(p->ssim[0], ring_frame(p, p->pushed - 1), p->first));
        seam[2] = p->first_pair;
        if (sdm_distance_summarise(seam, 3, &out->seam))
            return -1;
    }
    return 0;
}

void sdm_pace_free(sdm_pace **pp)
{
    sdm_pace *p = pp ? *pp : NULL;

    if (!p)
        return;
    sdm_workpool_free(&p->pool); /* first: its workers read the ring */
    for (int i = 0; i < p->n_seg; i++)
        free(p->seg[i].d);
    free(p->seg);
    free(p->all);
    free(p->first);
    free(p->ring);
    free(p->jobs);
    for (int i = 0; p->ssim && i < p->threads; i++)
        sdm_ssim_free(&p->ssim[i]);
    free(p->ssim);
    free(p);
    *pp = NULL;
}

static void print_line(FILE *f, const char *what, const sdm_distance_summary *s)
{
    fprintf(f, "  %-16s %5d pairs  largest %.4f  median %.4f  largest/median %.2f\n", what, s->n, s->largest, s->median,
            sdm_distance_unevenness(s));
}

void sdm_pace_print(const sdm_pace_report *r, FILE *f)
{
    char name[48];

    fprintf(f, "pace (SSIM distance sqrt(1-SSIM) between adjacent frames, %d frames):\n", r->frames);
    for (int i = 0; i < r->n_segments; i++) {
        const sdm_pace_segment *s = &r->segments[i];
        if (s->from < 0)
            continue;
        snprintf(name, sizeof name, "transition %d->%d", s->from, s->to);
        print_line(f, name, &s->s);
    }
    if (r->segments_left_out)
        fprintf(f, "  (%d more transitions, in \"all\")\n", r->segments_left_out);
    print_line(f, "all", &r->all);
    print_line(f, "seam", &r->seam);
}

static int put(char **s, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int put(char **s, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(*s + *len, *cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || *len + (size_t)n >= *cap)
        return -1;
    *len += (size_t)n;
    return 0;
}

static int put_summary(char **s, size_t *len, size_t *cap, const sdm_distance_summary *d)
{
    return put(s, len, cap, "\"pairs\": %d, \"largest\": %.17g, \"median\": %.17g}", d->n, d->largest, d->median);
}

char *sdm_pace_json(const sdm_pace_report *r)
{
    size_t cap = 512 + (size_t)r->n_segments * 200, len = 0;
    char *s = malloc(cap);
    int bad = !s;

    if (bad)
        return NULL;
    bad |= put(&s, &len, &cap, "{\"metric\": \"ssim\", \"frames\": %d, \"transitions\": [", r->frames);
    for (int i = 0; i < r->n_segments && !bad; i++) {
        bad |=
            put(&s, &len, &cap, "%s{\"from\": %d, \"to\": %d, ", i ? ", " : "", r->segments[i].from, r->segments[i].to);
        bad |= put_summary(&s, &len, &cap, &r->segments[i].s);
    }
    bad |= put(&s, &len, &cap, "],\n    \"all\": {");
    bad |= put_summary(&s, &len, &cap, &r->all);
    bad |= put(&s, &len, &cap, ", \"seam\": {");
    bad |= put_summary(&s, &len, &cap, &r->seam);
    bad |= put(&s, &len, &cap, "}");
    if (bad) {
        free(s);
        return NULL;
    }
    return s;
}
