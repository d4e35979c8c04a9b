/* The files a render writes: its videos (the recipe's outputs, or the
 * command line's -o files instead of them and of the contact sheet), the
 * contact sheet, and a sidecar JSON beside each (out/x.mp4 → out/x.json;
 * files that differ only in their extension share theirs). With --frames,
 * each name says which frames (out/x.frames-0-9_20.mp4), so a re-render of
 * a few frames never replaces the full render or its sheet.
 *
 * A .png output is a still: the one frame shown (`--frames 37 -o pick.png`),
 * or one PNG per frame shown, named with the frame's number: where the name
 * has a %d (or %04d) there, else before its extension (pick-37.png).
 *
 * sdm_outputs_make decides all of it before any model loads, for `check`
 * and `render` alike, and refuses: a path or name longer than the system
 * allows, an output that is a folder, or whose folder is not there and
 * cannot be made in the nearest folder that is (sdm_outputs_open makes
 * it), more than SDM_MAX_STILLS stills, two outputs that are one file (compared in normal form,
 * paths.h), and an output, sidecar or .partial name that is one of the
 * render's inputs (the recipe, the model's files). The files are then
 * written as one file set (fileset.h): all in place, or none. */
#ifndef SDM_OUTPUTS_H
#define SDM_OUTPUTS_H

#include "fileset.h"
#include "plan.h"
#include "recipe.h"
#include "segment.h"
#include "sidecar.h"

typedef enum { SDM_OUT_VIDEO, SDM_OUT_SHEET, SDM_OUT_STILL, SDM_OUT_SIDECAR } sdm_out_kind;

/* PNG stills one render writes, at most. */
#define SDM_MAX_STILLS 100

typedef struct {
    char *path; /* where it is written */
    char *norm; /* its normal form, for comparisons */
    sdm_out_kind kind;
    int of; /* a sidecar: the file (index) it was first made for */
    int frame; /* a still: the output frame (of the plan as selected) it shows */
} sdm_out_file;

typedef struct {
    sdm_out_file *files; /* the videos, then the sheet, then the sidecars */
    int n, n_videos;
    const char **videos; /* the n_videos paths (for sdm_sink_open) */
    const char *sheet; /* the contact sheet's path, NULL if none */
    int has_segment; /* a shard: the one video is a segment's frames, its sidecar the manifest */
    sdm_segment_info segment;
    int first_still, n_stills; /* files[first_still ...] are the stills */
} sdm_outputs;

/* A file the render reads, and what it is, for messages ("the recipe"). */
typedef struct {
    const char *path;
    const char *what;
} sdm_input;

typedef struct {
    const char *const *outputs; /* -o: instead of the recipe's outputs and its contact sheet */
    int n_outputs;
    const char *frames; /* --frames LIST, NULL for all */
    const sdm_input *inputs; /* the files the render reads */
    int n_inputs;
    const sdm_plan *plan; /* the frames shown (stills are named after them) */
} sdm_outputs_request;

int sdm_outputs_make(const sdm_recipe *r, const sdm_outputs_request *q, sdm_outputs *out, sdm_error *err);
void sdm_outputs_free(sdm_outputs *o);

/* What every output records of its making (MP4 comment, PNG text): the same
 * for a render and for the join of its shards, so their files are equal. */
void sdm_outputs_comment(char *buf, size_t len, const char *recipe_path, const char *recipe_fp, const char *model_dir,
                         const char *model_fp);

/* Starts the file set of every output: their temporary files are made now,
 * so a folder that cannot be written fails here, before the model loads. */
int sdm_outputs_open(const sdm_outputs *o, sdm_fileset **out, sdm_error *err);
/* Writes every sidecar's temporary file (the plan as JSON and what the
 * render used, sidecar.h); a segment's manifest instead (segment.h), which
 * keeps used->texts (the prompts' chunks and weights) for the join. */
int sdm_outputs_write_sidecars(const sdm_outputs *o, sdm_fileset *fs, const sdm_recipe *r, const sdm_plan *plan,
                               const sdm_sidecar_used *used, sdm_error *err);
/* Leaves the sidecars out of the commit (an interrupted render: they would
 * describe frames the .partial files lack). */
void sdm_outputs_skip_sidecars(const sdm_outputs *o, sdm_fileset *fs);
/* Once the sink finished: writes the sidecars (none with partial != 0) and
 * commits the whole set, onto the .partial names with partial != 0. */
int sdm_outputs_commit(const sdm_outputs *o, sdm_fileset *fs, const sdm_recipe *r, const sdm_plan *plan,
                       const sdm_sidecar_used *used, int partial, sdm_error *err);

/* The stills of a render, each PNG encoded and written on worker threads
 * (workpool.h; SIGINT, SIGTERM and SIGHUP blocked in them) into its
 * temporary file, off the caller's thread: put() copies the frame and
 * returns unless a few frames wait already. */
typedef struct sdm_stills sdm_stills;

/* *out NULL (and 0) where o has no stills. comment is copied. */
int sdm_stills_open(const sdm_outputs *o, sdm_fileset *fs, int width, int height, const char *comment, sdm_stills **out,
                    sdm_error *err);
/* Output frame `shown` (of the plan as selected) is rgb: its stills. */
int sdm_stills_put(sdm_stills *st, int shown, const uint8_t *rgb, sdm_error *err);
/* Waits for every still put; the first failure. NULL-safe. */
int sdm_stills_finish(sdm_stills *st, sdm_error *err);
void sdm_stills_free(sdm_stills **st);

#endif
