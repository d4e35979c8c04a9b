/* The frame planner. Every keyframe is one render; a transition of N frames
 * from key a to b renders j = 0..N-1 at t = ease(j/N), half-open (j = 0 is
 * a itself, b is the next transition's start), so no frame is rendered
 * twice. Holds and pingpong's way back only repeat indices into renders[];
 * then renders whose effective inputs are identical (a keyframe given
 * twice, a transition between keyframes that condition alike) are merged,
 * by the form the conditioner computes from (inputs.h). */
#include "plan.h"

#include "hash.h"
#include "inputs.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

double sdm_ease_apply(sdm_ease e, double x)
{
    if (!(x > 0)) /* NaN too */
        return 0;
    if (x >= 1)
        return 1;
    switch (e) {
    case SDM_EASE_SMOOTHSTEP:
        return x * x * (3 - 2 * x);
    case SDM_EASE_COSINE:
        return 0.5 - 0.5 * cos(M_PI * x);
    default:
        return x;
    }
}

/* Arrays sized by sdm_recipe_shown_frames(); writes past them are counted,
 * not made, so a disagreement is reported instead of corrupting memory. */
typedef struct {
    sdm_plan *p;
    int cap;
    int overflow;
    const double *const *weights; /* per keyframe: its transition's weights, or NULL (sdm_plan_make_retimed) */
} builder;

static int add_render(builder *b, sdm_plan_frame f)
{
    if (b->p->n_renders >= b->cap) {
        b->overflow = 1;
        return 0;
    }
    b->p->renders[b->p->n_renders] = f;
    return b->p->n_renders++;
}

static void show(builder *b, int render, int times)
{
    for (int i = 0; i < times; i++) {
        if (b->p->n_sequence >= b->cap) {
            b->overflow = 1;
            return;
        }
        b->p->sequence[b->p->n_sequence++] = render;
    }
}

static sdm_plan_frame key_frame(const sdm_recipe *r, int i)
{
    sdm_plan_frame f = { i, i, 0.0, r->keyframes[i].interp, 0.0, r->keyframes[i].guidance, -1 };
    return f;
}

sdm_plan_frame sdm_plan_transition_at(const sdm_recipe *r, int a, int b, double t)
{
    const sdm_keyframe *ka = &r->keyframes[a], *kb = &r->keyframes[b];
    sdm_plan_frame f = { a, b, t, ka->interp, t, ka->guidance + (kb->guidance - ka->guidance) * t, -1 };
    return f;
}

/* Frame j of the transition from a: at its eased weight, or at the weight
 * a retiming gave it. */
static sdm_plan_frame transition_frame(const builder *bd, const sdm_recipe *r, int a, int b, int j)
{
    const sdm_keyframe *ka = &r->keyframes[a];
    double t = bd->weights && bd->weights[a] ? bd->weights[a][j] : sdm_ease_apply(ka->ease, (double)j / ka->frames);
    return sdm_plan_transition_at(r, a, b, t);
}

static void plan_morph(builder *b, const sdm_recipe *r, int *first_run, int *last_run)
{
    int n = r->n_keyframes;
    int segments = r->loop == SDM_LOOP_CYCLE ? n : n - 1;

    for (int i = 0; i < segments; i++) {
        int next = (i + 1) % n;
        show(b, add_render(b, key_frame(r, i)), 1 + r->keyframes[i].hold);
        for (int j = 1; j < r->keyframes[i].frames; j++)
            show(b, add_render(b, transition_frame(b, r, i, next, j)), 1);
    }
    /* without cycle the last keyframe closes the sequence; with it, the
     * first frame already is the last transition's end */
    if (r->loop != SDM_LOOP_CYCLE)
        show(b, add_render(b, key_frame(r, n - 1)), 1 + r->keyframes[n - 1].hold);
    *first_run = 1 + r->keyframes[0].hold;
    *last_run = 1 + r->keyframes[n - 1].hold;
}

static void plan_walk(builder *b, const sdm_recipe *r, int *first_run, int *last_run)
{
    for (int k = 0; k < r->walk->frames; k++) {
        sdm_plan_frame f = { 0, 0, 0.0, SDM_INTERP_LERP, 0.0, r->walk->guidance, k };
        show(b, add_render(b, f), 1);
    }
    *first_run = 1;
    *last_run = 1;
}

