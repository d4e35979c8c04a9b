#include "text_encoder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "torch_error.h"

typedef struct {
    char *prompt;
    sdm_text_opts opts;
    sdm_tensor *emb;
} cache_entry;

struct sdm_text_encoder {
    const sdm_bundle *bundle;
    const sdm_tokenizer *tok;
    sdm_device dev;
    sdm_dtype dtype;
    sdm_module *module;
    int layers; /* 0: the module takes ids and gives its last layer */
    float *table; /* [vocab, H]: the token table (layers > 0) */
    int64_t vocab;
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
static int load_table(sdm_text_encoder *te, sdm_error *err)
{
    const sdm_bundle *b = te->bundle;
    sdm_safetensors *st = NULL;
    const sdm_st_tensor *t;
    int rc = -1;

    if (sdm_safetensors_open(b->token_embedding, &st, err))
        goto end;
    t = sdm_safetensors_count(st) == 1 ? sdm_safetensors_tensor(st, 0) : NULL;
    if (!t || t->ndim != 2 || t->shape[1] != b->hidden_size || t->shape[0] <= b->bos_id || t->shape[0] <= b->eos_id ||
        t->shape[0] <= b->pad_id) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: expected one [vocabulary, %d] tensor (hidden_size in %s/model.yaml)",
                      b->token_embedding, b->hidden_size, b->dir);
        goto end;
    }
    te->vocab = t->shape[0];
    te->table = malloc(sizeof *te->table * t->numel);
    if (!te->table) {
        no_memory(err);
        goto end;
    }
    if (sdm_safetensors_read_f32(st, t, te->table, t->numel, err))
        goto end;
    rc = 0;
end:
    sdm_safetensors_free(&st);
    return rc;
}

/* The input of one chunk: ids [1,L] (old bundles) or its token embeddings
 * [1,L,H] in the model's dtype, with the embeddings' vectors in their places. */
