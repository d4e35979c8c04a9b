#include "retime.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h" /* sdm_file_fingerprint */
#include "frame_distance.h"
#include "hash.h"

int sdm_retime_wanted(const sdm_recipe *r)
{
    int n = 0, segments;

    if (!r || r->walk || r->n_keyframes < 2)
        return 0;
    segments = r->loop == SDM_LOOP_CYCLE ? r->n_keyframes : r->n_keyframes - 1;
    for (int i = 0; i < segments; i++)
        n += r->keyframes[i].retime == SDM_RETIME_EVEN && r->keyframes[i].frames > 1;
    return n;
}

int sdm_retime_probe_steps(int steps)
{
    int s = (steps + 3) / 4, least = steps < 4 ? steps : 4;

    return s < least ? least : s;
}

static uint64_t hash_keyframe(uint64_t h, const sdm_recipe *r, const sdm_keyframe *k)
{
    h = sdm_hash_combine(h, sdm_hash_string(k->prompt));
    h = sdm_hash_combine(h, sdm_hash_string(sdm_recipe_negative(r, k->negative)));
    h = sdm_hash_combine(h, k->seed);
    h = sdm_hash_double(h, k->guidance);
    if (k->image) { /* the picture's contents, strength and fit (nothing without one: older keys hold) */
        char fp[32];
        sdm_file_fingerprint(k->image, fp, sizeof fp);
        h = sdm_hash_combine(h, sdm_hash_string(fp));
        h = sdm_hash_combine(sdm_hash_double(h, k->strength), (uint64_t)k->fit);
    }
    return h;
}

/* Everything the pictures along transition i depend on: the model, the
 * size, the sampler and both keyframes (not frames, ease or hold, which
 * only choose where along the curve the frames go). */
static uint64_t transition_key(const sdm_recipe *r, int i, const char *model, int width, int height)
{
    int next = (i + 1) % r->n_keyframes;
    uint64_t h = sdm_hash_string(model);

    h = sdm_hash_combine(h, (uint64_t)width << 32 | (uint32_t)height);
    h = sdm_hash_combine(h, (uint64_t)r->sampler << 32 | (uint32_t)r->steps);
    h = sdm_hash_double(sdm_hash_combine(h, r->karras), r->eta);
    h = sdm_hash_combine(hash_keyframe(h, r, &r->keyframes[i]), r->keyframes[i].interp);
    h = hash_keyframe(h, r, &r->keyframes[next]);
    return h ? h : 1;
}

int sdm_retime_init(sdm_retime *rt, const sdm_recipe *r, const char *model, int width, int height, sdm_error *err)
{
    int n = r->n_keyframes;

    memset(rt, 0, sizeof *rt);
    rt->curves = calloc((size_t)n, sizeof *rt->curves);
    rt->weights = calloc((size_t)n, sizeof *rt->weights);
    if (!rt->curves || !rt->weights) {
        sdm_retime_free(rt);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    }
    rt->n_keyframes = n;
    rt->probe_steps = sdm_retime_probe_steps(r->steps);
    for (int i = 0; i < n && !r->walk; i++) {
        const sdm_keyframe *k = &r->keyframes[i];
        int has_next = i + 1 < n || (r->loop == SDM_LOOP_CYCLE && n > 1);

        rt->curves[i].from = i;
        rt->curves[i].to = (i + 1) % n;
        if (has_next && k->retime == SDM_RETIME_EVEN && k->frames > 1)
            rt->curves[i].key = transition_key(r, i, model ? model : "", width, height);
    }
    return 0;
}

int sdm_retime_missing(const sdm_retime *rt)
{
    int n = 0;

    for (int i = 0; rt && i < rt->n_keyframes; i++)
        n += rt->curves[i].key && !rt->curves[i].n;
    return n;
}

/* --- curves to and from the sidecar --------------------------------------- */

/* A curve as sdm_retime_curve requires it: 2..max points, t from exactly 0
 * up to exactly 1, d from 0, never falling, everything finite. */