/* --- merging renders with identical inputs ------------------------------- */

static int same_inputs(const void *items, int a, int b)
{
    const sdm_frame_inputs *in = items;
    return sdm_frame_inputs_equal(&in[a], &in[b]);
}

/* Renders with equal inputs (inputs.h) become one: renders[] keeps the
 * first of each (still in order of first appearance), sequence[] points at
 * it. Walk frames all differ in walk_k, so none merge. */
static int merge_identical(sdm_plan *p, const sdm_recipe *r)
{
    int *remap = malloc((size_t)p->n_renders * sizeof *remap);
    sdm_frame_inputs *in = malloc((size_t)p->n_renders * sizeof *in);
    sdm_text_ids ids = { 0 };
    sdm_index t = { 0 };
    int n = 0, rc = -1;

    if (!remap || !in || sdm_text_ids_make(r, &ids) || sdm_index_init(&t, (size_t)p->n_renders))
        goto end;
    for (int i = 0; i < p->n_renders; i++) {
        sdm_plan_frame f = p->renders[i];
        int first;

        in[i] = sdm_frame_inputs_of(r, &ids, &f);
        first = sdm_index_intern(&t, sdm_frame_inputs_hash(&in[i]), i, same_inputs, in);
        if (first == i) {
            remap[i] = n;
            p->renders[n++] = f; /* n <= i: nothing unread is overwritten */
        } else {
            remap[i] = remap[first];
        }
    }
    p->n_renders = n;
    for (int i = 0; i < p->n_sequence; i++)
        p->sequence[i] = remap[p->sequence[i]];
    rc = 0;
end:
    sdm_index_free(&t);
    sdm_text_ids_free(&ids);
    free(remap);
    free(in);
    return rc;
}

static int check_recipe(const sdm_recipe *r, int64_t *shown, sdm_error *err)
{
    const char *name = r && r->path ? r->path : "recipe";

    if (!r || r->n_keyframes < 1 || !r->keyframes)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: nothing to plan: no keyframes", name);
    if (r->walk && (r->walk->frames < 1 || r->loop == SDM_LOOP_CYCLE))
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: a walk needs frames >= 1 and loop none or pingpong", name);
    if (!r->walk && r->loop == SDM_LOOP_CYCLE && r->n_keyframes < 2)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: loop: cycle needs at least 2 keyframes", name);
    for (int i = 0; i < r->n_keyframes; i++)
        if (r->keyframes[i].frames < 1 || r->keyframes[i].hold < 0)
            return sdm_error_set(err, SDM_EXIT_USAGE,
                                 "%s: keyframe %d: frames must be >= 1 and hold >= 0 "
                                 "(got %d and %d)",
                                 name, i, r->keyframes[i].frames, r->keyframes[i].hold);
    if (!(r->fps > 0))
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: fps must be above 0", name);
    *shown = sdm_recipe_shown_frames(r);
    if (*shown < 1 || *shown > SDM_MAX_SHOWN_FRAMES)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: the recipe shows %" PRId64 " frames; expected 1..%d", name,
                             *shown, SDM_MAX_SHOWN_FRAMES);
    return 0;
}

int sdm_plan_make(const sdm_recipe *r, sdm_plan *out, sdm_error *err)
{
    return sdm_plan_make_retimed(r, NULL, out, err);
}