static int chunk_input(sdm_text_encoder *te, const int64_t *ids, const int *vec, sdm_tensor **out, sdm_error *err)
{
    int L = te->bundle->token_length, H = te->bundle->hidden_size, rc = -1;
    int64_t ids_shape[2] = { 1, L }, shape[3] = { 1, L, H };
    float *x = NULL;
    sdm_tensor *f = NULL;
    sdm_torch_status st;

    if (!te->layers) {
        st = sdm_tensor_from_host(ids, SDM_I64, ids_shape, 2, te->dev, out);
        return st ? sdm_torch_error(err, st, "text encoding") : 0;
    }
    x = malloc(sizeof *x * (size_t)L * H);
    if (!x) {
        no_memory(err);
        goto end;
    }
    for (int i = 0; i < L; i++) {
        const float *row = vec[i] >= 0                         ? te->embs.rows + (size_t)vec[i] * H
                           : ids[i] >= 0 && ids[i] < te->vocab ? te->table + (size_t)ids[i] * H
                                                               : NULL;
        if (!row) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "token id %lld is outside %s", (long long)ids[i],
                          te->bundle->token_embedding);
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

/* One chunk through the module: its [L,H] hidden state at clip_skip into dst. */
static int encode_chunk(sdm_text_encoder *te, const int64_t *ids, const int *vec, int clip_skip, float *dst,
                        sdm_error *err)
{
    const sdm_bundle *b = te->bundle;
    size_t n = (size_t)b->token_length * b->hidden_size;
    sdm_tensor *in = NULL, *res = NULL, *layer = NULL;
    sdm_torch_status st;
    int rc = -1;

    if (chunk_input(te, ids, vec, &in, err))
        goto end;
    st = sdm_module_call(te->module, NULL, &in, 1, &res);
    if (st) {
        sdm_torch_error(err, st, b->text_encoder);
        goto end;
    }
    if (te->layers)
        st = sdm_tensor_narrow(res, te->layers - clip_skip, 1, &layer);
    if (!st && sdm_tensor_numel(layer ? layer : res) != (int64_t)n) {
        sdm_error_set(err, SDM_EXIT_RUNTIME,
                      "%s gives %lld values for a prompt; %s/model.yaml says %d layers of "
                      "[%d,%d] (text.layers, token_length, hidden_size)",
                      b->text_encoder, (long long)sdm_tensor_numel(res), b->dir, te->layers ? te->layers : 1,
                      b->token_length, b->hidden_size);
        goto end;
    }
    if (!st)
        st = sdm_tensor_to_host(layer ? layer : res, SDM_F32, dst, sizeof *dst * n);
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

int sdm_text_encoder_run(sdm_text_encoder *te, const char *prompt, const sdm_text_opts *o, sdm_tensor **out,
                         sdm_error *err)
{
    const sdm_bundle *b = te->bundle;
    int L = b->token_length, H = b->hidden_size, skip = o->clip_skip > 0 ? o->clip_skip : 1, rc = -1;
    sdm_prompt_chunks c = { 0 };
    float *z = NULL;
    int64_t shape[3] = { 1, 0, H };
    sdm_torch_status st;

    *out = NULL;
    if (skip > (te->layers ? te->layers : 1)) {
        if (te->layers)
            sdm_error_set(err, SDM_EXIT_USAGE, "clip_skip %d: the text encoder of %s has %d layers", skip, b->dir,
                          te->layers);
        else
            sdm_error_set(err, SDM_EXIT_USAGE, "clip_skip %d: the text encoder of %s gives its last layer only; %s",
                          skip, b->dir, REEXPORT);
        goto end;
    }
    if (sdm_text_encoder_chunks(te, prompt, o->parse_weights, &c, err))
        goto end;
    if (sdm_prompt_chunks_pad(&c, te->tok, o->min_chunks)) {
        no_memory(err);
        goto end;
    }
    z = malloc(sizeof *z * (size_t)c.n_chunks * L * H);
    if (!z) {
        no_memory(err);
        goto end;
    }
    for (int k = 0; k < c.n_chunks; k++) {
        float *zk = z + (size_t)k * L * H;
        if (encode_chunk(te, c.ids + (size_t)k * L, c.vec + (size_t)k * L, skip, zk, err))
            goto end;
        if (chunk_weighted(&c, k))
            apply_weights(zk, c.weights + (size_t)k * L, L, H);
    }
    shape[1] = (int64_t)c.n_chunks * L;
    st = sdm_tensor_from_host(z, SDM_F32, shape, 3, te->dev, out);
    if (st) {
        sdm_torch_error(err, st, "text encoding");
        goto end;
    }
    rc = 0;
end:
    free(z);
    sdm_prompt_chunks_clear(&c);
    return rc;
}

static int same_opts(const sdm_text_opts *a, const sdm_text_opts *b)
{
    return a->parse_weights == b->parse_weights &&
           (a->clip_skip > 1 ? a->clip_skip : 1) == (b->clip_skip > 1 ? b->clip_skip : 1) &&
           a->min_chunks == b->min_chunks;
}

int sdm_text_encoder_embed(sdm_text_encoder *te, const char *prompt, const sdm_text_opts *o, const sdm_tensor **out,
                           sdm_error *err)
{
    sdm_tensor *emb = NULL;
    cache_entry *ce;

    for (int i = 0; i < te->n_cache; i++) {
        if (same_opts(&te->cache[i].opts, o) && !strcmp(te->cache[i].prompt, prompt)) {
            *out = te->cache[i].emb;
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
    if (sdm_text_encoder_run(te, prompt, o, &emb, err))
        return -1;
    ce = &te->cache[te->n_cache];
    ce->prompt = strdup(prompt);
    if (!ce->prompt) {
        sdm_tensor_free(&emb);
        return no_memory(err);
    }
    ce->opts = *o;
    ce->emb = emb;
    te->n_cache++;
    *out = emb;
    return 0;
}

int sdm_text_encoder_open(const sdm_bundle *b, const sdm_tokenizer *tok, sdm_device dev, sdm_dtype dtype,
                          sdm_text_encoder **out, sdm_error *err)
{
    sdm_text_encoder *te = calloc(1, sizeof *te);
    sdm_text_opts o = { 0, 1, 1 };
    sdm_tensor *probe = NULL;
    int rc = -1;

    *out = NULL;
    if (!te)
        return no_memory(err);
    te->bundle = b;
    te->tok = tok;
    te->dev = dev;
    te->dtype = dtype;
    te->layers = b->text_layers;
    if (sdm_module_load(b->text_encoder, dev, &te->module)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot load model file %s: %s", b->text_encoder, sdm_torch_last_error());
        goto end;
    }
    if (te->layers && load_table(te, err))
        goto end;
    if (sdm_text_encoder_run(te, "", &o, &probe, err))
        goto end;
    rc = 0;
end:
    sdm_tensor_free(&probe);
    if (rc)
        sdm_text_encoder_free(&te);
    *out = te;
    return rc;
}

int sdm_text_encoder_layers(const sdm_text_encoder *te)
{
    return te->layers ? te->layers : 1;
}

int sdm_text_encoder_use_embeddings(sdm_text_encoder *te, const char *dir, sdm_error *err)
{
    sdm_embeddings e;

    if (!te->layers)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "embeddings (%s): the text encoder of %s takes token ids, not "
                             "embeddings; %s",
                             dir, te->bundle->dir, REEXPORT);
    if (sdm_embeddings_load(dir, te->tok, te->bundle->hidden_size, &e, err))
        return -1;
    sdm_embeddings_free(&te->embs);
    te->embs = e;
    /* the cache's prompts may read differently now */
    for (int i = 0; i < te->n_cache; i++) {
        free(te->cache[i].prompt);
        sdm_tensor_free(&te->cache[i].emb);
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
    }
    free(te->cache);
    free(te->table);
    sdm_embeddings_free(&te->embs);
    sdm_module_free(&te->module);
    free(te);
    *pte = NULL;
}
