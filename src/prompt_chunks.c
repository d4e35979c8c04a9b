#include "prompt_chunks.h"

#include <stdlib.h>
#include <string.h>

#include "prompt.h"

/* Places a chunk holds at most (token_length - 2; 75 for CLIP). */
#define MAX_ROOM 254

/* The chunk being filled: at most `room` places (75). */
typedef struct {
    int64_t ids[MAX_ROOM]; /* room <= MAX_ROOM, checked */
    float weights[MAX_ROOM];
    int vec[MAX_ROOM];
    int len;
} open_chunk;

typedef struct {
    const sdm_tokenizer *tok;
    sdm_prompt_chunks *out;
    int room, cap;
    int last_comma;
    open_chunk cur;
} chunker;

static int no_memory(sdm_error *err)
{
    return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
}

static int reserve_chunk(sdm_prompt_chunks *c, int *cap)
{
    int L = c->length, n = *cap ? 2 * *cap : 2;
    int64_t *ids;
    float *w;
    int *v;

    if (c->n_chunks < *cap)
        return 0;
    ids = realloc(c->ids, sizeof *ids * (size_t)n * L);
    if (!ids)
        return -1;
    c->ids = ids;
    w = realloc(c->weights, sizeof *w * (size_t)n * L);
    if (!w)
        return -1;
    c->weights = w;
    v = realloc(c->vec, sizeof *v * (size_t)n * L);
    if (!v)
        return -1;
    c->vec = v;
    *cap = n;
    return 0;
}

/* Frames the open chunk as A1111 does: bos, places, eos up to the end;
 * then (where padding is not eos, SD 2.x) everything after the first eos
 * becomes padding. */
static int close_chunk(chunker *k, int is_last, sdm_error *err)
{
    sdm_prompt_chunks *c = k->out;
    int L = c->length, eos = sdm_tokenizer_eos_id(k->tok), pad = sdm_tokenizer_pad_id(k->tok), first_eos = -1;
    int64_t *ids;
    float *w;
    int *v;

    if (c->n_chunks >= SDM_MAX_CHUNKS)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "the prompt is more than %d chunks of %d tokens; a prompt that "
                             "long is a mistake",
                             SDM_MAX_CHUNKS, k->room);
    if (reserve_chunk(c, &k->cap))
        return no_memory(err);
    c->n_tokens += is_last ? k->cur.len : k->room;
    ids = c->ids + (size_t)c->n_chunks * L;
    w = c->weights + (size_t)c->n_chunks * L;
    v = c->vec + (size_t)c->n_chunks * L;
    for (int i = 0; i < L; i++) {
        int in = i >= 1 && i <= k->cur.len;
        ids[i] = i == 0 ? sdm_tokenizer_bos_id(k->tok) : in ? k->cur.ids[i - 1] : eos;
        w[i] = in ? k->cur.weights[i - 1] : 1.0f;
        v[i] = in ? k->cur.vec[i - 1] : -1;
        if (ids[i] == eos && first_eos < 0)
            first_eos = i;
        else if (first_eos >= 0 && pad != eos)
            ids[i] = pad;
        c->weighted |= w[i] != 1.0f;
    }
    c->n_chunks++;
    k->cur.len = 0;
    k->last_comma = -1;
    return 0;
}

static void place(open_chunk *o, int64_t id, float w, int vec)
{
    o->ids[o->len] = id;
    o->weights[o->len] = w;
    o->vec[o->len] = vec;
    o->len++;
}

/* The embedding whose name's tokens start at tokens[at] (the longest). */
static const sdm_prompt_embedding *embedding_at(const int64_t *tokens, int n, int at, const sdm_prompt_embedding *embs,
                                                int n_embs)
{
    const sdm_prompt_embedding *best = NULL;

    for (int i = 0; i < n_embs; i++) {
        const sdm_prompt_embedding *e = &embs[i];
        if (e->n_name_ids > 0 && e->n_name_ids <= n - at && (!best || e->n_name_ids > best->n_name_ids) &&
            !memcmp(e->name_ids, tokens + at, sizeof *tokens * (size_t)e->n_name_ids))
            best = e;
    }
    return best;
}

/* A chunk full within SDM_COMMA_BACKTRACK places of a comma: what follows
 * the comma moves to the next chunk. */
static int backtrack(chunker *k, sdm_error *err)
{
    open_chunk moved;
    int at = k->last_comma + 1;

    moved.len = 0;
    for (int i = at; i < k->cur.len; i++)
        place(&moved, k->cur.ids[i], k->cur.weights[i], k->cur.vec[i]);
    k->cur.len = at;
    if (close_chunk(k, 0, err))
        return -1;
    k->cur = moved;
    return 0;
}

