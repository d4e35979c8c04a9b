/* A bridge between two scenes: the transition from recipe A's first frame
 * to recipe B's first frame, so a loop can cut to the next without a jump.
 * Both ends are those keyframes as their own recipes render them (prompt,
 * negative, seed, guidance), so the bridge starts and ends on exactly
 * those frames where A and B render alike: the same model, size and
 * sampler settings, which the caller and sdm_bridge_recipe check. */
#ifndef SDM_BRIDGE_H
#define SDM_BRIDGE_H

#include "recipe.h"

/* The bridge's recipe: A's settings and A's first keyframe (its interp,
 * ease and retime for the transition), then B's first keyframe; `frames`
 * frames, or with beats > 0 that many beats at A's bpm (else B's); loop
 * none, no outputs of its own (the caller names them). Refused (usage):
 * a walk, different sizes or sampler settings, beats with no bpm in
 * either recipe, frames outside 1..100000. */
int sdm_bridge_recipe(const sdm_recipe *a, const sdm_recipe *b, int frames, double beats, sdm_recipe **out,
                      sdm_error *err);

#endif
