/* The effective inputs of a planned frame, in one canonical form: which
 * texts and seeds its conditioning mixes, with what weight and how, and its
 * guidance. The planner merges frames whose forms are equal; the
 * conditioner computes a frame from its form alone. So the two cannot
 * disagree about which frames are the same picture. */
#ifndef SDM_INPUTS_H
#define SDM_INPUTS_H

#include <stdint.h>

#include "plan_frame.h"
#include "recipe.h"

/* One mix: input a alone (b == a, t == 0, how LERP), or a and b mixed with
 * weight t of b, 0 < t < 1. An input is a text id or a seed: equal ids,
 * equal inputs. */
typedef struct {
    uint64_t a, b;
    double t;
    sdm_interp how;
} sdm_mix;

/* "a and b mixed with weight t of b", canonically: a alone when they are
 * the same input or t <= 0 (NaN too), b alone when t >= 1. */
sdm_mix sdm_mix_of(uint64_t a, uint64_t b, double t, sdm_interp how);

/* A keyframe's text id: the index of the first keyframe with the same
 * prompt (negative) read at the same clip_skip, so keyframes[id].prompt
 * and keyframes[id].clip_skip are the text itself. */
typedef struct {
    int *prompt, *negative; /* [n_keyframes] */
    int *image; /* [n_keyframes]: the first keyframe with the same picture and fit; -1: none */
} sdm_text_ids;

/* 0, or -1 out of memory (then free it anyway). */
int sdm_text_ids_make(const sdm_recipe *r, sdm_text_ids *out);
void sdm_text_ids_free(sdm_text_ids *ids);

typedef struct {
    sdm_mix text, negative; /* of text ids */
    sdm_mix noise; /* of seeds: the initial noise and every step's */
    double guidance;
    int walk_k; /* -1, or the walk frame: its text mix is the
                                   walk's start, drifted k steps */
    /* image-to-image: the pictures' latents mixed (ids of sdm_text_ids.image;
     * SDM_NO_IMAGE on one side: that picture fades out, lerped toward zero),
     * and the strength, lerped as the prompts are (1 on a side without a
     * picture). image.a == SDM_NO_IMAGE: from noise, strength 0. */
    sdm_mix image;
    double strength;
} sdm_frame_inputs;

#define SDM_NO_IMAGE UINT64_MAX

sdm_frame_inputs sdm_frame_inputs_of(const sdm_recipe *r, const sdm_text_ids *ids, const sdm_plan_frame *f);
/* Equal forms, equal pictures. The hash agrees with the equality. */
int sdm_frame_inputs_equal(const sdm_frame_inputs *x, const sdm_frame_inputs *y);
uint64_t sdm_frame_inputs_hash(const sdm_frame_inputs *in);

#endif
