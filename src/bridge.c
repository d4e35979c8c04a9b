#include "bridge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BRIDGE_FRAMES_MAX 100000

/* What makes B's first frame render as B renders it, besides the model. */
static int same_settings(const sdm_recipe *a, const sdm_recipe *b, sdm_error *err)
{
    const char *what = NULL;

    if (a->width != b->width || a->height != b->height)
        what = "size (width, height)";
    else if (a->steps != b->steps)
        what = "steps";
    else if (a->sampler != b->sampler || a->eta != b->eta || a->karras != b->karras)
        what = "sampler (sampler, eta, karras)";
    if (!what)
        return 0;
    return sdm_error_set(err, SDM_EXIT_USAGE,
                         "bridge: %s and %s differ in %s; a bridge renders both first frames "
                         "with one model, size and sampler, so the two recipes must agree",
                         a->path, b->path, what);
}

/* A copy of keyframe k of r as a bridge's end: its own strings, the
 * negative it reads, its picture (so the bridge starts where the scene
 * does), no hold. */
static int copy_end(const sdm_recipe *r, const sdm_keyframe *k, sdm_keyframe *out)
{
    *out = *k;
    out->hold = 0;
    out->prompt = strdup(k->prompt);
    out->negative = strdup(sdm_recipe_negative(r, k->negative));
    out->image = k->image ? strdup(k->image) : NULL;
    return out->prompt && out->negative && (!k->image || out->image) ? 0 : -1;
}

static int bridge_frames(const sdm_recipe *a, const sdm_recipe *b, int frames, double beats, int *out, sdm_error *err)
{
    double bpm = a->bpm > 0 ? a->bpm : b->bpm, f;

    if (!(beats > 0)) {
        f = frames;
    } else if (!(bpm > 0)) {
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "bridge: --beats needs a bpm; neither %s nor %s has 'bpm:' "
                             "(give --frames instead)",
                             a->path, b->path);
    } else {
        f = floor(beats * a->fps * 60.0 / bpm + 0.5);
    }
    if (!(f >= 1 && f <= BRIDGE_FRAMES_MAX))
        return sdm_error_set(err, SDM_EXIT_USAGE, "bridge: the transition would be %.0f frames; expected 1..%d", f,
                             BRIDGE_FRAMES_MAX);
    *out = (int)f;
    return 0;
}

int sdm_bridge_recipe(const sdm_recipe *a, const sdm_recipe *b, int frames, double beats, sdm_recipe **out,
                      sdm_error *err)
{
    sdm_recipe *r = NULL;
    int n = 0, rc = -1;

    *out = NULL;
    if (a->walk || b->walk) {
        sdm_error_set(err, SDM_EXIT_USAGE,
                      "bridge: %s is a walk; a bridge joins the first keyframes of two "
                      "keyframe recipes",
                      a->walk ? a->path : b->path);
        goto end;
    }
    if (same_settings(a, b, err) || bridge_frames(a, b, frames, beats, &n, err))
        goto end;
    r = calloc(1, sizeof *r);
    if (!r)
        goto oom;
    *r = *a;
    /* nothing of a's is owned by the copy: every string is its own */
    r->path = r->model = r->negative = NULL;
    r->keyframes = NULL;
    r->n_keyframes = 0;
    r->outputs = NULL;
    r->n_outputs = 0;
    r->contact_sheet = NULL;
    r->walk = NULL;
    r->embeddings = r->embeddings_where = r->size_where = NULL;
    r->overrides = NULL;
    r->n_overrides = 0;
    r->loop = SDM_LOOP_NONE;
    r->bpm = beats > 0 ? (a->bpm > 0 ? a->bpm : b->bpm) : 0;
    r->path = strdup(a->path);
    r->model = a->model ? strdup(a->model) : NULL;
    r->negative = strdup(a->negative ? a->negative : "");
    r->embeddings = a->embeddings ? strdup(a->embeddings) : NULL;
    r->embeddings_where = a->embeddings_where ? strdup(a->embeddings_where) : NULL;
    r->size_where = a->size_where ? strdup(a->size_where) : NULL;
    r->keyframes = calloc(2, sizeof *r->keyframes);
    if (!r->path || (a->model && !r->model) || !r->negative || (a->embeddings && !r->embeddings) ||
        (a->embeddings_where && !r->embeddings_where) || (a->size_where && !r->size_where) || !r->keyframes)
        goto oom;
    r->n_keyframes = 2;
    if (copy_end(a, &a->keyframes[0], &r->keyframes[0]) || copy_end(b, &b->keyframes[0], &r->keyframes[1]))
        goto oom;
    r->keyframes[0].frames = n;
    r->keyframes[0].beats = beats > 0 ? beats : 0;
    *out = r;
    r = NULL;
    rc = 0;
    goto end;
oom:
    sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
end:
    sdm_recipe_free(&r);
    return rc;
}
