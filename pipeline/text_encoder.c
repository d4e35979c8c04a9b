#include "text_encoder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "torch_error.h"

typedef struct {
    char *prompt;
    sdm_text_opts opts;
    sdm_tensor *emb, *pooled;
} cache_entry;

/* One text encoder of the bundle: SD has one, SDXL two, whose hidden
 * states are joined on the feature axis. */
typedef struct {
    const char *path, *table_path;
    sdm_module *module;
    int hidden; /* H of this encoder */
    int layers; /* 0: the module takes ids and gives its last layer */
    int pad_id; /* the second pads with its own id after the end of text */
    int pooled; /* its output has one more layer, the projected states: the
                   pooled embedding is that layer's row at the end of text */
    float *table; /* [vocab, H]: the token table (layers > 0) */
    int64_t vocab;
} tower;

struct sdm_text_encoder {
    const sdm_bundle *bundle;
    const sdm_tokenizer *tok;
    sdm_device dev;
    sdm_dtype dtype;
    tower towers[2];
    int n_towers;
    int width; /* the joined embedding's: the towers' H summed */
    int layers; /* the first tower's (clip skip counts over it) */
    sdm_embeddings embs;
    cache_entry *cache;
    int n_cache, cap_cache;
};

static int no_memory(sdm_error *err)
{
    return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
}

static const char REEXPORT[] =
    "export the bundle again with pipeline/export/export_sd.py (version 3 or later), "
    "whose text encoder takes token embeddings";

/* token_embedding.safetensors: one [vocab, H] tensor, kept on the host. */
static int load_table(const sdm_bundle *b, tower *tw, sdm_error *err)
{
    sdm_safetensors *st = NULL;
    const sdm_st_tensor *t;
    int rc = -1;

    if (sdm_safetensors_open(tw->table_path, &st, err))
        goto end;
    t = sdm_safetensors_count(st) == 1 ? sdm_safetensors_tensor(st, 0) : NULL;
    if (!t || t->ndim != 2 || t->shape[1] != tw->hidden || t->shape[0] <= b->bos_id || t->shape[0] <= b->eos_id ||
        t->shape[0] <= tw->pad_id) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: expected one [vocabulary, %d] tensor (hidden_size in %s/model.yaml)",
                      tw->table_path, tw->hidden, b->dir);
        goto end;
    }
    tw->vocab = t->shape[0];
    tw->table = malloc(sizeof *tw->table * t->numel);
    if (!tw->table) {
        no_memory(err);
        goto end;
    }
    if (sdm_safetensors_read_f32(st, t, tw->table, t->numel, err))
        goto end;
    rc = 0;
end:
    sdm_safetensors_free(&st);
    return rc;
}

/* The input of one chunk: ids [1,L] (old bundles) or its token embeddings
 * [1,L,H] in the model's dtype, with the embeddings' vectors in their places. */
static int chunk_input(sdm_text_encoder *te, const tower *tw, const int64_t *ids, const int *vec, sdm_tensor **out,
                       sdm_error *err)
{
    int L = te->bundle->token_length, H = tw->hidden, rc = -1;
    /* textual-inversion vectors: the second encoder has its own */
    const float *vectors = tw == &te->towers[0] ? te->embs.rows : te->embs.rows2;
    int64_t ids_shape[2] = { 1, L }, shape[3] = { 1, L, H };
    float *x = NULL;
    sdm_tensor *f = NULL;
    sdm_torch_status st;

    if (!tw->layers) {
        st = sdm_tensor_from_host(ids, SDM_I64, ids_shape, 2, te->dev, out);
        return st ? sdm_torch_error(err, st, "text encoding") : 0;
    }
    x = malloc(sizeof *x * (size_t)L * H);
    if (!x) {
        no_memory(err);
        goto end;
    }
    for (int i = 0; i < L; i++) {
        const float *row = vec[i] >= 0                         ? vectors + (size_t)vec[i] * H
                           : ids[i] >= 0 && ids[i] < tw->vocab ? tw->table + (size_t)ids[i] * H
                                                               : NULL;
        if (!row) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "token id %lld is outside %s", (long long)ids[i], tw->table_path);
            goto end;
        }
        memcpy(x + (size_t)i * H, row, sizeof *x * H);
    }
    st = sdm_tensor_from_host(x, SDM_F32, shape, 3, te->dev, &f);
    if (!st)
        st = sdm_tensor_to(f, te->dev, te->dtype, out);
    if (st) {
        sdm_torch_error(err, st, "text encoding");
        goto end;
    }
    rc = 0;
