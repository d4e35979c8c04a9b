#include "condition.h"

#include "hash.h"
#include "image_latents.h"
#include "inputs.h"
#include "sampler.h"
#include "texts_json.h"
#include "torch_error.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t seed;
    sdm_tensor *noise;
    sdm_tensor *eps; /* recipes with pictures: the draw before the noise (CPU), for the pictures' latents */
} noise_entry;

/* A text's conditioning: its embedding and, for SDXL, its pooled embedding. */
#define PARTS 2

struct sdm_conditioner {
    sdm_engine *engine;
    const sdm_recipe *recipe;
    int parts; /* 1, or 2 with SDXL's pooled embedding */
    sdm_tensor *zeros[PARTS]; /* an empty negative prompt's, where the bundle forces zeros */
    sdm_tensor *time_ids; /* SDXL: [1,6] */
    sdm_text_ids ids; /* which keyframes' texts are the same */
    int n_chunks; /* every text is padded to this many chunks, so any two mix */
    char *texts_json; /* the texts' chunks and weights, for the sidecar */
    int64_t noise_shape[4];
    noise_entry *noises;
    int n_noises;
    int image_draws; /* 1 in a recipe with pictures: each stream's first draw is the picture's sample */
    sdm_image_latents *images; /* the pictures, read and encoded as frames need them */
    /* walk state: y[k] of the last step computed, so a sequential walk costs
     * one step per frame; y[frames] for closed walks */
    int walk_k;
    sdm_tensor *walk_y[PARTS];
    sdm_tensor *walk_end[PARTS];
};

uint64_t sdm_walk_noise_seed(uint64_t noise_seed, int k)
{
    /* splitmix64 of the pair: well mixed, stable across platforms */
    return sdm_mix64(noise_seed ^ (SDM_GOLDEN_GAMMA * (uint64_t)(k + 1)));
}

uint64_t sdm_walk_pooled_noise_seed(uint64_t noise_seed, int k)
{
    return sdm_walk_noise_seed(sdm_mix64(noise_seed ^ 0x706f6f6c6564ULL), k); /* "pooled" */
}

void sdm_time_ids(const sdm_recipe *r, int width, int height, float out[6])
{
    out[0] = (float)(r->original_size[0] ? r->original_size[0] : height);
    out[1] = (float)(r->original_size[1] ? r->original_size[1] : width);
    out[2] = (float)r->crops_coords_top_left[0];
    out[3] = (float)r->crops_coords_top_left[1];
    out[4] = (float)(r->target_size[0] ? r->target_size[0] : height);
    out[5] = (float)(r->target_size[1] ? r->target_size[1] : width);
}

static int torch_fail(sdm_error *err, sdm_torch_status st)
{
    return sdm_torch_error(err, st, "conditioning");
}

/* The recipe's embeddings folder replaces the bundle's. */
static int recipe_embeddings(sdm_engine *e, const sdm_recipe *r, sdm_error *err)
{
    char dir[4096];

    if (!r->embeddings)
        return 0;
    if (sdm_recipe_embeddings_dir(r, dir, sizeof dir))
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: 'embeddings': the path is too long", r->path);
    return sdm_text_encoder_use_embeddings(sdm_engine_text(e), dir, err);
}

/* The most chunks any of the recipe's texts makes. */
static int count_chunks(sdm_conditioner *c, sdm_error *err)
{
    const sdm_recipe *r = c->recipe;
    int parse = r->weighting == SDM_WEIGHTING_A1111;

    c->n_chunks = 1;
    for (int k = 0; k < 2 * r->n_keyframes; k++) {
        const sdm_keyframe *kf = &r->keyframes[k / 2];
        const char *text = k % 2 ? sdm_recipe_negative(r, kf->negative) : kf->prompt ? kf->prompt : "";
        sdm_prompt_chunks ch;
        if (sdm_text_encoder_chunks(sdm_engine_text(c->engine), text, parse, &ch, err))
            return -1;
        c->n_chunks = ch.n_chunks > c->n_chunks ? ch.n_chunks : c->n_chunks;
        sdm_prompt_chunks_clear(&ch);
    }
    return 0;
}

