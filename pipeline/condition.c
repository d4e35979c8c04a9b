#include "condition.h"

#include "hash.h"
#include "inputs.h"
#include "texts_json.h"
#include "torch_error.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t seed;
    sdm_tensor *noise;
} noise_entry;

struct sdm_conditioner {
    sdm_engine *engine;
    const sdm_recipe *recipe;
    sdm_text_ids ids; /* which keyframes' texts are the same */
    int n_chunks; /* every text is padded to this many chunks, so any two mix */
    char *texts_json; /* the texts' chunks and weights, for the sidecar */
    int64_t noise_shape[4];
    noise_entry *noises;
    int n_noises;
    /* walk state: y[k] of the last step computed, so a sequential walk costs
     * one step per frame; y[frames] for closed walks */
    int walk_k;
    sdm_tensor *walk_y;
    sdm_tensor *walk_end;
};

uint64_t sdm_walk_noise_seed(uint64_t noise_seed, int k)
{
    /* splitmix64 of the pair: well mixed, stable across platforms */
    return sdm_mix64(noise_seed ^ (SDM_GOLDEN_GAMMA * (uint64_t)(k + 1)));
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
    if (sdm_text_ids_make(r, &c->ids)) {
        sdm_conditioner_free(&c);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    }
    if (count_chunks(c, err) || sdm_texts_json(sdm_engine_text(e), r, &c->ids, &c->texts_json, err)) {
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

/* The embedding of keyframe k's prompt (negative: its negative), as the recipe reads it. */
static int text_embedding(sdm_conditioner *c, int k, int negative, const sdm_tensor **out, sdm_error *err)
{
    const sdm_recipe *r = c->recipe;
    const sdm_keyframe *kf = &r->keyframes[k];
    const sdm_text_opts o = { r->weighting == SDM_WEIGHTING_A1111, kf->clip_skip, c->n_chunks };

    return sdm_engine_embed_opts(c->engine, negative ? sdm_recipe_negative(r, kf->negative) : kf->prompt, &o, out, err);
}

/* Initial noise of a seed, as torch.randn with a CPU generator; cached. */
static int seed_noise(sdm_conditioner *c, uint64_t seed, const sdm_tensor **out, sdm_error *err)
{
    noise_entry *n;
    sdm_torch_status st;

    for (int i = 0; i < c->n_noises; i++) {
        if (c->noises[i].seed == seed) {
            *out = c->noises[i].noise;
            return 0;
        }
    }
    n = realloc(c->noises, sizeof *n * (c->n_noises + 1));
    if (!n)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    c->noises = n;
    n = &c->noises[c->n_noises];
    n->seed = seed;
    st = sdm_tensor_randn(seed, c->noise_shape, 4, sdm_engine_device(c->engine), &n->noise);
    if (st)
        return torch_fail(err, st);
    c->n_noises++;
    *out = n->noise;
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

/* y[k] of the walk, k ≥ 0: y[k] = a·y0 + (1−a)·(y[k−1] + n_k). Continues
 * from the last step computed when it can, else starts again from y0; the
 * same operations in the same order either way, so the bits agree. */
static int walk_embedding(sdm_conditioner *c, const sdm_tensor *y0, int k, sdm_tensor **out, sdm_error *err)
{
    const sdm_walk *w = c->recipe->walk;
    int64_t shape[3] = { 1, sdm_tensor_dim(y0, 1), sdm_tensor_dim(y0, 2) };
    sdm_torch_status st = SDM_TORCH_OK;

    if (c->walk_k < 0 || c->walk_k > k) {
        sdm_tensor_free(&c->walk_y);
        st = sdm_tensor_clone(y0, &c->walk_y);
        if (st)
            return torch_fail(err, st);
        c->walk_k = 0;
    }
    while (c->walk_k < k) {
        sdm_tensor *n = NULL;
        int j = c->walk_k + 1;
        st = sdm_tensor_randn(sdm_walk_noise_seed(w->noise_seed, j), shape, 3, sdm_engine_device(c->engine), &n);
        /* y = (1−a)·y + (1−a)·σ·n, then + a·y0 */
        if (!st)
            st = sdm_tensor_axpby_((1 - w->anchor) * w->sigma, n, 1 - w->anchor, c->walk_y);
        if (!st)
            st = sdm_tensor_axpby_(w->anchor, y0, 1.0, c->walk_y);
        sdm_tensor_free(&n);
        if (st)
            return torch_fail(err, st);
        c->walk_k = j;
    }
    st = sdm_tensor_clone(c->walk_y, out);
    return st ? torch_fail(err, st) : 0;
}

/* A closed walk bends the drift back: y'[k] = y[k] − (k/N)·(y[N] − y[0]),
 * so the step from frame N−1 to frame 0 is like any other. */
static int walk_frame(sdm_conditioner *c, const sdm_tensor *y0, int k, sdm_tensor **out, sdm_error *err)
{
    const sdm_walk *w = c->recipe->walk;
    sdm_torch_status st;
    int N = w->frames;

    if (w->closed && !c->walk_end) {
        if (walk_embedding(c, y0, N, &c->walk_end, err))
            return -1;
        /* walk_end becomes y[N] − y[0] */
        st = sdm_tensor_axpby_(-1.0, y0, 1.0, c->walk_end);
        if (st)
            return torch_fail(err, st);
    }
    if (walk_embedding(c, y0, k, out, err))
        return -1;
    if (w->closed && k > 0) {
        st = sdm_tensor_axpby_(-(double)k / N, c->walk_end, 1.0, *out);
        if (st)
            return torch_fail(err, st);
    }
    return 0;
}

/* Everything is read from the frame's canonical inputs, never from the
 * plan frame itself: frames the planner merged are computed alike. */
int sdm_conditioner_frame(sdm_conditioner *c, const sdm_plan_frame *f, sdm_frame_cond *out, sdm_error *err)
{
    const sdm_recipe *r = c->recipe;
    const sdm_frame_inputs in = sdm_frame_inputs_of(r, &c->ids, f);
    const sdm_tensor *ea, *eb, *na, *nb, *sa, *sb;
    sdm_error *e = err;

    memset(out, 0, sizeof *out);
    out->guidance = in.guidance;
    out->seed_a = in.noise.a;
    out->seed_b = in.noise.b;
    out->seed_t = in.noise.t;
    if (text_embedding(c, (int)in.text.a, 0, &ea, e) || text_embedding(c, (int)in.text.b, 0, &eb, e) ||
        text_embedding(c, (int)in.negative.a, 1, &na, e) || text_embedding(c, (int)in.negative.b, 1, &nb, e) ||
        seed_noise(c, in.noise.a, &sa, e) || seed_noise(c, in.noise.b, &sb, e))
        goto fail;
    if (in.walk_k >= 0 ? walk_frame(c, ea, in.walk_k, &out->cond, e) : mix(ea, eb, &in.text, 1, &out->cond, e))
        goto fail;
    if (mix(na, nb, &in.negative, 1, &out->uncond, e) || mix(sa, sb, &in.noise, 0, &out->noise, e))
        goto fail;
    return 0;
fail:
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
        *drawn = -1; /* the initial latent comes first */
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
    sdm_tensor_free(&fc->noise);
    sdm_generator_free(&fc->gen[0]);
    sdm_generator_free(&fc->gen[1]);
}

void sdm_conditioner_free(sdm_conditioner **pc)
{
    sdm_conditioner *c = pc ? *pc : NULL;

    if (!c)
        return;
    for (int i = 0; i < c->n_noises; i++)
        sdm_tensor_free(&c->noises[i].noise);
    free(c->noises);
    sdm_text_ids_free(&c->ids);
    free(c->texts_json);
    sdm_tensor_free(&c->walk_y);
    sdm_tensor_free(&c->walk_end);
    free(c);
    *pc = NULL;
}