end:
    free(x);
    sdm_tensor_free(&f);
    return rc;
}

/* The layer a clip skip reads: the last (or, penultimate, the one before),
 * and clip_skip-1 before that. */
static int skip_layer(const sdm_text_encoder *te, const tower *tw, int clip_skip)
{
    return tw->layers - clip_skip - te->bundle->text_penultimate;
}

/* The pooled embedding of a chunk's output: the projected layer's row at
 * the first end of text (CLIP's pooling: the eos position). */
static sdm_torch_status chunk_pooled(const sdm_text_encoder *te, const tower *tw, const int64_t *ids,
                                     const sdm_tensor *res, float *pooled)
{
    int L = te->bundle->token_length, eos = L - 1, P = te->bundle->text2.pooled_size;
    float *all = malloc(sizeof *all * (size_t)L * tw->hidden);
    sdm_tensor *proj = NULL;
    sdm_torch_status st;

    if (!all)
        return SDM_TORCH_OOM;
    for (int i = 1; i < L; i++)
        if (ids[i] == te->bundle->eos_id) {
            eos = i;
            break;
        }
    st = sdm_tensor_narrow(res, tw->layers, 1, &proj);
    if (!st)
        st = sdm_tensor_to_host(proj, SDM_F32, all, sizeof *all * (size_t)L * tw->hidden);
    if (!st)
        memcpy(pooled, all + (size_t)eos * tw->hidden, sizeof *pooled * P);
    sdm_tensor_free(&proj);
    free(all);
    return st;
}

/* One chunk through one tower: its [L,H] hidden state at clip_skip into
 * dst, and where the tower pools and pooled is not NULL, its pooled embedding. */
static int encode_chunk(sdm_text_encoder *te, const tower *tw, const int64_t *ids, const int *vec, int clip_skip,
                        float *dst, float *pooled, sdm_error *err)
{
    const sdm_bundle *b = te->bundle;
    size_t n = (size_t)b->token_length * tw->hidden;
    sdm_tensor *in = NULL, *res = NULL, *layer = NULL;
    sdm_torch_status st;
    int rc = -1;

    if (chunk_input(te, tw, ids, vec, &in, err))
        goto end;
    st = sdm_module_call(tw->module, NULL, &in, 1, &res);
    if (st) {
        sdm_torch_error(err, st, tw->path);
        goto end;
    }
    if (tw->layers)
        st = sdm_tensor_narrow(res, skip_layer(te, tw, clip_skip), 1, &layer);
    if (!st && sdm_tensor_numel(layer ? layer : res) != (int64_t)n) {
        sdm_error_set(err, SDM_EXIT_RUNTIME,
                      "%s gives %lld values for a prompt; %s/model.yaml says %d layers of "
                      "[%d,%d] (text.layers, token_length, hidden_size)",
                      tw->path, (long long)sdm_tensor_numel(res), b->dir, tw->layers ? tw->layers + tw->pooled : 1,
                      b->token_length, tw->hidden);
        goto end;
    }
    if (!st)
        st = sdm_tensor_to_host(layer ? layer : res, SDM_F32, dst, sizeof *dst * n);
    if (!st && tw->pooled && pooled)
        st = chunk_pooled(te, tw, ids, res, pooled);
    if (st) {
        sdm_torch_error(err, st, "text encoding");
        goto end;
    }
    rc = 0;
end:
    sdm_tensor_free(&in);
    sdm_tensor_free(&res);
    sdm_tensor_free(&layer);
    return rc;
}

/* A1111's emphasis: z·w per token row, then z·(mean before / mean after). */
static void apply_weights(float *z, const float *w, int L, int H)
{
    double before = 0, after = 0;
    float ratio;

    for (int i = 0; i < L * H; i++)
        before += z[i];
    for (int i = 0; i < L; i++)
        for (int j = 0; j < H; j++) {
            z[i * H + j] *= w[i];
            after += z[i * H + j];
        }
    before /= (double)L * H;
    after /= (double)L * H;
    ratio = (float)before / (float)after;
    if (after == 0 || ratio != ratio)
        return;
    for (int i = 0; i < L * H; i++)
        z[i] *= ratio;
}