static int encode_texts(sdm_conditioner *c, sdm_error *err);

/* The recipe's time ids for frames of latent_h×latent_w, on the device. */
static int xl_time_ids(sdm_conditioner *c, int latent_h, int latent_w, sdm_error *err)
{
    int scale = sdm_engine_bundle(c->engine)->vae_scale;
    int64_t shape[2] = { 1, SDM_TIME_IDS };
    float v[SDM_TIME_IDS];
    sdm_torch_status st;

    sdm_time_ids(c->recipe, latent_w * scale, latent_h * scale, v);
    st = sdm_tensor_from_host(v, SDM_F32, shape, 2, sdm_engine_device(c->engine), &c->time_ids);
    return st ? torch_fail(err, st) : 0;
}

int sdm_conditioner_new(sdm_engine *e, const sdm_recipe *r, int latent_h, int latent_w, sdm_conditioner **out,
                        sdm_error *err)
{
    sdm_conditioner *c = calloc(1, sizeof *c);

    *out = NULL;
    if (!c)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    if (recipe_embeddings(e, r, err)) {
        free(c);
        return -1;
    }
    c->engine = e;
    c->recipe = r;
    c->noise_shape[0] = 1;
    c->noise_shape[1] = sdm_engine_bundle(e)->latent_channels;
    c->noise_shape[2] = latent_h;
    c->noise_shape[3] = latent_w;
    c->walk_k = -1;
    c->parts = sdm_bundle_is_xl(sdm_engine_bundle(e)) ? 2 : 1;
    c->image_draws = sdm_recipe_has_images(r);
    if (c->image_draws && sdm_image_latents_new(r, sdm_engine_bundle(e), sdm_engine_device(e), sdm_engine_dtype(e),
                                                latent_w * sdm_engine_bundle(e)->vae_scale,
                                                latent_h * sdm_engine_bundle(e)->vae_scale, &c->images, err)) {
        sdm_conditioner_free(&c);
        return -1;
    }
    if (c->parts > 1 && xl_time_ids(c, latent_h, latent_w, err)) {
        sdm_conditioner_free(&c);
        return -1;
    }
    if (sdm_text_ids_make(r, &c->ids)) {
        sdm_conditioner_free(&c);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    }
    if (count_chunks(c, err) || sdm_texts_json(sdm_engine_text(e), r, &c->ids, &c->texts_json, err) ||
        encode_texts(c, err)) {
        sdm_conditioner_free(&c);
        return -1;
    }
    *out = c;
    return 0;
}

int sdm_conditioner_tokens(const sdm_conditioner *c)
{
    return c->n_chunks * sdm_engine_bundle(c->engine)->token_length;
}

const char *sdm_conditioner_texts_json(const sdm_conditioner *c)
{
    return c->texts_json;
}

/* An empty negative prompt's conditioning where the bundle forces zeros
 * (SDXL): zeros of the shapes of a text's, made once. */
static int forced_zeros(sdm_conditioner *c, const sdm_tensor *const *like, const sdm_tensor **out, sdm_error *err)
{
    for (int p = 0; p < c->parts; p++) {
        int64_t shape[3];
        int nd = sdm_tensor_ndim(like[p]);
        sdm_torch_status st = SDM_TORCH_OK;
        for (int i = 0; i < nd && i < 3; i++)
            shape[i] = sdm_tensor_dim(like[p], i);
        if (!c->zeros[p])
            st = sdm_tensor_zeros(SDM_F32, shape, nd, sdm_engine_device(c->engine), &c->zeros[p]);
        if (st)
            return torch_fail(err, st);
        out[p] = c->zeros[p];
    }
    return 0;
}

