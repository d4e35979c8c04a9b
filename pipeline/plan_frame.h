/* One planned frame: what the planner makes and the de-duplication key
 * (inputs.h) reads. A header of its own so that inputs.h needs no plan.h:
 * the planner uses the key, the key does not use the planner. */
#ifndef SDM_PLAN_FRAME_H
#define SDM_PLAN_FRAME_H

#include "recipe.h"

/* One frame to render. Its conditioning is a mix of keyframes key_a and
 * key_b with weight t (already eased), or walk frame walk_k. */
typedef struct {
    int key_a, key_b; /* keyframe indices; equal for a keyframe itself */
    double t; /* eased weight of key_b in [0,1] */
    sdm_interp interp; /* how embeddings (and negatives) are mixed */
    double seed_t; /* weight of key_b's noise (seed morph); = t */
    double guidance; /* lerped between the keyframes' guidance */
    int walk_k; /* walk frame index, -1 if not a walk */
} sdm_plan_frame;

#endif
