/* sdmorph join: the outputs of a sharded render made from its segments
 * (segment.h), with no model and no GPU. The segments must come from this
 * recipe and one model and hold every distinct render of its plan exactly
 * once; then every output frame is read from the segment that holds its
 * render (pingpong's way back and holds read a frame again, from whichever
 * segment) and the recipe's outputs are written in one pass, through the
 * render's own sink, sidecars and file set, so they equal a single render's. */
#ifndef SDM_JOIN_H
#define SDM_JOIN_H

#include "outputs.h"
#include "pace.h"
#include "plan.h"
#include "recipe.h"
#include "render_params.h"

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

/* The outputs of a render written from frames made elsewhere: a join's
 * segments, or engines on other threads (devices.h). Output frames are
 * pushed in display order; the writer puts them through the render's sink,
 * stills, pace and sidecars, so its files equal a single render's. */
typedef struct sdm_join_writer sdm_join_writer;

typedef struct {
    const sdm_recipe *r;
    sdm_plan *plan; /* the frames shown; the pace goes into it at the end */
    const sdm_outputs *outs; /* made by sdm_outputs_make; not freed here */
    int width, height;
    const char *recipe_fp, *model_dir, *model_fp; /* what every output records */
    sdm_frame_fn on_frame; /* NULL, or called with every frame pushed */
    sdm_written_fn on_written; /* NULL, or called with every file put in place */
    void *user;
} sdm_join_writer_params;

/* Makes the outputs' temporary files and opens their sink. */
int sdm_join_writer_open(const sdm_join_writer_params *wp, sdm_join_writer **out, sdm_error *err);
/* The next output frame, width*height*3 bytes of RGB. */
int sdm_join_writer_push(sdm_join_writer *w, const uint8_t *rgb, sdm_error *err);
/* Output frames pushed so far. */
int sdm_join_writer_shown(const sdm_join_writer *w);
/* The pace of the frames pushed, once finished (0), or 1 where none was measured. */
int sdm_join_writer_pace(const sdm_join_writer *w, sdm_pace_report *out);
/* Finishes the sink and commits every output with its sidecar (used: what
 * made the frames); partial != 0: the frames pushed, onto .partial names. */
int sdm_join_writer_finish(sdm_join_writer *w, const sdm_sidecar_used *used, int partial, sdm_error *err);
void sdm_join_writer_free(sdm_join_writer **w);

#endif