int sdm_plan_make_retimed(const sdm_recipe *r, const double *const *weights, sdm_plan *out, sdm_error *err)
{
    builder b = { out, 0, 0, weights };
    int64_t shown = 0;
    int first_run, last_run, forward;

    memset(out, 0, sizeof *out);
    if (check_recipe(r, &shown, err))
        return -1;
    out->renders = calloc((size_t)shown, sizeof *out->renders);
    out->sequence = calloc((size_t)shown, sizeof *out->sequence);
    out->frame_index = calloc((size_t)shown, sizeof *out->frame_index);
    out->shown = calloc((size_t)shown, sizeof *out->shown);
    if (!out->renders || !out->sequence || !out->frame_index || !out->shown) {
        sdm_plan_free(out);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory planning %" PRId64 " frames", shown);
    }
    b.cap = (int)shown;
    if (r->walk)
        plan_walk(&b, r, &first_run, &last_run);
    else
        plan_morph(&b, r, &first_run, &last_run);
    /* pingpong: back over the way there, without the turnaround run (shown
     * once) and without the first run (the next repeat starts with it) */
    forward = out->n_sequence;
    if (r->loop == SDM_LOOP_PINGPONG)
        for (int i = forward - 1 - last_run; i >= first_run; i--)
            show(&b, out->sequence[i], 1);
    if (b.overflow || out->n_sequence != shown) {
        /* sdm_recipe_shown_frames and the walk above disagree: a bug, not bad input */
        sdm_plan_free(out);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal error: planned %" PRId64 " frames, expected %" PRId64,
                             (int64_t)b.p->n_sequence, shown);
    }
    for (int i = 0; i < out->n_sequence; i++) {
        out->frame_index[i] = i;
        out->shown[i] = out->renders[out->sequence[i]];
    }
    if (merge_identical(out, r)) {
        sdm_plan_free(out);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory planning %" PRId64 " frames", shown);
    }
    out->fps = r->fps;
    return 0;
}

/* A frame number; one past LONG_MAX reads as LONG_MAX (out of any plan's range). */
static long frame_number(const char *s, char **end)
{
    long v;

    errno = 0;
    v = strtol(s, end, 10);
    return errno == ERANGE ? LONG_MAX : v;
}

/* "37", "0-9,20": a sorted set of output frames, as a mask over n. */
static int parse_selection(const char *spec, int n, unsigned char *mask, sdm_error *err)
{
    const char *s = spec;

    if (!spec || !*spec)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "--frames: expected frame numbers like '37' or '0-9,20', "
                             "got nothing");
    for (;;) {
        long lo, hi;
        const char *lo_at, *hi_at;
        char *end;

        while (*s == ' ')
            s++;
        if (*s < '0' || *s > '9')
            goto syntax;
        lo_at = hi_at = s;
        lo = frame_number(s, &end);
        hi = lo;
        s = end;
        while (*s == ' ')
            s++;
        if (*s == '-') {
            s++;
            while (*s == ' ')
                s++;
            if (*s < '0' || *s > '9')
                goto syntax;
            hi_at = s;
            hi = frame_number(s, &end);
            s = end;
        }
        /* the number as written: one too large for a long is still that number */
        if (lo >= n || hi >= n) {
            const char *at = lo >= n ? lo_at : hi_at;
            size_t digits = strspn(at, "0123456789");
            return sdm_error_set(err, SDM_EXIT_USAGE,
                                 "--frames: frame %.*s%s is out of range; this plan shows "
                                 "frames 0..%d",
                                 (int)(digits > 40 ? 40 : digits), at, digits > 40 ? "..." : "", n - 1);
        }
        if (hi < lo)
            return sdm_error_set(err, SDM_EXIT_USAGE, "--frames: the range %ld-%ld is backwards; write %ld-%ld", lo, hi,
                                 hi, lo);
        for (long i = lo; i <= hi; i++)
            mask[i] = 1;
        while (*s == ' ')
            s++;
        if (!*s)
            break;
        if (*s != ',')
            goto syntax;
        s++;
    }
    return 0;
syntax:
    return sdm_error_set(err, SDM_EXIT_USAGE,
                         "--frames: expected frame numbers like '37' or '0-9,20', "
                         "not '%s'",
                         spec);
}

/* The plan's frames replaced by a selection of them (its arrays taken). */
static void plan_replace(sdm_plan *p, sdm_plan_frame *renders, int n_renders, int *seq, int *index,
                         sdm_plan_frame *shown, int n_seq)
{
    free(p->renders);
    free(p->sequence);
    free(p->frame_index);
    free(p->shown);
    p->renders = renders;
    p->sequence = seq;
    p->frame_index = index;
    p->shown = shown;
    p->n_renders = n_renders;
    p->n_sequence = n_seq;
}