static int chunk_weighted(const sdm_prompt_chunks *c, int k)
{
    for (int i = 0; i < c->length; i++)
        if (c->weights[(size_t)k * c->length + i] != 1.0f)
            return 1;
    return 0;
}

int sdm_text_encoder_chunks(const sdm_text_encoder *te, const char *prompt, int parse_weights, sdm_prompt_chunks *out,
                            sdm_error *err)
{
    return sdm_prompt_chunks_make(te->tok, prompt, parse_weights, te->embs.list, te->embs.n, out, err);
}

/* The ids tower t reads for a chunk: the first's; a later one pads with
 * its own id after the end of text (SDXL's second tokenizer pads with "!"). */
static const int64_t *tower_ids(const sdm_text_encoder *te, const tower *tw, const int64_t *ids, int64_t *buf)
{
    int L = te->bundle->token_length, after_eos = 0;

    if (tw == &te->towers[0])
        return ids;
    for (int i = 0; i < L; i++) {
        buf[i] = after_eos ? tw->pad_id : ids[i];
        after_eos |= i > 0 && ids[i] == te->bundle->eos_id;
    }
    return buf;
}

/* Chunk k through every tower, each weighted as A1111 weights one encoder's
 * output, into its rows of z [.., width] (the towers side by side); the
 * pooled embedding from the first chunk. part: room for [L, H] of any tower. */
static int encode_chunk_towers(sdm_text_encoder *te, const sdm_prompt_chunks *c, int k, int skip, float *z, float *part,
                               int64_t *ids_buf, float *pooled, sdm_error *err)
{
    int L = te->bundle->token_length, W = te->width, off = 0;

    for (int t = 0; t < te->n_towers; t++) {
        const tower *tw = &te->towers[t];
        const int64_t *ids = tower_ids(te, tw, c->ids + (size_t)k * L, ids_buf);
        if (encode_chunk(te, tw, ids, c->vec + (size_t)k * L, skip, part, k == 0 ? pooled : NULL, err))
            return -1;
        if (chunk_weighted(c, k))
            apply_weights(part, c->weights + (size_t)k * L, L, tw->hidden);
        for (int i = 0; i < L; i++)
            memcpy(z + ((size_t)k * L + i) * W + off, part + (size_t)i * tw->hidden, sizeof *z * tw->hidden);
        off += tw->hidden;
    }
    return 0;
}

static int skip_refused(const sdm_text_encoder *te, int skip, sdm_error *err)
{
    const sdm_bundle *b = te->bundle;
    int most = te->layers ? te->layers - b->text_penultimate : 1;

    if (skip <= most)
        return 0;
    if (te->layers)
        return sdm_error_set(err, SDM_EXIT_USAGE, "clip_skip %d: the text encoder of %s has %d layers%s", skip, b->dir,
                             most, b->text_penultimate ? " before its last" : "");
    return sdm_error_set(err, SDM_EXIT_USAGE, "clip_skip %d: the text encoder of %s gives its last layer only; %s",
                         skip, b->dir, REEXPORT);
}

/* The prompt's chunks through the towers: z [chunks·L, width], pooled [P]. */
static int encode_prompt(sdm_text_encoder *te, const sdm_prompt_chunks *c, int skip, float *z, float *pooled,
                         sdm_error *err)
{
    int L = te->bundle->token_length, H = 0, rc = -1;
    float *part;
    int64_t *ids_buf;

    for (int t = 0; t < te->n_towers; t++)
        H = te->towers[t].hidden > H ? te->towers[t].hidden : H;
    part = malloc(sizeof *part * (size_t)L * H);
    ids_buf = malloc(sizeof *ids_buf * (size_t)L);
    if (!part || !ids_buf) {
        no_memory(err);
        goto end;
    }
    for (int k = 0; k < c->n_chunks; k++)
        if (encode_chunk_towers(te, c, k, skip, z, part, ids_buf, pooled, err))
            goto end;
    rc = 0;
end:
    free(part);
    free(ids_buf);
    return rc;
}

int sdm_text_encoder_loaded(const sdm_text_encoder *te)
{
    for (int t = 0; t < te->n_towers; t++)
        if (!te->towers[t].module)
            return 0;
    return 1;
}

