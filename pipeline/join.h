/* sdmorph join: the outputs of a sharded render made from its segments
 * (segment.h), with no model and no GPU. The segments must come from this
 * recipe and one model and hold every distinct render of its plan exactly
 * once; then every output frame is read from the segment that holds its
 * render (pingpong's way back and holds read a frame again, from whichever
 * segment) and the recipe's outputs are written in one pass, through the
 * render's own sink, sidecars and file set, so they equal a single render's. */
#ifndef SDM_JOIN_H
#define SDM_JOIN_H

#include "recipe.h"

typedef struct {
    const char *const *segments; /* manifests (NAME.json), or their NAME.rgb */
    int n_segments;
    const char *const *outputs; /* -o: instead of the recipe's outputs and sheet */
    int n_outputs;
} sdm_join_params;

typedef struct {
    int frames_shown, renders;
    double seconds;
} sdm_join_stats;

/* 0, or -1 with err set: a segment missing, repeated or from another
 * recipe or model (the message names the renders and output frames), or a
 * write failure (nothing replaced). */
int sdm_join(const sdm_recipe *r, const sdm_join_params *jp, sdm_join_stats *stats, sdm_error *err);

#endif