/* The conditioning of keyframe k's prompt (negative: its negative), as the
 * recipe reads it: out[0] the embedding, out[1] the pooled one (SDXL). */
static int text_embedding(sdm_conditioner *c, int k, int negative, const sdm_tensor **out, sdm_error *err)
{
    const sdm_recipe *r = c->recipe;
    const sdm_keyframe *kf = &r->keyframes[k];
    const sdm_text_opts o = { r->weighting == SDM_WEIGHTING_A1111, kf->clip_skip, c->n_chunks };
    const char *text = negative ? sdm_recipe_negative(r, kf->negative) : kf->prompt;

    out[1] = NULL;
    if (sdm_engine_embed_pooled(c->engine, text, &o, &out[0], &out[1], err))
        return -1;
    if (negative && !*text && sdm_engine_bundle(c->engine)->force_zeros_for_empty_prompt)
        return forced_zeros(c, out, out, err);
    return 0;
}

/* Every keyframe's prompt and negative, into the engine's cache, as the
 * frames will ask for them: the text encoders are not needed after. */
static int encode_texts(sdm_conditioner *c, sdm_error *err)
{
    for (int k = 0; k < c->recipe->n_keyframes; k++) {
        const sdm_tensor *parts[PARTS];
        if (text_embedding(c, k, 0, parts, err) || text_embedding(c, k, 1, parts, err))
            return -1;
    }
    return 0;
}

/* A seed's first draws: with pictures the picture's sample (kept on the
 * CPU) and then the initial noise, else the initial noise alone. */
static sdm_torch_status first_draws(sdm_conditioner *c, noise_entry *n)
{
    sdm_device cpu = { SDM_DEVICE_CPU, 0 };
    sdm_generator *g = NULL;
    sdm_torch_status st;

    if (!c->image_draws)
        return sdm_tensor_randn(n->seed, c->noise_shape, 4, sdm_engine_device(c->engine), &n->noise);
    st = sdm_generator_new(n->seed, &g);
    if (!st)
        st = sdm_generator_randn(g, c->noise_shape, 4, cpu, &n->eps);
    if (!st)
        st = sdm_generator_randn(g, c->noise_shape, 4, sdm_engine_device(c->engine), &n->noise);
    sdm_generator_free(&g);
    return st;
}

/* Initial noise of a seed, as torch.randn with a CPU generator (and with
 * pictures the draw before it, *eps; may be NULL); cached. */
static int seed_noise(sdm_conditioner *c, uint64_t seed, const sdm_tensor **out, const sdm_tensor **eps, sdm_error *err)
{
    noise_entry *n;
    sdm_torch_status st;

    for (int i = 0; i < c->n_noises; i++) {
        if (c->noises[i].seed == seed) {
            *out = c->noises[i].noise;
            if (eps)
                *eps = c->noises[i].eps;
            return 0;
        }
    }
    n = realloc(c->noises, sizeof *n * (c->n_noises + 1));
    if (!n)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    c->noises = n;
    n = &c->noises[c->n_noises];
    memset(n, 0, sizeof *n);
    n->seed = seed;
    st = first_draws(c, n);
    if (st) {
        sdm_tensor_free(&n->noise);
        sdm_tensor_free(&n->eps);
        return torch_fail(err, st);
    }
    c->n_noises++;
    *out = n->noise;
    if (eps)
        *eps = n->eps;
    return 0;
}

/* The tensors of m's inputs a and b, mixed as m says (inputs.h): a copy of
 * a when it is alone. */
static int mix(const sdm_tensor *a, const sdm_tensor *b, const sdm_mix *m, int per_row, sdm_tensor **out,
               sdm_error *err)
{
    sdm_torch_status st;

    if (m->t == 0.0)
        st = sdm_tensor_clone(a, out);
    else if (m->how == SDM_INTERP_SLERP)
        st = sdm_tensor_slerp(a, b, m->t, per_row, out);
    else
        st = sdm_tensor_axpby(1.0 - m->t, a, m->t, b, out);
    return st ? torch_fail(err, st) : 0;
}