static int chunk_run(chunker *k, const int64_t *tokens, int n, float weight, const sdm_prompt_embedding *embs,
                     int n_embs, sdm_error *err)
{
    int comma = sdm_tokenizer_find(k->tok, ",</w>");

    for (int pos = 0; pos < n;) {
        const sdm_prompt_embedding *e;

        if (tokens[pos] == comma)
            k->last_comma = k->cur.len;
        else if (k->cur.len == k->room && k->last_comma >= 0 && k->cur.len - k->last_comma <= SDM_COMMA_BACKTRACK &&
                 backtrack(k, err))
            return -1;
        if (k->cur.len == k->room && close_chunk(k, 0, err))
            return -1;
        e = embedding_at(tokens, n, pos, embs, n_embs);
        if (!e) {
            place(&k->cur, tokens[pos], weight, -1);
            pos++;
            continue;
        }
        if (e->n_vectors > k->room)
            return sdm_error_set(err, SDM_EXIT_USAGE, "embedding '%s' has %d vectors; a chunk holds %d", e->name,
                                 e->n_vectors, k->room);
        if (k->cur.len + e->n_vectors > k->room && close_chunk(k, 0, err))
            return -1;
        for (int j = 0; j < e->n_vectors; j++)
            place(&k->cur, 0, weight, e->first_row + j);
        pos += e->n_name_ids;
    }
    return 0;
}

int sdm_prompt_chunks_make(const sdm_tokenizer *tok, const char *text, int parse_weights,
                           const sdm_prompt_embedding *embs, int n_embs, sdm_prompt_chunks *out, sdm_error *err)
{
    sdm_prompt_runs runs = { 0 };
    sdm_prompt_run whole = { (char *)text, 1.0 };
    chunker *k = calloc(1, sizeof *k);
    int64_t *tokens = NULL;
    int rc = -1;

    memset(out, 0, sizeof *out);
    out->length = sdm_tokenizer_token_length(tok);
    if (!k) {
        no_memory(err);
        goto end;
    }
    k->tok = tok;
    k->out = out;
    k->room = out->length - 2;
    k->last_comma = -1;
    if (k->room < 1 || k->room > (int)(sizeof k->cur.ids / sizeof k->cur.ids[0])) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "token_length %d is not one the prompt chunker takes", out->length);
        goto end;
    }
    if (parse_weights && sdm_prompt_parse(text, &runs, err))
        goto end;
    for (int i = 0; i < (parse_weights ? runs.n : 1); i++) {
        const sdm_prompt_run *r = parse_weights ? &runs.runs[i] : &whole;
        int n = 0, bad = 0;

        if (parse_weights && sdm_prompt_run_is_break(r)) {
            if (close_chunk(k, 0, err))
                goto end;
            continue;
        }
        free(tokens);
        if (sdm_tokenizer_tokens(tok, r->text, &tokens, &n, &bad)) {
            no_memory(err);
            goto end;
        }
        out->invalid_utf8 += bad;
        if (chunk_run(k, tokens, n, (float)r->weight, embs, n_embs, err))
            goto end;
    }
    if ((k->cur.len > 0 || out->n_chunks == 0) && close_chunk(k, 1, err))
        goto end;
    rc = 0;
end:
    if (rc)
        sdm_prompt_chunks_clear(out);
    free(tokens);
    free(k);
    sdm_prompt_runs_clear(&runs);
    return rc;
}

int sdm_prompt_chunks_pad(sdm_prompt_chunks *c, const sdm_tokenizer *tok, int n)
{
    sdm_prompt_chunks empty;
    sdm_error err = { 0 };
    int L = c->length, rc = -1;

    if (c->n_chunks >= n)
        return 0;
    if (sdm_prompt_chunks_make(tok, "", 0, NULL, 0, &empty, &err))
        return -1;
    {
        size_t cells = (size_t)n * L;
        int64_t *ids = realloc(c->ids, sizeof *ids * cells);
        float *w = ids ? realloc(c->weights, sizeof *w * cells) : NULL;
        int *v;
        if (ids)
            c->ids = ids;
        if (w)
            c->weights = w;
        v = w ? realloc(c->vec, sizeof *v * cells) : NULL;
        if (!v)
            goto end;
        c->vec = v;
    }
    for (int k = c->n_chunks; k < n; k++) {
        memcpy(c->ids + (size_t)k * L, empty.ids, sizeof *c->ids * L);
        memcpy(c->weights + (size_t)k * L, empty.weights, sizeof *c->weights * L);
        memcpy(c->vec + (size_t)k * L, empty.vec, sizeof *c->vec * L);
    }
    c->n_chunks = n;
    rc = 0;
end:
    sdm_prompt_chunks_clear(&empty);
    return rc;
}

void sdm_prompt_chunks_clear(sdm_prompt_chunks *c)
{
    free(c->ids);
    free(c->weights);
    free(c->vec);
    memset(c, 0, sizeof *c);
}