int sdm_plan_select(sdm_plan *p, const char *spec, sdm_error *err)
{
    unsigned char *mask = NULL;
    int *remap = NULL, *seq = NULL, *index = NULL;
    sdm_plan_frame *renders = NULL, *shown = NULL;
    int n_seq = 0, n_renders = 0, rc = -1;

    if (!p || p->n_sequence < 1) {
        sdm_error_set(err, SDM_EXIT_USAGE, "--frames: the plan has no frames to select");
        goto end;
    }
    mask = calloc((size_t)p->n_sequence, 1);
    remap = malloc((size_t)p->n_renders * sizeof *remap);
    seq = malloc((size_t)p->n_sequence * sizeof *seq);
    index = malloc((size_t)p->n_sequence * sizeof *index);
    renders = malloc((size_t)p->n_renders * sizeof *renders);
    shown = malloc((size_t)p->n_sequence * sizeof *shown);
    if (!mask || !remap || !seq || !index || !renders || !shown) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    if (parse_selection(spec, p->n_sequence, mask, err))
        goto end;
    for (int i = 0; i < p->n_renders; i++)
        remap[i] = -1;
    for (int i = 0; i < p->n_sequence; i++) {
        int old = p->sequence[i];
        if (!mask[i])
            continue;
        if (remap[old] < 0) {
            remap[old] = n_renders;
            renders[n_renders++] = p->renders[old];
        }
        seq[n_seq] = remap[old];
        shown[n_seq] = p->shown ? p->shown[i] : p->renders[old];
        index[n_seq++] = p->frame_index[i];
    }
    plan_replace(p, renders, n_renders, seq, index, shown, n_seq);
    renders = shown = NULL;
    seq = index = NULL;
    rc = 0;
end:
    free(mask);
    free(remap);
    free(seq);
    free(index);
    free(renders);
    free(shown);
    return rc;
}

int sdm_plan_keep_renders(sdm_plan *p, int first, int end, sdm_error *err)
{
    int n = end - first, *seq = NULL, *index = NULL;
    sdm_plan_frame *renders = NULL, *shown = NULL;

    if (first < 0 || end > p->n_renders || n < 1)
        return sdm_error_set(err, SDM_EXIT_USAGE, "renders %d-%d: the plan has %d", first, end - 1, p->n_renders);
    seq = malloc((size_t)n * sizeof *seq);
    index = malloc((size_t)n * sizeof *index);
    renders = malloc((size_t)n * sizeof *renders);
    shown = malloc((size_t)n * sizeof *shown);
    if (!seq || !index || !renders || !shown) {
        free(seq);
        free(index);
        free(renders);
        free(shown);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    }
    for (int i = 0; i < n; i++)
        index[i] = -1;
    /* renders are in order of first appearance: one pass finds each first showing */
    for (int i = 0; i < p->n_sequence; i++) {
        int k = p->sequence[i] - first;
        if (k < 0 || k >= n || index[k] >= 0)
            continue;
        index[k] = p->frame_index[i];
        shown[k] = p->shown ? p->shown[i] : p->renders[p->sequence[i]];
    }
    for (int k = 0; k < n; k++) {
        seq[k] = k;
        renders[k] = p->renders[first + k];
    }
    plan_replace(p, renders, n, seq, index, shown, n);
    return 0;
}

static void print_keyframes(const sdm_recipe *r, FILE *f)
{
    if (r->walk) {
        const sdm_walk *w = r->walk;
        fprintf(f,
                "walk (%d:%d): \"%s\"\n  seed %" PRIu64
                ", guidance %g, %d frames, sigma %g, anchor %g, "
                "noise_seed %" PRIu64 "%s\n",
                w->mark.line, w->mark.col, w->prompt, w->seed, w->guidance, w->frames, w->sigma, w->anchor,
                w->noise_seed, w->closed ? ", closed" : "");
        if (w->negative)
            fprintf(f, "  negative \"%s\"\n", w->negative);
        if (w->image)
            fprintf(f, "  image \"%s\", strength %g, fit %s\n", w->image, w->strength, sdm_image_fit_name(w->fit));
        return;
    }
    fprintf(f, "keyframes:\n");
    for (int i = 0; i < r->n_keyframes; i++) {
        const sdm_keyframe *k = &r->keyframes[i];
        int has_next = i + 1 < r->n_keyframes || r->loop == SDM_LOOP_CYCLE;
        fprintf(f, "  %d (%d:%d): \"%s\"\n    seed %" PRIu64 ", guidance %g", i, k->mark.line, k->mark.col, k->prompt,
                k->seed, k->guidance);
        if (k->hold)
            fprintf(f, ", hold %d", k->hold);
        if (has_next && r->bpm > 0)
            fprintf(f, "; then %g beats", k->beats);
        if (has_next)
            fprintf(f, "%s %d frames to %d, %s, %s%s", r->bpm > 0 ? "," : "; then", k->frames, (i + 1) % r->n_keyframes,
                    sdm_interp_name(k->interp), sdm_ease_name(k->ease),
                    k->retime == SDM_RETIME_EVEN ? ", retime even" : "");
        fputc('\n', f);
        if (k->negative)
            fprintf(f, "    negative \"%s\"\n", k->negative);
        if (k->image)
            fprintf(f, "    image \"%s\", strength %g, fit %s\n", k->image, k->strength, sdm_image_fit_name(k->fit));
    }
}

