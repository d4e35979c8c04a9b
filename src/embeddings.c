#include "embeddings.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static const char SUFFIX[] = ".safetensors";

static int no_memory(sdm_error *err)
{
    return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
}

/* The one tensor of an embedding file: the only one, else "emb_params"
 * (kohya's trainer), as A1111 picks it. */
static const sdm_st_tensor *vectors_of(const sdm_safetensors *st)
{
    if (sdm_safetensors_count(st) == 1)
        return sdm_safetensors_tensor(st, 0);
    return sdm_safetensors_find(st, "emb_params");
}

/* Rows of t ([n,H] or [H]), checked against the model. */
static int rows_of(const sdm_st_tensor *t, int hidden, int room, const char *path, int *rows, sdm_error *err)
{
    int64_t n = t->ndim == 1 ? 1 : t->ndim == 2 ? t->shape[0] : -1, w = t->shape[t->ndim > 0 ? t->ndim - 1 : 0];

    if (n < 1 || t->ndim < 1 || w != hidden)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: tensor '%s' is not [vectors, %d] (the model's text width)", path,
                             t->name, hidden);
    if (n > room)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: %lld vectors; a prompt chunk holds %d", path, (long long)n,
                             room);
    *rows = (int)n;
    return 0;
}

/* An SDXL embedding file's two tensors, one per encoder, of as many rows. */
static int vectors_xl(const sdm_embeddings *e, const sdm_safetensors *st, const char *path, int room,
                      const sdm_st_tensor **t, const sdm_st_tensor **t2, int *rows, sdm_error *err)
{
    int rows2 = 0;

    *t = sdm_safetensors_find(st, "clip_l");
    *t2 = sdm_safetensors_find(st, "clip_g");
    if (!*t || !*t2)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "%s: an embedding for a model with two text encoders (SDXL) holds 'clip_l' and "
                             "'clip_g' tensors",
                             path);
    if (rows_of(*t, e->hidden, room, path, rows, err) || rows_of(*t2, e->hidden2, room, path, &rows2, err))
        return -1;
    if (rows2 != *rows)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: 'clip_l' has %d vectors and 'clip_g' %d", path, *rows, rows2);
    return 0;
}

/* Room for `rows` more vectors (and the second encoder's), then t's (and t2's) read into it. */
static int append_rows(sdm_embeddings *e, const sdm_safetensors *st, const sdm_st_tensor *t, const sdm_st_tensor *t2,
                       int rows, sdm_error *err)
{
    float *all = realloc(e->rows, sizeof *all * (size_t)(e->n_rows + rows) * e->hidden);

    if (!all)
        return no_memory(err);
    e->rows = all;
    if (sdm_safetensors_read_f32(st, t, all + (size_t)e->n_rows * e->hidden, (uint64_t)rows * e->hidden, err))
        return -1;
    if (!t2)
        return 0;
    all = realloc(e->rows2, sizeof *all * (size_t)(e->n_rows + rows) * e->hidden2);
    if (!all)
        return no_memory(err);
    e->rows2 = all;
    return sdm_safetensors_read_f32(st, t2, all + (size_t)e->n_rows * e->hidden2, (uint64_t)rows * e->hidden2, err);
}

