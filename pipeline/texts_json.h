/* The recipe's texts as the text encoder read them, for the sidecar: per
 * distinct prompt and negative, its chunks' token ids and A1111 weights,
 * so a user can see where a long prompt was cut and what each weight was. */
#ifndef SDM_TEXTS_JSON_H
#define SDM_TEXTS_JSON_H

#include "inputs.h"
#include "recipe.h"
#include "text_encoder.h"

/* *out: a malloc'd JSON array (one line), e.g.
 *   [{"keyframe": 0, "part": "prompt", "clip_skip": 1, "tokens": 83,
 *     "chunks": [{"ids": [49406, ...], "weights": [1, 1.1, ...]}, ...]}, ...] */
int sdm_texts_json(const sdm_text_encoder *te, const sdm_recipe *r, const sdm_text_ids *ids, char **out,
                   sdm_error *err);

#endif