/* Output frame i where the recipe places it (a plan put together by hand
 * may lack `shown`: then its render). */
static const sdm_plan_frame *shown_frame(const sdm_plan *p, int i)
{
    return p->shown ? &p->shown[i] : &p->renders[p->sequence[i]];
}

/* The same place in the recipe: a hold or pingpong's way back, as opposed
 * to another place whose inputs happen to be identical. */
static int same_place(const sdm_plan_frame *a, const sdm_plan_frame *b)
{
    return a->key_a == b->key_a && a->key_b == b->key_b && a->t == b->t && a->walk_k == b->walk_k;
}

static void frame_columns(const sdm_plan *p, const sdm_recipe *r, int i, char *keys, size_t nk, char *seeds, size_t ns)
{
    const sdm_plan_frame *fr = shown_frame(p, i);
    const sdm_keyframe *ka = &r->keyframes[fr->key_a], *kb = &r->keyframes[fr->key_b];

    if (fr->walk_k >= 0)
        snprintf(keys, nk, "walk %d", fr->walk_k);
    else if (fr->key_a == fr->key_b)
        snprintf(keys, nk, "%d", fr->key_a);
    else
        snprintf(keys, nk, "%d->%d", fr->key_a, fr->key_b);
    if (ka->seed == kb->seed || fr->seed_t == 0)
        snprintf(seeds, ns, "%" PRIu64, ka->seed);
    else
        snprintf(seeds, ns, "%" PRIu64 "->%" PRIu64, ka->seed, kb->seed);
}

void sdm_plan_print(const sdm_plan *p, const sdm_recipe *r, FILE *f)
{
    sdm_plan_print_sampler(p, r, NULL, f);
}

void sdm_plan_print_sampler(const sdm_plan *p, const sdm_recipe *r, const char *sampler, FILE *f)
{
    char size[64], keys[32], seeds[64], same[48];
    int *first_shown = NULL, seed_width = 4;

    if (!p || !r || !f)
        return;
    if (r->width && r->height)
        snprintf(size, sizeof size, "%dx%d", r->width, r->height);
    else
        snprintf(size, sizeof size, "the model's size");
    fprintf(f, "%s: %d frames shown, %d rendered, %.2f s at %g fps, loop %s, %s, %d steps, %s\n",
            r->path ? r->path : "recipe", p->n_sequence, p->n_renders, p->fps > 0 ? p->n_sequence / p->fps : 0.0,
            p->fps, sdm_loop_name(r->loop), size, r->steps, sampler ? sampler : sdm_sampler_name(r->sampler));
    if (r->bpm > 0)
        fprintf(f, "at %g bpm: %d frames are %.6g beats\n", r->bpm, p->n_sequence,
                p->n_sequence * r->bpm / 60 / p->fps);
    print_keyframes(r, f);
    first_shown = malloc((size_t)(p->n_renders > 0 ? p->n_renders : 1) * sizeof *first_shown);
    if (!first_shown)
        return;
    for (int i = 0; i < p->n_renders; i++)
        first_shown[i] = -1;
    for (int i = 0; i < p->n_sequence; i++) {
        frame_columns(p, r, i, keys, sizeof keys, seeds, sizeof seeds);
        if ((int)strlen(seeds) > seed_width)
            seed_width = (int)strlen(seeds);
    }
    fprintf(f, "%7s %7s  %-11s %-7s %-*s  %s\n", "frame", "render", "keyframes", "weight", seed_width, "seed",
            "guidance");
    for (int i = 0; i < p->n_sequence; i++) {
        int ri = p->sequence[i], first = first_shown[ri];
        const sdm_plan_frame *fr = shown_frame(p, i);
        const char *note = "";

        frame_columns(p, r, i, keys, sizeof keys, seeds, sizeof seeds);
        if (first < 0) {
            first_shown[ri] = i;
        } else if (i > 0 && p->sequence[i - 1] == ri && same_place(fr, shown_frame(p, i - 1))) {
            note = "  (hold)";
        } else if (same_place(fr, shown_frame(p, first))) {
            note = "  (again)";
        } else {
            snprintf(same, sizeof same, "  (same as frame %d)", p->frame_index[first]);
            note = same;
        }
        fprintf(f, "%7d %7d  %-11s %-7.4f %-*s  %.2f%s\n", p->frame_index[i], ri, keys, fr->t, seed_width, seeds,
                fr->guidance, note);
    }
    free(first_shown);
}