int sdm_embeddings_add_file(sdm_embeddings *e, const char *path, const char *name, const sdm_tokenizer *tok,
                            sdm_error *err)
{
    sdm_safetensors *st = NULL;
    const sdm_st_tensor *t, *t2 = NULL;
    sdm_prompt_embedding *list, *pe;
    int64_t *ids = NULL;
    int rows = 0, n_ids = 0, rc = -1, room = sdm_tokenizer_token_length(tok) - 2;

    if (e->n >= SDM_MAX_EMBEDDINGS) {
        sdm_error_set(err, SDM_EXIT_USAGE, "%s: more than %d embeddings", path, SDM_MAX_EMBEDDINGS);
        goto end;
    }
    if (sdm_safetensors_open(path, &st, err))
        goto end;
    if (e->hidden2 > 0) {
        if (vectors_xl(e, st, path, room, &t, &t2, &rows, err))
            goto end;
    } else if (!(t = vectors_of(st))) {
        sdm_error_set(err, SDM_EXIT_USAGE,
                      "%s: %d tensors and none called emb_params; an embedding file holds "
                      "one",
                      path, sdm_safetensors_count(st));
        goto end;
    } else if (rows_of(t, e->hidden, room, path, &rows, err)) {
        goto end;
    }
    if (sdm_tokenizer_tokens(tok, name, &ids, &n_ids, NULL)) {
        no_memory(err);
        goto end;
    }
    if (n_ids == 0) {
        sdm_error_set(err, SDM_EXIT_USAGE, "%s: the name '%s' makes no tokens, so no prompt can use it", path, name);
        goto end;
    }
    list = realloc(e->list, sizeof *list * (size_t)(e->n + 1));
    if (!list) {
        no_memory(err);
        goto end;
    }
    e->list = list;
    if (append_rows(e, st, t, t2, rows, err))
        goto end;
    pe = &e->list[e->n];
    pe->name = strdup(name);
    if (!pe->name) {
        no_memory(err);
        goto end;
    }
    pe->name_ids = ids;
    pe->n_name_ids = n_ids;
    pe->n_vectors = rows;
    pe->first_row = e->n_rows;
    ids = NULL;
    e->n_rows += rows;
    e->n++;
    rc = 0;
end:
    free(ids);
    sdm_safetensors_free(&st);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The folder's *.safetensors names, sorted. */
static int list_dir(const char *dir, char ***names, int *n, sdm_error *err)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    int cap = 0;

    *names = NULL;
    *n = 0;
    if (!d)
        return sdm_error_set(err, SDM_EXIT_USAGE, "embeddings folder %s: cannot open it", dir);
    while ((ent = readdir(d))) {
        size_t len = strlen(ent->d_name);
        if (len <= sizeof SUFFIX - 1 || strcmp(ent->d_name + len - (sizeof SUFFIX - 1), SUFFIX))
            continue;
        if (*n == cap) {
            char **nn = realloc(*names, sizeof *nn * (size_t)(cap = cap ? 2 * cap : 16));
            if (!nn)
                break;
            *names = nn;
        }
        if (!((*names)[*n] = strdup(ent->d_name)))
            break;
        (*n)++;
    }
    closedir(d);
    if (ent)
        return no_memory(err);
    if (*n)
        qsort(*names, (size_t)*n, sizeof **names, by_name);
    return 0;
}

int sdm_embeddings_load(const char *dir, const sdm_tokenizer *tok, int hidden, sdm_embeddings *out, sdm_error *err)
{
    return sdm_embeddings_load2(dir, tok, hidden, 0, out, err);
}

int sdm_embeddings_load2(const char *dir, const sdm_tokenizer *tok, int hidden, int hidden2, sdm_embeddings *out,
                         sdm_error *err)
{
    char **names = NULL, path[4096], name[256];
    int n = 0, rc = -1;

    memset(out, 0, sizeof *out);
    out->hidden = hidden;
    out->hidden2 = hidden2;
    if (list_dir(dir, &names, &n, err))
        goto end;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]) - (sizeof SUFFIX - 1);
        if (len >= sizeof name || snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path) {
            sdm_error_set(err, SDM_EXIT_USAGE, "%s/%s: the path is too long", dir, names[i]);
            goto end;
        }
        memcpy(name, names[i], len);
        name[len] = '\0';
        if (sdm_embeddings_add_file(out, path, name, tok, err))
            goto end;
    }
    rc = 0;
end:
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc)
        sdm_embeddings_free(out);
    return rc;
}

void sdm_embeddings_free(sdm_embeddings *e)
{
    for (int i = 0; i < e->n; i++) {
        free((char *)e->list[i].name);
        free((int64_t *)e->list[i].name_ids);
    }
    free(e->list);
    free(e->rows);
    free(e->rows2);
    memset(e, 0, sizeof *e);
}