/* Walk step j's noise for part p (the embedding, SDXL's pooled one), of y's shape. */
static sdm_torch_status walk_noise(sdm_conditioner *c, int p, int j, const sdm_tensor *y, sdm_tensor **out)
{
    uint64_t seed = c->recipe->walk->noise_seed;
    int64_t shape[3];
    int nd = sdm_tensor_ndim(y);

    for (int i = 0; i < nd && i < 3; i++)
        shape[i] = sdm_tensor_dim(y, i);
    seed = p ? sdm_walk_pooled_noise_seed(seed, j) : sdm_walk_noise_seed(seed, j);
    return sdm_tensor_randn(seed, shape, nd, sdm_engine_device(c->engine), out);
}

/* y[k] of the walk, k ≥ 0, for every part: y[k] = a·y0 + (1−a)·(y[k−1] + σ·n_k),
 * each part with noise of its own. Continues from the last step computed
 * when it can, else starts again from y0; the same operations in the same
 * order either way, so the bits agree. */
static int walk_embedding(sdm_conditioner *c, const sdm_tensor *const *y0, int k, sdm_tensor **out, sdm_error *err)
{
    const sdm_walk *w = c->recipe->walk;
    sdm_torch_status st = SDM_TORCH_OK;

    if (c->walk_k < 0 || c->walk_k > k) {
        for (int p = 0; p < c->parts && !st; p++) {
            sdm_tensor_free(&c->walk_y[p]);
            st = sdm_tensor_clone(y0[p], &c->walk_y[p]);
        }
        if (st)
            return torch_fail(err, st);
        c->walk_k = 0;
    }
    while (c->walk_k < k) {
        int j = c->walk_k + 1;
        for (int p = 0; p < c->parts && !st; p++) {
            sdm_tensor *n = NULL;
            st = walk_noise(c, p, j, y0[p], &n);
            /* y = (1−a)·y + (1−a)·σ·n, then + a·y0 */
            if (!st)
                st = sdm_tensor_axpby_((1 - w->anchor) * w->sigma, n, 1 - w->anchor, c->walk_y[p]);
            if (!st)
                st = sdm_tensor_axpby_(w->anchor, y0[p], 1.0, c->walk_y[p]);
            sdm_tensor_free(&n);
        }
        if (st)
            return torch_fail(err, st);
        c->walk_k = j;
    }
    for (int p = 0; p < c->parts && !st; p++)
        st = sdm_tensor_clone(c->walk_y[p], &out[p]);
    return st ? torch_fail(err, st) : 0;
}

/* A closed walk bends the drift back: y'[k] = y[k] − (k/N)·(y[N] − y[0]),
 * so the step from frame N−1 to frame 0 is like any other. */
static int walk_frame(sdm_conditioner *c, const sdm_tensor *const *y0, int k, sdm_tensor **out, sdm_error *err)
{
    const sdm_walk *w = c->recipe->walk;
    sdm_torch_status st = SDM_TORCH_OK;
    int N = w->frames;

    if (w->closed && !c->walk_end[0]) {
        if (walk_embedding(c, y0, N, c->walk_end, err))
            return -1;
        /* walk_end becomes y[N] − y[0] */
        for (int p = 0; p < c->parts && !st; p++)
            st = sdm_tensor_axpby_(-1.0, y0[p], 1.0, c->walk_end[p]);
        if (st)
            return torch_fail(err, st);
    }
    if (walk_embedding(c, y0, k, out, err))
        return -1;
    for (int p = 0; w->closed && k > 0 && p < c->parts && !st; p++)
        st = sdm_tensor_axpby_(-(double)k / N, c->walk_end[p], 1.0, out[p]);
    return st ? torch_fail(err, st) : 0;
}

