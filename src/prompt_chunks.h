/* A prompt as the text encoder reads it, the way A1111 cuts it
 * (sd_hijack_clip.py's tokenize_line): the parsed runs are tokenized one
 * by one and laid into chunks of token_length-2 (75) tokens, each then
 * framed as bos, tokens, eos, padding (77 ids) and encoded on its own. A
 * chunk that fills up within 20 tokens of a comma moves the words after
 * the comma to the next chunk; BREAK starts a new chunk; textual-inversion
 * embeddings, found by the token ids of their names, take as many places
 * as they have vectors and never straddle two chunks. Every place has the
 * weight of its run (bos, eos and padding 1). Pure C; no model needed. */
#ifndef SDM_PROMPT_CHUNKS_H
#define SDM_PROMPT_CHUNKS_H

#include <stdint.h>

#include "error.h"
#include "tokenizer.h"

/* A1111's comma_padding_backtrack default. */
#define SDM_COMMA_BACKTRACK 20
/* Chunks of one prompt at most (75 tokens each): far more than a prompt
 * ever has; a text past it is a mistake, refused. */
#define SDM_MAX_CHUNKS 64

/* A textual-inversion embedding as the chunker sees it: its name's token
 * ids (found in a run's tokens, as A1111's embedding database does) and
 * where its vectors are in the caller's table. */
typedef struct {
    const char *name;
    const int64_t *name_ids;
    int n_name_ids;
    int n_vectors;
    int first_row;
} sdm_prompt_embedding;

typedef struct {
    int n_chunks;
    int length; /* ids per chunk: token_length (77) */
    int64_t *ids; /* [n_chunks * length]; 0 where a vector goes */
    float *weights; /* [n_chunks * length] */
    int *vec; /* [n_chunks * length]: -1, or the row of the
                               embeddings' table whose vector goes here */
    int n_tokens; /* A1111's token count: places used, last
                               chunk's padding not counted */
    int invalid_utf8; /* bytes read as U+FFFD */
    int weighted; /* 1 where some weight is not 1 */
} sdm_prompt_chunks;

/* Parses text (parse_weights: A1111's syntax; 0: the text as it is, weight
 * 1, no BREAK, as A1111's emphasis "None") and chunks it. embs may be NULL
 * (n_embs 0). Errors (SDM_EXIT_USAGE): a weight that is not a number, a
 * prompt of more than SDM_MAX_CHUNKS chunks; out of memory. */
int sdm_prompt_chunks_make(const sdm_tokenizer *tok, const char *text, int parse_weights,
                           const sdm_prompt_embedding *embs, int n_embs, sdm_prompt_chunks *out, sdm_error *err);
/* Appends chunks of the empty prompt (bos, eos, padding; weight 1) up to
 * n chunks, as A1111 pads a batch's shorter prompts; 0, or -1 out of memory. */
int sdm_prompt_chunks_pad(sdm_prompt_chunks *c, const sdm_tokenizer *tok, int n);
void sdm_prompt_chunks_clear(sdm_prompt_chunks *c);

#endif