static int curve_valid(const double *t, const double *d, int n)
{
    if (n < 2 || n > SDM_RETIME_MAX_POINTS || t[0] != 0 || t[n - 1] != 1 || d[0] != 0)
        return 0;
    for (int k = 1; k < n; k++)
        if (!(t[k] > t[k - 1]) || !(d[k] >= d[k - 1]) || !isfinite(d[k]))
            return 0;
    return 1;
}

static int read_numbers(json_object *a, double *out, int max)
{
    int n;

    if (!a || !json_object_is_type(a, json_type_array))
        return -1;
    n = (int)json_object_array_length(a);
    if (n > max)
        return -1;
    for (int k = 0; k < n; k++) {
        json_object *v = json_object_array_get_idx(a, k);
        if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
            return -1;
        out[k] = json_object_get_double(v);
    }
    return n;
}

/* One sidecar entry {"from", "to", "key", "t", "d"} into the curve it keys. */
static int take_curve(sdm_retime *rt, json_object *e)
{
    json_object *from, *to, *key;
    double t[SDM_RETIME_MAX_POINTS], d[SDM_RETIME_MAX_POINTS];
    sdm_retime_curve *c;
    uint64_t k;
    int i, n, nd;

    if (!json_object_object_get_ex(e, "from", &from) || !json_object_object_get_ex(e, "to", &to) ||
        !json_object_object_get_ex(e, "key", &key) || !json_object_is_type(key, json_type_string))
        return 0;
    i = json_object_get_int(from);
    if (i < 0 || i >= rt->n_keyframes || json_object_get_int(to) != rt->curves[i].to)
        return 0;
    c = &rt->curves[i];
    if (sscanf(json_object_get_string(key), "%16" SCNx64, &k) != 1 || !c->key || k != c->key || c->n)
        return 0;
    n = read_numbers(json_object_object_get(e, "t"), t, SDM_RETIME_MAX_POINTS);
    nd = read_numbers(json_object_object_get(e, "d"), d, SDM_RETIME_MAX_POINTS);
    if (n != nd || !curve_valid(t, d, n))
        return 0;
    c->t = malloc((size_t)n * sizeof *c->t);
    c->d = malloc((size_t)n * sizeof *c->d);
    if (!c->t || !c->d) {
        free(c->t);
        free(c->d);
        c->t = c->d = NULL;
        return 0;
    }
    memcpy(c->t, t, (size_t)n * sizeof *t);
    memcpy(c->d, d, (size_t)n * sizeof *d);
    c->n = n;
    return 1;
}

/* The curves of a "retime" value whose keys match. */
static int take_curves(sdm_retime *rt, json_object *retime)
{
    json_object *list;
    int taken = 0;

    if (retime && json_object_object_get_ex(retime, "transitions", &list) && json_object_is_type(list, json_type_array))
        for (size_t i = 0; i < json_object_array_length(list); i++)
            taken += take_curve(rt, json_object_array_get_idx(list, i));
    return taken;
}

int sdm_retime_load(sdm_retime *rt, const char *sidecar)
{
    json_object *root = sidecar ? json_object_from_file(sidecar) : NULL, *top = root, *retime = NULL;
    int taken;

    /* a shard's segment manifest (segment.h) holds its sidecar as a member */
    if (root && !json_object_object_get_ex(root, "retime", NULL))
        json_object_object_get_ex(root, "sidecar", &top);
    if (top)
        json_object_object_get_ex(top, "retime", &retime);
    taken = take_curves(rt, retime);
    json_object_put(root);
    return taken;
}

int sdm_retime_take(sdm_retime *rt, const char *retime_json)
{
    json_object *retime = retime_json ? json_tokener_parse(retime_json) : NULL;
    int taken = take_curves(rt, retime);

    json_object_put(retime);
    return taken;
}

