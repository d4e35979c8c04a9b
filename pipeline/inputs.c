#include "inputs.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

sdm_mix sdm_mix_of(uint64_t a, uint64_t b, double t, sdm_interp how)
{
    sdm_mix m = { a, a, 0.0, SDM_INTERP_LERP };

    if (a == b || !(t > 0.0))
        return m;
    if (t >= 1.0) {
        m.a = m.b = b;
        return m;
    }
    m.b = b;
    m.t = t;
    m.how = how;
    return m;
}

/* A text as the encoder reads it: the words and the layer they are read at. */
typedef struct {
    const char *text;
    int clip_skip;
} text_key;

static int same_text(const void *items, int a, int b)
{
    const text_key *k = items;
    return k[a].clip_skip == k[b].clip_skip && !strcmp(k[a].text, k[b].text);
}

/* ids[k]: the first k' with keys[k'] equal to keys[k]. */
static int intern(const text_key *keys, int n, int *ids)
{
    sdm_index t = { 0 };
    int rc = -1;

    if (sdm_index_init(&t, (size_t)n))
        goto end;
    for (int k = 0; k < n; k++)
        ids[k] = sdm_index_intern(&t, sdm_hash_string(keys[k].text) ^ (uint64_t)keys[k].clip_skip, k, same_text, keys);
    rc = 0;
end:
    sdm_index_free(&t);
    return rc;
}

/* ids[k]: the first keyframe with keyframe k's picture and fit, -1 without one. */
static void image_ids(const sdm_recipe *r, int *ids)
{
    for (int k = 0; k < r->n_keyframes; k++) {
        const sdm_keyframe *kf = &r->keyframes[k];
        ids[k] = kf->image ? k : -1;
        for (int j = 0; kf->image && j < k; j++) {
            if (r->keyframes[j].image && r->keyframes[j].fit == kf->fit && !strcmp(r->keyframes[j].image, kf->image)) {
                ids[k] = j;
                break;
            }
        }
    }
}

int sdm_text_ids_make(const sdm_recipe *r, sdm_text_ids *out)
{
    int n = r->n_keyframes, rc = -1;
    text_key *prompts = malloc((size_t)n * sizeof *prompts);
    text_key *negatives = malloc((size_t)n * sizeof *negatives);

    out->prompt = malloc((size_t)n * sizeof *out->prompt);
    out->negative = malloc((size_t)n * sizeof *out->negative);
    out->image = malloc((size_t)n * sizeof *out->image);
    if (!prompts || !negatives || !out->prompt || !out->negative || !out->image)
        goto end;
    image_ids(r, out->image);
    for (int k = 0; k < n; k++) {
        const sdm_keyframe *kf = &r->keyframes[k];
        prompts[k].text = kf->prompt ? kf->prompt : "";
        negatives[k].text = sdm_recipe_negative(r, kf->negative);
        prompts[k].clip_skip = negatives[k].clip_skip = kf->clip_skip;
    }
    if (intern(prompts, n, out->prompt) || intern(negatives, n, out->negative))
        goto end;
    rc = 0;
end:
    free(prompts);
    free(negatives);
    return rc;
}

void sdm_text_ids_free(sdm_text_ids *ids)
{
    free(ids->prompt);
    free(ids->negative);
    free(ids->image);
    memset(ids, 0, sizeof *ids);
}

static uint64_t image_id(const sdm_text_ids *ids, int k)
{
    return ids->image[k] < 0 ? SDM_NO_IMAGE : (uint64_t)ids->image[k];
}

sdm_frame_inputs sdm_frame_inputs_of(const sdm_recipe *r, const sdm_text_ids *ids, const sdm_plan_frame *f)
{
    sdm_frame_inputs in;
    int a = f->key_a, b = f->key_b;

    in.text = sdm_mix_of((uint64_t)ids->prompt[a], (uint64_t)ids->prompt[b], f->t, f->interp);
    in.negative = sdm_mix_of((uint64_t)ids->negative[a], (uint64_t)ids->negative[b], f->t, f->interp);
    in.noise = sdm_mix_of(r->keyframes[a].seed, r->keyframes[b].seed, f->seed_t, SDM_INTERP_SLERP);
    in.guidance = f->guidance;
    in.walk_k = f->walk_k < 0 ? -1 : f->walk_k;
    in.image = sdm_mix_of(image_id(ids, a), image_id(ids, b), f->t, f->interp);
    in.strength = 0.0;
    if (in.image.a != SDM_NO_IMAGE || in.image.b != SDM_NO_IMAGE) {
        double sa = sdm_keyframe_strength(&r->keyframes[a]), sb = sdm_keyframe_strength(&r->keyframes[b]);
        in.strength = (1 - f->t) * sa + f->t * sb;
    }
    return in;
}

static int same_mix(const sdm_mix *x, const sdm_mix *y)
{
    return x->a == y->a && x->b == y->b && x->t == y->t && x->how == y->how;
}

int sdm_frame_inputs_equal(const sdm_frame_inputs *x, const sdm_frame_inputs *y)
{
    return same_mix(&x->text, &y->text) && same_mix(&x->negative, &y->negative) && same_mix(&x->noise, &y->noise) &&
           x->guidance == y->guidance && x->walk_k == y->walk_k && same_mix(&x->image, &y->image) &&
           x->strength == y->strength;
}

static uint64_t hash_mix(uint64_t h, const sdm_mix *m)
{
    h = sdm_hash_combine(h, m->a);
    h = sdm_hash_combine(h, m->b);
    h = sdm_hash_double(h, m->t);
    return sdm_hash_combine(h, (uint64_t)m->how);
}

uint64_t sdm_frame_inputs_hash(const sdm_frame_inputs *in)
{
    uint64_t h = hash_mix(0, &in->text);

    h = hash_mix(h, &in->negative);
    h = hash_mix(h, &in->noise);
    h = sdm_hash_double(h, in->guidance);
    h = hash_mix(h, &in->image);
    h = sdm_hash_double(h, in->strength);
    return sdm_hash_combine(h, (uint64_t)(int64_t)in->walk_k);
}