/* The text parts of a frame: the walk's step, or the keyframes' mix, of
 * every part with the same weight (slerp per token row; the pooled
 * embedding is one row). */
static int frame_texts(sdm_conditioner *c, const sdm_frame_inputs *in, const sdm_tensor *const *ea,
                       const sdm_tensor *const *eb, sdm_tensor **out, sdm_error *err)
{
    if (in->walk_k >= 0)
        return walk_frame(c, ea, in->walk_k, out, err);
    for (int p = 0; p < c->parts; p++)
        if (mix(ea[p], eb[p], &in->text, 1, &out[p], err))
            return -1;
    return 0;
}

/* The pictures' latent of a frame that starts from them: each picture
 * drawn with the seeds' first draw (slerped as the noise is), then mixed. */
static int frame_image(sdm_conditioner *c, const sdm_frame_inputs *in, sdm_frame_cond *out, sdm_error *err)
{
    const sdm_tensor *ea = NULL, *eb = NULL, *skip;
    sdm_tensor *eps = NULL;
    float *host = NULL;
    size_t n = (size_t)(c->noise_shape[1] * c->noise_shape[2] * c->noise_shape[3]);
    int rc = -1;

    if (in->image.a == SDM_NO_IMAGE && in->image.t == 0)
        return 0;
    out->strength = in->strength;
    if (seed_noise(c, in->noise.a, &skip, &ea, err) || seed_noise(c, in->noise.b, &skip, &eb, err) ||
        mix(ea, eb, &in->noise, 0, &eps, err))
        goto end;
    host = malloc(n * sizeof *host);
    if (!host || sdm_tensor_to_host(eps, SDM_F32, host, n * sizeof *host)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    rc = sdm_image_latents_mix(c->images, &in->image, host, &out->image, err);
end:
    free(host);
    sdm_tensor_free(&eps);
    return rc;
}

int sdm_conditioner_start(const sdm_conditioner *c, const sdm_plan_frame *f, int steps)
{
    const sdm_frame_inputs in = sdm_frame_inputs_of(c->recipe, &c->ids, f);

    if (in.image.a == SDM_NO_IMAGE && in.image.t == 0)
        return -1;
    return sdm_image_start_step(steps, in.strength);
}

/* Everything is read from the frame's canonical inputs, never from the
 * plan frame itself: frames the planner merged are computed alike. */
int sdm_conditioner_frame(sdm_conditioner *c, const sdm_plan_frame *f, sdm_frame_cond *out, sdm_error *err)
{
    const sdm_recipe *r = c->recipe;
    const sdm_frame_inputs in = sdm_frame_inputs_of(r, &c->ids, f);
    const sdm_tensor *ea[PARTS], *eb[PARTS], *na[PARTS], *nb[PARTS], *sa, *sb;
    sdm_tensor *texts[PARTS] = { NULL }, *negs[PARTS] = { NULL };
    sdm_error *e = err;

    memset(out, 0, sizeof *out);
    out->guidance = in.guidance;
    out->seed_a = in.noise.a;
    out->seed_b = in.noise.b;
    out->seed_t = in.noise.t;
    if (text_embedding(c, (int)in.text.a, 0, ea, e) || text_embedding(c, (int)in.text.b, 0, eb, e) ||
        text_embedding(c, (int)in.negative.a, 1, na, e) || text_embedding(c, (int)in.negative.b, 1, nb, e) ||
        seed_noise(c, in.noise.a, &sa, NULL, e) || seed_noise(c, in.noise.b, &sb, NULL, e))
        goto fail;
    if (frame_texts(c, &in, ea, eb, texts, e))
        goto fail;
    for (int p = 0; p < c->parts; p++)
        if (mix(na[p], nb[p], &in.negative, 1, &negs[p], e))
            goto fail;
    out->cond = texts[0];
    out->pooled = texts[1];
    out->uncond = negs[0];
    out->uncond_pooled = negs[1];
    texts[0] = texts[1] = negs[0] = negs[1] = NULL;
    if (mix(sa, sb, &in.noise, 0, &out->noise, e))
        goto fail;
    if (c->time_ids && mix(c->time_ids, NULL, &(sdm_mix){ 0 }, 0, &out->time_ids, e))
        goto fail;
    if (frame_image(c, &in, out, e))
        goto fail;
    return 0;
fail:
    for (int p = 0; p < PARTS; p++) {
        sdm_tensor_free(&texts[p]);
        sdm_tensor_free(&negs[p]);
    }
    sdm_frame_cond_clear(out);
    return -1;
}

/* Draw `draw` after the initial latent of generator g (of `seed`), made or
 * restarted as needed; the draws in between are skipped. */
static sdm_torch_status stream_draw(sdm_conditioner *c, uint64_t seed, sdm_generator **g, int *drawn, int draw,
                                    sdm_tensor **out)
{
    sdm_device cpu = { SDM_DEVICE_CPU, 0 };
    sdm_torch_status st = SDM_TORCH_OK;

    if (*g && *drawn > draw)
        sdm_generator_free(g);
    if (!*g) {
        st = sdm_generator_new(seed, g);
        *drawn = -1 - c->image_draws; /* the initial latent (and the picture's sample) come first */
    }
    while (!st && *drawn < draw) {
        sdm_tensor *skip = NULL;
        st = sdm_generator_randn(*g, c->noise_shape, 4, cpu, &skip);
        sdm_tensor_free(&skip);
        ++*drawn;
    }
    if (!st)
        st = sdm_generator_randn(*g, c->noise_shape, 4, sdm_engine_device(c->engine), out);
    if (!st)
        ++*drawn;
    return st;
}

int sdm_conditioner_step_noise(sdm_conditioner *c, sdm_frame_cond *fc, int draw, sdm_tensor **out, sdm_error *err)
{
    const sdm_mix m = sdm_mix_of(fc->seed_a, fc->seed_b, fc->seed_t, SDM_INTERP_SLERP);
    sdm_tensor *a = NULL, *b = NULL;
    sdm_torch_status st;
    int rc;

    st = stream_draw(c, m.a, &fc->gen[0], &fc->drawn[0], draw, &a);
    if (!st && m.t > 0)
        st = stream_draw(c, m.b, &fc->gen[1], &fc->drawn[1], draw, &b);
    if (st) {
        rc = torch_fail(err, st);
        goto end;
    }
    rc = mix(a, b, &m, 0, out, err);
end:
    sdm_tensor_free(&a);
    sdm_tensor_free(&b);
    return rc;
}

void sdm_frame_cond_clear(sdm_frame_cond *fc)
{
    sdm_tensor_free(&fc->cond);
    sdm_tensor_free(&fc->uncond);
    sdm_tensor_free(&fc->pooled);
    sdm_tensor_free(&fc->uncond_pooled);
    sdm_tensor_free(&fc->time_ids);
    sdm_tensor_free(&fc->noise);
    sdm_tensor_free(&fc->image);
    sdm_generator_free(&fc->gen[0]);
    sdm_generator_free(&fc->gen[1]);
}

void sdm_conditioner_free(sdm_conditioner **pc)
{
    sdm_conditioner *c = pc ? *pc : NULL;

    if (!c)
        return;
    for (int i = 0; i < c->n_noises; i++) {
        sdm_tensor_free(&c->noises[i].noise);
        sdm_tensor_free(&c->noises[i].eps);
    }
    sdm_image_latents_free(&c->images);
    free(c->noises);
    sdm_text_ids_free(&c->ids);
    free(c->texts_json);
    for (int p = 0; p < PARTS; p++) {
        sdm_tensor_free(&c->walk_y[p]);
        sdm_tensor_free(&c->walk_end[p]);
        sdm_tensor_free(&c->zeros[p]);
    }
    sdm_tensor_free(&c->time_ids);
    free(c);
    *pc = NULL;
}