/* --- JSON ----------------------------------------------------------------- */

/* A JSON string; the loader has checked the text is UTF-8 without NULs. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)(s ? s : ""); *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c == '\n')
            fputs("\\n", f);
        else if (*c == '\t')
            fputs("\\t", f);
        else if (*c < 0x20 || *c == 0x7f)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

static void json_key_string(FILE *f, const char *key, const char *value, const char *after)
{
    fprintf(f, "\"%s\": ", key);
    if (value)
        json_string(f, value);
    else
        fputs("null", f);
    fputs(after, f);
}

/* The picture a keyframe starts from, as JSON members (nothing without one). */
static void json_image(FILE *f, const char *image, double strength, sdm_image_fit fit)
{
    if (!image)
        return;
    json_key_string(f, "image", image, ", ");
    fprintf(f, "\"strength\": %.17g, \"fit\": \"%s\", ", strength, sdm_image_fit_name(fit));
}

/* The recipe's settings, as the render uses them where x says. */
static void json_settings(const sdm_plan *p, const sdm_recipe *r, const sdm_plan_json_extra *x, FILE *f)
{
    int w = x && x->width ? x->width : r->width, h = x && x->height ? x->height : r->height;

    fprintf(f, "{\n  \"format\": \"sdmorph-plan\", \"version\": 1,\n  ");
    json_key_string(f, "recipe", r->path, ",\n  ");
    json_key_string(f, "model", x && x->model ? x->model : r->model, ",\n");
    if (w && h)
        fprintf(f, "  \"width\": %d, \"height\": %d,", w, h);
    else
        fprintf(f, "  \"width\": null, \"height\": null,");
    fprintf(f, " \"steps\": %d, \"sampler\": \"%s\", \"eta\": %.17g, \"karras\": %s,\n", r->steps,
            sdm_sampler_name(r->sampler), r->eta, r->karras ? "true" : "false");
    fprintf(f, "  \"fps\": %.17g, \"loop\": \"%s\", \"frames_shown\": %d, \"frames_rendered\": %d,\n  ", p->fps,
            sdm_loop_name(r->loop), p->n_sequence, p->n_renders);
    if (r->bpm > 0)
        fprintf(f, "\"bpm\": %.17g, ", r->bpm);
    json_key_string(f, "negative", r->negative, ",\n");
    fprintf(f, "  \"weighting\": \"%s\",\n", sdm_weighting_name(r->weighting));
    fprintf(f, "  \"overrides\": [");
    for (int i = 0; i < r->n_overrides; i++) {
        fputs(i ? ", " : "", f);
        json_string(f, r->overrides[i]);
    }
    fprintf(f, "],\n");
    if (x && x->render)
        fprintf(f, "  \"render\": %s,\n", x->render);
}

int sdm_plan_write_json(const sdm_plan *p, const sdm_recipe *r, FILE *f)
{
    return sdm_plan_write_json_with(p, r, NULL, f);
}

int sdm_plan_write_json_texts(const sdm_plan *p, const sdm_recipe *r, const char *texts, FILE *f)
{
    sdm_plan_json_extra x = { NULL, 0, 0, NULL, texts };

    return sdm_plan_write_json_with(p, r, &x, f);
}

