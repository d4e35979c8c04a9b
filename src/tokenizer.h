/* CLIP's byte-level BPE tokenizer, reading a bundle's vocab.json and
 * merges.txt (Hugging Face format), token for token what transformers'
 * CLIPTokenizer gives for the same files. */
#ifndef SDM_TOKENIZER_H
#define SDM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct sdm_tokenizer sdm_tokenizer;

typedef struct {
    int token_length; /* ids per prompt, bos and eos included (77) */
    int pad_id; /* SD 1.x pads with eos (49407), SD 2.x with 0;
                           -1: use eos */
    int bos_id, eos_id; /* the ids the model expects for <|startoftext|> and
                           <|endoftext|> (model.yaml); loading fails if
                           vocab.json disagrees. -1: not checked */
} sdm_tokenizer_params;

sdm_tokenizer_params sdm_tokenizer_default_params(void);

typedef struct {
    int n_tokens; /* tokens the text made, bos/eos not counted */
    int n_dropped; /* of those, cut by truncation */
    int invalid_utf8; /* bytes that were not valid UTF-8 (replaced by U+FFFD) */
    int dropped_at; /* byte offset in the text where the dropped part starts, -1 if none */
} sdm_tokenize_info;

/* Loads the two files; errors name the file (and line for merges.txt). */
int sdm_tokenizer_load(const char *vocab_json, const char *merges_txt, sdm_tokenizer_params params, sdm_tokenizer **out,
                       sdm_error *err);
/* Writes exactly token_length ids: bos, tokens (truncated so eos stays
 * last), eos, padding. info may be NULL. Never fails on any byte string:
 * invalid UTF-8 is replaced by U+FFFD (one per maximal ill-formed subpart,
 * as Python's bytes.decode(errors="replace")) and counted in info.
 * The tokenizer is only read: threads may encode with one at once. */
void sdm_tokenizer_encode(const sdm_tokenizer *tok, const char *text, int64_t *ids, sdm_tokenize_info *info);
/* All the tokens of a text, bos/eos not added and nothing cut (A1111
 * tokenizes each piece of a prompt so, then chunks them): *ids is
 * malloc'd (NULL for none), *n its length. -1 only out of memory. */
int sdm_tokenizer_tokens(const sdm_tokenizer *tok, const char *text, int64_t **ids, int *n, int *invalid_utf8);
/* The id of a vocabulary entry (",</w>"), -1 if there is none. */
int sdm_tokenizer_find(const sdm_tokenizer *tok, const char *piece);
/* The vocabulary entry of an id ("city</w>"), NULL if out of range. */
const char *sdm_tokenizer_piece(const sdm_tokenizer *tok, int64_t id);
int sdm_tokenizer_token_length(const sdm_tokenizer *tok);
int sdm_tokenizer_bos_id(const sdm_tokenizer *tok);
int sdm_tokenizer_eos_id(const sdm_tokenizer *tok);
int sdm_tokenizer_pad_id(const sdm_tokenizer *tok);
void sdm_tokenizer_free(sdm_tokenizer **tok);

#endif
