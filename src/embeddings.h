/* Textual-inversion embeddings, as A1111 uses them: every `NAME.safetensors`
 * of a folder is an embedding called NAME; a prompt that contains NAME
 * (matched by its tokens, so case and the comma after it do not matter)
 * gets the embedding's vectors in its place, one position each. A file
 * holds one tensor ([n, H] or [H]; "emb_params" where there are several),
 * read with safetensors.h. A1111's .pt and diffusers' .bin files are
 * converted once by pipeline/export/embedding_to_safetensors.py. */
#ifndef SDM_EMBEDDINGS_H
#define SDM_EMBEDDINGS_H

#include "error.h"
#include "prompt_chunks.h"
#include "tokenizer.h"

/* A folder holds at most this many embeddings. */
#define SDM_MAX_EMBEDDINGS 1024

typedef struct {
    int n;
    sdm_prompt_embedding *list; /* for the chunker: names, their tokens, rows */
    int hidden; /* H */
    int n_rows;
    float *rows; /* [n_rows, H]: every embedding's vectors */
    int hidden2; /* SDXL: the second text encoder's H2; 0: one encoder */
    float *rows2; /* SDXL: [n_rows, H2], the same vectors for the second encoder */
} sdm_embeddings;

/* Reads dir's *.safetensors (in name order). Every file must hold one
 * tensor of width hidden with at most token_length-2 vectors; errors name
 * the file. A missing folder is an error naming it. */
int sdm_embeddings_load(const char *dir, const sdm_tokenizer *tok, int hidden, sdm_embeddings *out, sdm_error *err);
/* The same for a model with two text encoders (SDXL, hidden2 > 0): every
 * file holds a tensor per encoder, "clip_l" [n, hidden] and "clip_g" [n,
 * hidden2], as A1111's SDXL embeddings do. */
int sdm_embeddings_load2(const char *dir, const sdm_tokenizer *tok, int hidden, int hidden2, sdm_embeddings *out,
                         sdm_error *err);
/* One file's vectors into out (name: its file name without .safetensors). */
int sdm_embeddings_add_file(sdm_embeddings *e, const char *path, const char *name, const sdm_tokenizer *tok,
                            sdm_error *err);
void sdm_embeddings_free(sdm_embeddings *e);

#endif