int sdm_plan_write_json_with(const sdm_plan *p, const sdm_recipe *r, const sdm_plan_json_extra *x, FILE *f)
{
    if (!p || !r || !f)
        return -1;
    json_settings(p, r, x, f);
    fprintf(f, "  \"keyframes\": [");
    for (int i = 0; i < r->n_keyframes; i++) {
        const sdm_keyframe *k = &r->keyframes[i];
        fprintf(f, "%s\n    {", i ? "," : "");
        json_key_string(f, "prompt", k->prompt, ", ");
        json_key_string(f, "negative", k->negative ? k->negative : r->negative, ", ");
        if (r->bpm > 0)
            fprintf(f, "\"beats\": %.17g, ", k->beats);
        json_image(f, k->image, k->strength, k->fit);
        fprintf(f,
                "\"seed\": %" PRIu64
                ", \"guidance\": %.17g, \"clip_skip\": %d, \"hold\": %d, \"frames\": %d, "
                "\"interp\": \"%s\", \"ease\": \"%s\", \"retime\": \"%s\", \"line\": %d, \"col\": %d}",
                k->seed, k->guidance, k->clip_skip > 1 ? k->clip_skip : 1, k->hold, k->frames,
                sdm_interp_name(k->interp), sdm_ease_name(k->ease), sdm_retime_mode_name(k->retime), k->mark.line,
                k->mark.col);
    }
    fprintf(f, "\n  ],\n");
    if (r->walk) {
        const sdm_walk *w = r->walk;
        fprintf(f, "  \"walk\": {");
        json_key_string(f, "prompt", w->prompt, ", ");
        json_key_string(f, "negative", w->negative ? w->negative : r->negative, ", ");
        json_image(f, w->image, w->strength, w->fit);
        fprintf(f,
                "\"seed\": %" PRIu64
                ", \"guidance\": %.17g, \"frames\": %d, \"sigma\": %.17g, "
                "\"anchor\": %.17g, \"noise_seed\": %" PRIu64 ", \"closed\": %s},\n",
                w->seed, w->guidance, w->frames, w->sigma, w->anchor, w->noise_seed, w->closed ? "true" : "false");
    }
    if (x && x->texts)
        fprintf(f, "  \"texts\": %s,\n", x->texts);
    if (p->retime_json)
        fprintf(f, "  \"retime\": %s,\n", p->retime_json);
    if (p->pace_json)
        fprintf(f, "  \"pace\": %s,\n", p->pace_json);
    fprintf(f, "  \"frames\": [");
    for (int i = 0; i < p->n_sequence; i++) {
        const sdm_plan_frame *fr = shown_frame(p, i);
        fprintf(f,
                "%s\n    {\"frame\": %d, \"render\": %d, \"key_a\": %d, \"key_b\": %d, \"t\": %.17g, "
                "\"seed_a\": %" PRIu64 ", \"seed_b\": %" PRIu64
                ", \"seed_t\": %.17g, \"guidance\": %.17g, "
                "\"interp\": \"%s\"",
                i ? "," : "", p->frame_index[i], p->sequence[i], fr->key_a, fr->key_b, fr->t,
                r->keyframes[fr->key_a].seed, r->keyframes[fr->key_b].seed, fr->seed_t, fr->guidance,
                sdm_interp_name(fr->interp));
        if (fr->walk_k >= 0)
            fprintf(f, ", \"walk_k\": %d", fr->walk_k);
        if (r->keyframes[fr->key_a].image || r->keyframes[fr->key_b].image)
            fprintf(f, ", \"strength\": %.17g",
                    (1 - fr->t) * sdm_keyframe_strength(&r->keyframes[fr->key_a]) +
                        fr->t * sdm_keyframe_strength(&r->keyframes[fr->key_b]));
        fputc('}', f);
    }
    fprintf(f, "\n  ]\n}\n");
    return ferror(f) ? -1 : 0;
}

void sdm_plan_free(sdm_plan *p)
{
    if (!p)
        return;
    free(p->renders);
    free(p->sequence);
    free(p->frame_index);
    free(p->shown);
    free(p->retime_json);
    free(p->pace_json);
    memset(p, 0, sizeof *p);
}
