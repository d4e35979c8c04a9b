/* A1111's prompt syntax: "(word:1.3)", "(word)" ×1.1, "[word]" ÷1.1,
 * nesting, "\(" escapes and "BREAK", read into runs of text with one
 * weight each, exactly as stable-diffusion-webui's parse_prompt_attention
 * does (unbalanced brackets included: an unclosed "(" still weighs all
 * that follows it, an unopened ")" is text). The runs then become chunks
 * of token ids for the text encoder (prompt_chunks.h, in A1111's way of
 * cutting long prompts). Pure C; no model needed. */
#ifndef SDM_PROMPT_H
#define SDM_PROMPT_H

#include <stdint.h>

#include "error.h"
#include "tokenizer.h"

/* Prompts longer than this are refused: the bracket arithmetic is
 * quadratic in the number of runs (as A1111's). */
#define SDM_PROMPT_MAX_BYTES 65536

typedef struct {
    char *text;
    double weight; /* a BREAK marker has weight -1 */
} sdm_prompt_run;

typedef struct {
    sdm_prompt_run *runs;
    int n;
} sdm_prompt_runs;

/* Parses text into runs (never zero: an empty prompt is one empty run of
 * weight 1). Errors (SDM_EXIT_USAGE): a weight that is not a number
 * ("(a:1.2.3)", where A1111 raises), a prompt over SDM_PROMPT_MAX_BYTES,
 * out of memory. */
int sdm_prompt_parse(const char *text, sdm_prompt_runs *out, sdm_error *err);
/* A run that is A1111's BREAK marker (text "BREAK", weight exactly -1). */
int sdm_prompt_run_is_break(const sdm_prompt_run *r);
void sdm_prompt_runs_clear(sdm_prompt_runs *runs);

#endif
