#include "pace.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int from, to;
    double *d;
    int n, cap;
} segment;

struct sdm_pace {
    sdm_ssim *ssim;
    size_t frame_bytes;
    uint8_t *first, *prev;
    int frames, prev_from, prev_to;
    double first_pair, last_pair; /* (first, second) and the latest pair, holds included */
    segment *seg;
    int n_seg, cap_seg;
    double *all;
    int n_all, cap_all;
};

sdm_pace *sdm_pace_new(int width, int height)
{
    sdm_pace *p = calloc(1, sizeof *p);

    if (!p)
        return NULL;
    p->frame_bytes = (size_t)width * height * 3;
    p->ssim = sdm_ssim_new(width, height);
    p->first = malloc(p->frame_bytes);
    p->prev = malloc(p->frame_bytes);
    if (!p->ssim || !p->first || !p->prev)
        sdm_pace_free(&p);
    return p;
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

int sdm_pace_push(sdm_pace *p, const uint8_t *rgb, int from, int to)
{
    double d;
    segment *s;

    if (p->frames == 0) {
        memcpy(p->first, rgb, p->frame_bytes);
    } else if (memcmp(p->prev, rgb, p->frame_bytes)) {
        d = sdm_ssim_distance(sdm_ssim_rgb(p->ssim, p->prev, rgb));
        if (from == to && p->prev_from != p->prev_to) { /* onto a keyframe: the transition into it */
            from = p->prev_from;
            to = p->prev_to;
        } else if (from == to && from != p->prev_from) { /* keyframe to keyframe */
            from = p->prev_from;
        }
        s = segment_of(p, from, to);
        if (!s || grow(&s->d, &s->n, &s->cap, d) || grow(&p->all, &p->n_all, &p->cap_all, d))
            return -1;
        p->last_pair = d;
    } else {
        p->last_pair = 0;
    }
    if (p->frames == 1)
        p->first_pair = p->last_pair;
    memcpy(p->prev, rgb, p->frame_bytes);
    p->prev_from = from;
    p->prev_to = to;
    p->frames++;
    return 0;
}

int sdm_pace_report_make(const sdm_pace *p, sdm_pace_report *out)
{
    double seam[3];

    memset(out, 0, sizeof *out);
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
        seam[1] = sdm_ssim_distance(sdm_ssim_rgb(p->ssim, p->prev, p->first));
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
    for (int i = 0; i < p->n_seg; i++)
        free(p->seg[i].d);
    free(p->seg);
    free(p->all);
    free(p->first);
    free(p->prev);
    sdm_ssim_free(&p->ssim);
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