/* Appends printf output to a growing string; -1 out of memory. */
static int append(char **s, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int append(char **s, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(*s ? *s + *len : NULL, *s ? *cap - *len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if (*s && *len + (size_t)n < *cap) {
            *len += (size_t)n;
            return 0;
        }
        *cap = (*cap + (size_t)n + 1) * 2;
        char *grown = realloc(*s, *cap);
        if (!grown)
            return -1;
        *s = grown;
    }
}

char *sdm_retime_json(const sdm_retime *rt)
{
    char *s = NULL;
    size_t len = 0, cap = 0;
    int bad = 0, first = 1;

    bad |= append(&s, &len, &cap, "{\"metric\": \"latent\", \"probe_steps\": %d, \"transitions\": [", rt->probe_steps);
    for (int i = 0; i < rt->n_keyframes; i++) {
        const sdm_retime_curve *c = &rt->curves[i];
        if (!c->n)
            continue;
        bad |= append(&s, &len, &cap, "%s\n    {\"from\": %d, \"to\": %d, \"key\": \"%016" PRIx64 "\", \"t\": [",
                      first ? "" : ",", c->from, c->to, c->key);
        for (int k = 0; k < c->n; k++)
            bad |= append(&s, &len, &cap, "%s%.17g", k ? ", " : "", c->t[k]);
        bad |= append(&s, &len, &cap, "], \"d\": [");
        for (int k = 0; k < c->n; k++)
            bad |= append(&s, &len, &cap, "%s%.17g", k ? ", " : "", c->d[k]);
        bad |= append(&s, &len, &cap, "]}");
        first = 0;
    }
    bad |= append(&s, &len, &cap, "]}");
    if (bad) {
        free(s);
        return NULL;
    }
    return s;
}

/* --- placing the frames --------------------------------------------------- */

void sdm_retime_weights_of(const sdm_retime_curve *c, sdm_ease ease, int frames, double *w)
{
    double total = c->n ? c->d[c->n - 1] : 0;
    int k = 0;

    w[0] = 0;
    for (int j = 1; j < frames; j++) {
        double y = sdm_ease_apply(ease, (double)j / frames), span;
        if (!(total > 0)) {
            w[j] = y;
            continue;
        }
        y *= total;
        while (k + 2 < c->n && c->d[k + 1] < y) /* y rises with j: the search goes on from k */
            k++;
        span = c->d[k + 1] - c->d[k];
        w[j] = c->t[k] + (span > 0 ? (y - c->d[k]) / span : 0) * (c->t[k + 1] - c->t[k]);
        if (w[j] > 1)
            w[j] = 1;
    }
}

int sdm_retime_place(sdm_retime *rt, const sdm_recipe *r, sdm_error *err)
{
    for (int i = 0; i < rt->n_keyframes; i++) {
        const sdm_retime_curve *c = &rt->curves[i];
        int frames = r->keyframes[i].frames;

        if (!c->n || rt->weights[i])
            continue;
        rt->weights[i] = malloc((size_t)frames * sizeof *rt->weights[i]);
        if (!rt->weights[i])
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        sdm_retime_weights_of(c, r->keyframes[i].ease, frames, rt->weights[i]);
    }
    return 0;
}

void sdm_retime_free(sdm_retime *rt)
{
    for (int i = 0; rt && i < rt->n_keyframes; i++) {
        free(rt->curves[i].t);
        free(rt->curves[i].d);
        free(rt->weights[i]);
    }
    if (rt) {
        free(rt->curves);
        free(rt->weights);
        memset(rt, 0, sizeof *rt);
    }
}

/* --- the probe ------------------------------------------------------------ */

typedef struct {
    int k; /* the curve's keyframe */
    int n; /* points so far, sorted by t */
    double t[SDM_RETIME_MAX_POINTS], d[SDM_RETIME_MAX_POINTS];
    float *lat[SDM_RETIME_MAX_POINTS]; /* each point's final latent, once rendered */
    int fresh[SDM_RETIME_MAX_POINTS]; /* added this round */
} probe_transition;

struct sdm_retime_probe {
    sdm_retime *rt;
    const sdm_recipe *r;
    size_t latent_n; /* floats per latent */
    probe_transition *tr;
    int n_tr;
    int *slot_tr, *slot_pt; /* output frame i of the round's plan: transition, point */
    int n_slots, renders;
};

/* Round 0 takes about half a transition's frames as evenly spaced
 * intervals, round 1 as many new points again: the probe renders about as
 * many frames as the transition has, at a quarter of the steps. */
static int round_points(int frames)
{
    int m = (frames + 1) / 2;

    return m < 2 ? 2 : m > (SDM_RETIME_MAX_POINTS - 1) / 2 ? (SDM_RETIME_MAX_POINTS - 1) / 2 : m;
}

int sdm_retime_probe_new(sdm_retime *rt, const sdm_recipe *r, size_t latent_n, sdm_retime_probe **out, sdm_error *err)
{
    sdm_retime_probe *pr = calloc(1, sizeof *pr);
    size_t used = 0;

    *out = NULL;
    if (!pr)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    pr->rt = rt;
    pr->r = r;
    pr->latent_n = latent_n;
    pr->tr = calloc((size_t)rt->n_keyframes, sizeof *pr->tr);
    if (!pr->tr) {
        sdm_retime_probe_free(&pr);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    }
    /* transitions without a curve, as many as their latents' budget holds (at least one) */
    for (int i = 0; i < rt->n_keyframes; i++) {
        size_t bytes = (size_t)(2 * round_points(r->keyframes[i].frames) + 1) * latent_n * sizeof(float);
        if (!rt->curves[i].key || rt->curves[i].n)
            continue;
        if (pr->n_tr && used + bytes > SDM_RETIME_PROBE_BYTES)
            break;
        used += bytes;
        pr->tr[pr->n_tr++].k = i;
    }
    *out = pr;
    return 0;
}

/* Inserts weight t (sorted), unless a point is there already. */
static void add_point(probe_transition *p, double t)
{
    int at = 0;

    while (at < p->n && p->t[at] < t)
        at++;
    if ((at < p->n && p->t[at] == t) || p->n >= SDM_RETIME_MAX_POINTS)
        return;
    memmove(&p->t[at + 1], &p->t[at], (size_t)(p->n - at) * sizeof *p->t);
    memmove(&p->lat[at + 1], &p->lat[at], (size_t)(p->n - at) * sizeof *p->lat);
    memmove(&p->fresh[at + 1], &p->fresh[at], (size_t)(p->n - at) * sizeof *p->fresh);
    p->t[at] = t;
    p->lat[at] = NULL;
    p->fresh[at] = 1;
    p->n++;
}

/* Round 0: evenly spaced; round 1: where the frames would go by round 0's
 * curve, half a step apart from them. */
static void choose_points(const sdm_retime_probe *pr, probe_transition *p, int round)
{
    int m = round_points(pr->r->keyframes[p->k].frames);
    sdm_retime_curve coarse = { 0, 0, 0, p->n, p->t, p->d };
    double w[2 * SDM_RETIME_MAX_POINTS + 1];

    for (int k = 0; k < p->n; k++)
        p->fresh[k] = 0;
    if (round == 0) {
        for (int k = 0; k <= m; k++)
            add_point(p, k == m ? 1.0 : (double)k / m);
        return;
    }
    sdm_retime_weights_of(&coarse, SDM_EASE_LINEAR, 2 * m, w);
    for (int k = 1; k < 2 * m; k += 2)
        add_point(p, w[k]);
}

/* The plan frame of point `pt` of transition p: the keyframes themselves at 0 and 1. */
static sdm_plan_frame point_frame(const sdm_retime_probe *pr, const probe_transition *p, int pt)
{
    const sdm_retime_curve *c = &pr->rt->curves[p->k];

    if (p->t[pt] == 0)
        return sdm_plan_transition_at(pr->r, c->from, c->from, 0);
    if (p->t[pt] == 1)
        return sdm_plan_transition_at(pr->r, c->to, c->to, 0);
    return sdm_plan_transition_at(pr->r, c->from, c->to, p->t[pt]);
}

int sdm_retime_probe_plan(sdm_retime_probe *pr, int round, sdm_plan *out, sdm_error *err)
{
    int n = 0;

    memset(out, 0, sizeof *out);
    for (int i = 0; i < pr->n_tr; i++) {
        choose_points(pr, &pr->tr[i], round);
        for (int k = 0; k < pr->tr[i].n; k++)
            n += pr->tr[i].fresh[k];
    }
    free(pr->slot_tr);
    free(pr->slot_pt);
    pr->slot_tr = malloc((size_t)(n ? n : 1) * sizeof *pr->slot_tr);
    pr->slot_pt = malloc((size_t)(n ? n : 1) * sizeof *pr->slot_pt);
    out->renders = malloc((size_t)(n ? n : 1) * sizeof *out->renders);
    out->shown = malloc((size_t)(n ? n : 1) * sizeof *out->shown);
    out->sequence = malloc((size_t)(n ? n : 1) * sizeof *out->sequence);
    out->frame_index = malloc((size_t)(n ? n : 1) * sizeof *out->frame_index);
    if (!pr->slot_tr || !pr->slot_pt || !out->renders || !out->shown || !out->sequence || !out->frame_index) {
        sdm_plan_free(out);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    }
    pr->n_slots = 0;
    for (int i = 0; i < pr->n_tr; i++)
        for (int k = 0; k < pr->tr[i].n; k++) {
            if (!pr->tr[i].fresh[k])
                continue;
            out->renders[pr->n_slots] = out->shown[pr->n_slots] = point_frame(pr, &pr->tr[i], k);
            out->sequence[pr->n_slots] = out->frame_index[pr->n_slots] = pr->n_slots;
            pr->slot_tr[pr->n_slots] = i;
            pr->slot_pt[pr->n_slots++] = k;
        }
    out->n_renders = out->n_sequence = n;
    out->fps = pr->r->fps;
    return 0;
}

int sdm_retime_probe_latents(sdm_retime_probe *pr, int first, int nb, const float *lat, sdm_error *err)
{
    for (int j = 0; j < nb; j++) {
        probe_transition *p;
        int pt;

        if (first + j < 0 || first + j >= pr->n_slots)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: probe frame %d is not in the round", first + j);
        p = &pr->tr[pr->slot_tr[first + j]];
        pt = pr->slot_pt[first + j];
        if (!p->lat[pt] && !(p->lat[pt] = malloc(pr->latent_n * sizeof *p->lat[pt])))
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        memcpy(p->lat[pt], lat + (size_t)j * pr->latent_n, pr->latent_n * sizeof *lat);
        pr->renders++;
    }
    return 0;
}

/* The distance run along the points; the last round hands the curve over
 * and lets the frames go. */
static int measure_transition(sdm_retime_probe *pr, probe_transition *p, int last, sdm_error *err)
{
    sdm_retime_curve *c = &pr->rt->curves[p->k];

    p->d[0] = 0;
    for (int k = 1; k < p->n; k++) {
        if (!p->lat[k - 1] || !p->lat[k])
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: probe frame %d of transition %d missing", k, p->k);
        p->d[k] = p->d[k - 1] + sdm_latent_distance(p->lat[k - 1], p->lat[k], pr->latent_n);
    }
    if (!last)
        return 0;
    c->t = malloc((size_t)p->n * sizeof *c->t);
    c->d = malloc((size_t)p->n * sizeof *c->d);
    if (!c->t || !c->d)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    memcpy(c->t, p->t, (size_t)p->n * sizeof *p->t);
    memcpy(c->d, p->d, (size_t)p->n * sizeof *p->d);
    c->n = p->n;
    for (int k = 0; k < p->n; k++) {
        free(p->lat[k]);
        p->lat[k] = NULL;
    }
    return 0;
}

int sdm_retime_probe_end_round(sdm_retime_probe *pr, int round, sdm_error *err)
{
    for (int i = 0; i < pr->n_tr; i++)
        if (measure_transition(pr, &pr->tr[i], round == 1, err))
            return -1;
    return 0;
}

int sdm_retime_probe_renders(const sdm_retime_probe *pr)
{
    return pr ? pr->renders : 0;
}

void sdm_retime_probe_free(sdm_retime_probe **ppr)
{
    sdm_retime_probe *pr = ppr ? *ppr : NULL;

    if (!pr)
        return;
    for (int i = 0; pr->tr && i < pr->n_tr; i++)
        for (int k = 0; k < pr->tr[i].n; k++)
            free(pr->tr[i].lat[k]);
    free(pr->tr);
    free(pr->slot_tr);
    free(pr->slot_pt);
    free(pr);
    *ppr = NULL;
}