/* The towers' modules, where they are not loaded (at open, or after
 * sdm_text_encoder_release), each then run twice on the empty prompt:
 * TorchScript profiles its first runs and then settles on the graph every
 * prompt is encoded with, the same bits whenever the module was loaded. */
static int towers_load(sdm_text_encoder *te, sdm_error *err)
{
    const sdm_text_opts o = { 0, 1, 1 };
    sdm_tensor *probe = NULL;

    if (sdm_text_encoder_loaded(te))
        return 0;
    for (int t = 0; t < te->n_towers; t++) {
        tower *tw = &te->towers[t];
        if (!tw->module && sdm_module_load(tw->path, te->dev, &tw->module))
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot load model file %s: %s", tw->path,
                                 sdm_torch_last_error());
    }
    for (int i = 0; i < 2; i++) {
        if (sdm_text_encoder_run(te, "", &o, &probe, err))
            return -1;
        sdm_tensor_free(&probe);
    }
    return 0;
}

void sdm_text_encoder_release(sdm_text_encoder *te)
{
    for (int t = 0; t < te->n_towers; t++)
        sdm_module_free(&te->towers[t].module);
}

int sdm_text_encoder_run_pooled(sdm_text_encoder *te, const char *prompt, const sdm_text_opts *o, sdm_tensor **out,
                                sdm_tensor **pooled, sdm_error *err)
{
    const sdm_bundle *b = te->bundle;
    int L = b->token_length, skip = o->clip_skip > 0 ? o->clip_skip : 1, P = b->text2.pooled_size, rc = -1;
    sdm_prompt_chunks c = { 0 };
    float *z = NULL, *pool = NULL;
    int64_t shape[3] = { 1, 0, te->width }, pshape[2] = { 1, P };
    sdm_torch_status st;

    *out = NULL;
    if (pooled)
        *pooled = NULL;
    if (skip_refused(te, skip, err) || sdm_text_encoder_chunks(te, prompt, o->parse_weights, &c, err) ||
        towers_load(te, err))
        goto end;
    if (sdm_prompt_chunks_pad(&c, te->tok, o->min_chunks)) {
        no_memory(err);
        goto end;
    }
    z = malloc(sizeof *z * (size_t)c.n_chunks * L * te->width);
    pool = malloc(sizeof *pool * (size_t)(P > 0 ? P : 1));
    if (!z || !pool) {
        no_memory(err);
        goto end;
    }
    if (encode_prompt(te, &c, skip, z, P > 0 ? pool : NULL, err))
        goto end;
    shape[1] = (int64_t)c.n_chunks * L;
    st = sdm_tensor_from_host(z, SDM_F32, shape, 3, te->dev, out);
    if (!st && pooled && P > 0)
        st = sdm_tensor_from_host(pool, SDM_F32, pshape, 2, te->dev, pooled);
    if (st) {
        sdm_torch_error(err, st, "text encoding");
        goto end;
    }
    rc = 0;
end:
    free(z);
    free(pool);
    sdm_prompt_chunks_clear(&c);
    return rc;
}

int sdm_text_encoder_run(sdm_text_encoder *te, const char *prompt, const sdm_text_opts *o, sdm_tensor **out,
                         sdm_error *err)
{
    return sdm_text_encoder_run_pooled(te, prompt, o, out, NULL, err);
}

static int same_opts(const sdm_text_opts *a, const sdm_text_opts *b)
{
    return a->parse_weights == b->parse_weights &&
           (a->clip_skip > 1 ? a->clip_skip : 1) == (b->clip_skip > 1 ? b->clip_skip : 1) &&
           a->min_chunks == b->min_chunks;
}

int sdm_text_encoder_embed_pooled(sdm_text_encoder *te, const char *prompt, const sdm_text_opts *o,
                                  const sdm_tensor **out, const sdm_tensor **pooled, sdm_error *err)
{
    sdm_tensor *emb = NULL, *pool = NULL;
    cache_entry *ce;

    for (int i = 0; i < te->n_cache; i++) {
        if (same_opts(&te->cache[i].opts, o) && !strcmp(te->cache[i].prompt, prompt)) {
            *out = te->cache[i].emb;
            if (pooled)
                *pooled = te->cache[i].pooled;
            return 0;
        }
    }
    if (te->n_cache == te->cap_cache) {
        int cap = te->cap_cache ? 2 * te->cap_cache : 8;
        ce = realloc(te->cache, sizeof *ce * cap);
        if (!ce)
            return no_memory(err);
        te->cache = ce;
        te->cap_cache = cap;
    }
    if (sdm_text_encoder_run_pooled(te, prompt, o, &emb, &pool, err))
        return -1;
    ce = &te->cache[te->n_cache];
    ce->prompt = strdup(prompt);
    if (!ce->prompt) {
        sdm_tensor_free(&emb);
        sdm_tensor_free(&pool);
        return no_memory(err);
    }
    ce->opts = *o;
    ce->emb = emb;
    ce->pooled = pool;
    te->n_cache++;
    *out = emb;
    if (pooled)
        *pooled = pool;
    return 0;
}

