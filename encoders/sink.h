/* Where frames go: one interface over every output format. The pipeline
 * pushes RGB frames in display order; a bounded queue hands them to one
 * encoder thread per output (MP4/H.264, GIF, PNG contact sheet), so
 * rendering never waits on encoding unless the queue is full. Each file is
 * written beside its target under a temporary name (a file set, fileset.h)
 * and renamed at the end, so a failed render never replaces an earlier
 * good file; a caller that writes more files with them (the render's
 * sidecars) gives its own set and commits it when all are written.
 *
 * Call push/finish/free from one thread (the render loop's). The encoder
 * threads block SIGINT, SIGTERM and SIGHUP, so those reach the caller's thread. */
#ifndef SDM_SINK_H
#define SDM_SINK_H

#include <stdint.h>

#include "error.h"
#include "fileset.h"
#include "gif_options.h" /* sdm_gif_palette, sdm_gif_dither */
#include "output_name.h" /* which names the sink writes: sdm_output_check */


typedef struct sdm_sink sdm_sink;

typedef struct {
    int width, height; /* of every frame (512x512); MP4 needs them even */
    double fps; /* (24); GIF at most 50 */
    int crf; /* H.264 quality (18) */
    const char *preset; /* x264 preset ("medium") */
    int queue_frames; /* frames the queue holds before push blocks (8) */
    const char *comment; /* stored in the files' metadata (recipe/bundle hash, version): MP4
                             * "comment", PNG text chunk; FFmpeg's GIF muxer has none. May be NULL */
    int total_frames; /* frames that will be pushed (contact sheet layout); 0 if unknown */
    sdm_gif_palette gif_palette; /* SDM_GIF_PALETTE_DEFAULT */
    sdm_gif_dither gif_dither; /* SDM_GIF_DITHER_DEFAULT */
    int threads; /* workers for the GIF's palettes and dithering, frames in
                             * flight on all of them (0: one per CPU, at most 8; 1: on
                             * the GIF's own thread). The bytes written do not depend on it */
    sdm_fileset *files; /* the set the files join (targets already in it keep their
                             * temporary file); the caller commits it. NULL: the sink
                             * makes its own and commits it in finish */
} sdm_sink_params;

sdm_sink_params sdm_sink_default_params(void);

/* 0 if the path's extension names a format we write (.mp4, .gif; .png for a
 * contact sheet when sheet != 0), else an error naming it. Call before rendering. */
int sdm_sink_check_path(const char *path, int sheet, sdm_error *err);

/* Everything sdm_sink_open refuses about the outputs and settings, without
 * touching a file: the number of outputs, their names and formats, each
 * format's limits (GIF: 0.0015259 to 50 fps; MP4: an even size). Runs
 * before any model loads (`sdmorph check` too). */
int sdm_sink_check(const char *const *outputs, int n_outputs, const char *contact_sheet, const sdm_sink_params *p,
                   sdm_error *err);

/* Checks (as sdm_sink_check) and opens every output (temporary files beside
 * the targets), so a bad path or setting fails here, before rendering.
 * contact_sheet may be NULL; n_outputs may be 0 if it is not. */
int sdm_sink_open(const char *const *outputs, int n_outputs, const char *contact_sheet, const sdm_sink_params *p,
                  sdm_sink **out, sdm_error *err);
/* Queues one frame (width*height*3 bytes, RGB24, copied). Blocks while the
 * queue is full. Fails if an encoder failed (disk full...): the error says why. */
int sdm_sink_push(sdm_sink *s, const uint8_t *rgb, sdm_error *err);
/* Seconds push() spent waiting for a free slot (an encoder behind) so far. */
double sdm_sink_blocked_seconds(const sdm_sink *s);
/* No more frames: the encoders go on to finish their files (the GIF's
 * second pass, x264's lookahead) while the caller does other work; push
 * fails from now on. finish() waits for them. */
void sdm_sink_close(sdm_sink *s);
/* Drains the queue and finishes every file; with the sink's own file set,
 * commits it: renames every file onto its target, or with partial != 0
 * (interrupted render) onto a ".partial" name ("out/x.partial.mp4"), so it
 * is not mistaken for the full one (with p.files the caller commits).
 * Fails, writing nothing, if no frame was pushed or an encoder failed; then
 * every temporary file is removed and the targets are left as they were. */
int sdm_sink_finish(sdm_sink *s, int partial, sdm_error *err);
/* After a successful finish: how many outputs (the contact sheet last) and
 * the path each was written to (the ".partial" name after a partial finish;
 * with p.files, once the caller committed the set). */
int sdm_sink_n_outputs(const sdm_sink *s);
const char *sdm_sink_output_path(const sdm_sink *s, int i);
/* Frees; a sink not finished is aborted and its temporary files removed. */
void sdm_sink_free(sdm_sink **s);

#endif
