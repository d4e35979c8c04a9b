/* The text side of the model: a prompt → its embedding [1, chunks·77, H],
 * as A1111 makes it. The prompt is chunked (prompt_chunks.h); each chunk
 * is encoded on its own; A1111's weights scale each token's row and the
 * chunk is then scaled back to its original mean; the chunks are joined
 * along the token axis.
 *
 * Two kinds of bundle. Bundles from export_sd.py 3 on (model.yaml's
 * text.layers, files.token_embedding) compute token embeddings here: the
 * token table is a tensor (token_embedding.safetensors) and the encoder
 * takes inputs_embeds [B,77,H], returning every layer's hidden state after
 * the final layer norm [layers,B,77,H]; so clip skip (A1111's: the state
 * clip_skip-1 layers before the last, then the final norm) and
 * textual-inversion embeddings (rows from embedding files in place of
 * tokens) work. Older bundles take ids and give the last layer only: they
 * take neither, and say how to export again.
 *
 * SDXL bundles (text_2: in model.yaml) have a second encoder: each chunk
 * goes through both (the second reads the same tokens, padded with its own
 * pad id), their hidden states side by side [L, H1+H2]; and the second's
 * projected output at the first chunk's end of text is the pooled
 * embedding [1, P]. Both read the hidden state before the last layer
 * (text.penultimate), as diffusers' SDXL pipeline does; an embedding's
 * vectors go into each encoder's places from its own tensor (clip_l,
 * clip_g: embeddings.h). */
#ifndef SDM_TEXT_ENCODER_H
#define SDM_TEXT_ENCODER_H

#include "bundle.h"
#include "embeddings.h"
#include "prompt_chunks.h"
#include "tokenizer.h"
#include "torch_api.h"

typedef struct sdm_text_encoder sdm_text_encoder;

typedef struct {
    int parse_weights; /* A1111's (word:1.3) syntax and BREAK; 0: text as it is */
    int clip_skip; /* 1: the last layer (0 reads as 1) */
    int min_chunks; /* pad with empty-prompt chunks up to this many */
} sdm_text_opts;

/* Loads the modules (and the token tables) and probes them on the empty prompt. */
int sdm_text_encoder_open(const sdm_bundle *b, const sdm_tokenizer *tok, sdm_device dev, sdm_dtype dtype,
                          sdm_text_encoder **out, sdm_error *err);
/* Layers clip_skip may count back over: text.layers, or 1 for a bundle
 * whose encoder gives the last layer only. */
int sdm_text_encoder_layers(const sdm_text_encoder *te);
/* Textual-inversion embeddings from a folder (embeddings.h), used from now
 * on; a bundle whose encoder takes ids refuses them. */
int sdm_text_encoder_use_embeddings(sdm_text_encoder *te, const char *dir, sdm_error *err);
const sdm_embeddings *sdm_text_encoder_embeddings(const sdm_text_encoder *te);

/* The chunks a prompt becomes (with the loaded embeddings). */
int sdm_text_encoder_chunks(const sdm_text_encoder *te, const char *prompt, int parse_weights, sdm_prompt_chunks *out,
                            sdm_error *err);
/* A new [1, chunks·token_length, W] float32 tensor: the prompt encoded
 * (W: hidden_size, or both encoders' for SDXL). */
int sdm_text_encoder_run(sdm_text_encoder *te, const char *prompt, const sdm_text_opts *o, sdm_tensor **out,
                         sdm_error *err);
/* The same, and the pooled embedding [1, P] (float32) where the bundle has
 * one (SDXL); *pooled NULL where not. pooled may be NULL. */
int sdm_text_encoder_run_pooled(sdm_text_encoder *te, const char *prompt, const sdm_text_opts *o, sdm_tensor **out,
                                sdm_tensor **pooled, sdm_error *err);
/* The same, cached: owned by the encoder. */
int sdm_text_encoder_embed_pooled(sdm_text_encoder *te, const char *prompt, const sdm_text_opts *o,
                                  const sdm_tensor **out, const sdm_tensor **pooled, sdm_error *err);
int sdm_text_encoder_embed(sdm_text_encoder *te, const char *prompt, const sdm_text_opts *o, const sdm_tensor **out,
                           sdm_error *err);
/* Lets the modules go, and the memory they hold (SDXL's two take 1.6 GiB
 * in float16): a render encodes its texts first and then needs none. The
 * cache stays; a prompt not in it loads the modules again, from the files
 * model.yaml names, and encodes it as before, bit for bit. */
void sdm_text_encoder_release(sdm_text_encoder *te);
/* 1 where the modules are loaded (open, or since a prompt needed them). */
int sdm_text_encoder_loaded(const sdm_text_encoder *te);
void sdm_text_encoder_free(sdm_text_encoder **te);

#endif