int sdm_text_encoder_embed(sdm_text_encoder *te, const char *prompt, const sdm_text_opts *o, const sdm_tensor **out,
                           sdm_error *err)
{
    return sdm_text_encoder_embed_pooled(te, prompt, o, out, NULL, err);
}

/* Tower t's module (and token table) as model.yaml names them. */
static int tower_open(sdm_text_encoder *te, int t, sdm_error *err)
{
    const sdm_bundle *b = te->bundle;
    tower *tw = &te->towers[t];

    tw->path = t ? b->text2.text_encoder : b->text_encoder;
    tw->table_path = t ? b->text2.token_embedding : b->token_embedding;
    tw->hidden = t ? b->text2.hidden_size : b->hidden_size;
    tw->layers = t ? b->text2.layers : b->text_layers;
    tw->pad_id = t ? b->text2.pad_id : b->pad_id;
    tw->pooled = t && b->text2.pooled_size > 0;
    te->width += tw->hidden;
    return tw->layers ? load_table(b, tw, err) : 0;
}

int sdm_text_encoder_open(const sdm_bundle *b, const sdm_tokenizer *tok, sdm_device dev, sdm_dtype dtype,
                          sdm_text_encoder **out, sdm_error *err)
{
    sdm_text_encoder *te = calloc(1, sizeof *te);
    int rc = -1;

    *out = NULL;
    if (!te)
        return no_memory(err);
    te->bundle = b;
    te->tok = tok;
    te->dev = dev;
    te->dtype = dtype;
    te->layers = b->text_layers;
    te->n_towers = sdm_bundle_is_xl(b) ? 2 : 1;
    for (int t = 0; t < te->n_towers; t++)
        if (tower_open(te, t, err))
            goto end;
    if (towers_load(te, err))
        goto end;
    rc = 0;
end:
    if (rc)
        sdm_text_encoder_free(&te);
    *out = te;
    return rc;
}

int sdm_text_encoder_layers(const sdm_text_encoder *te)
{
    return te->layers ? te->layers - te->bundle->text_penultimate : 1;
}

int sdm_text_encoder_use_embeddings(sdm_text_encoder *te, const char *dir, sdm_error *err)
{
    sdm_embeddings e;

    if (!te->layers)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "embeddings (%s): the text encoder of %s takes token ids, not "
                             "embeddings; %s",
                             dir, te->bundle->dir, REEXPORT);
    if (sdm_embeddings_load2(dir, te->tok, te->bundle->hidden_size, te->bundle->text2.hidden_size, &e, err))
        return -1;
    sdm_embeddings_free(&te->embs);
    te->embs = e;
    /* the cache's prompts may read differently now */
    for (int i = 0; i < te->n_cache; i++) {
        free(te->cache[i].prompt);
        sdm_tensor_free(&te->cache[i].emb);
        sdm_tensor_free(&te->cache[i].pooled);
    }
    te->n_cache = 0;
    return 0;
}

const sdm_embeddings *sdm_text_encoder_embeddings(const sdm_text_encoder *te)
{
    return &te->embs;
}

void sdm_text_encoder_free(sdm_text_encoder **pte)
{
    sdm_text_encoder *te = pte ? *pte : NULL;

    if (!te)
        return;
    for (int i = 0; i < te->n_cache; i++) {
        free(te->cache[i].prompt);
        sdm_tensor_free(&te->cache[i].emb);
        sdm_tensor_free(&te->cache[i].pooled);
    }
    free(te->cache);
    for (int t = 0; t < 2; t++) {
        free(te->towers[t].table);
        sdm_module_free(&te->towers[t].module);
    }
    sdm_embeddings_free(&te->embs);
    free(te);
    *pte = NULL;
}
