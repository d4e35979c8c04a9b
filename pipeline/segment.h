/* A shard's segment: the frames of its renders, one each in render order,
 * as raw RGB24 (NAME.rgb: lossless and exact, no codec between a render
 * and the join, and read back a frame at a time at a known offset), and a
 * manifest beside it (NAME.json) saying what they are: the recipe's and
 * the model's fingerprints, which renders of how many, the frame size, and
 * the sidecar of those renders (the plan as JSON, sidecar.h). Written with
 * a render's file set (outputs.h), so the frames and their manifest appear
 * together or not at all; `sdmorph join` reads them (join.h). */
#ifndef SDM_SEGMENT_H
#define SDM_SEGMENT_H

#include <stddef.h>

#include "plan.h"
#include "recipe.h"
#include "sidecar.h"

#define SDM_SEGMENT_PATH_MAX 4096
/* A manifest's size at most: its sidecar is some 400 bytes a render. */
#define SDM_SEGMENT_MANIFEST_MAX (256 << 20)

typedef struct {
    int index, count; /* shard I of N */
    int first, n; /* renders [first, first+n) ... */
    int n_total; /* ... of the recipe's n_total */
    int width, height;
    char recipe_fp[24]; /* sdm_file_fingerprint of the recipe */
    char model_fp[24]; /* sdm_bundle_fingerprint of the model */
    char model_dir[SDM_SEGMENT_PATH_MAX]; /* as the render named it (the outputs' comment) */
    char frames[SDM_SEGMENT_PATH_MAX]; /* the .rgb, as read: beside the manifest */
    char *texts; /* as read: the render's texts JSON (NULL: none); sdm_segment_clear */
    /* what the shard's render used, for the join's sidecar (as read; empty
     * or 0 where a manifest of an earlier version lacks them) */
    char device[64], dtype[16], vae_dtype[16], sampler_auto[48];
    int batch, has_time_ids;
    float time_ids[6];
} sdm_segment_info;

/* Writes the manifest into path (a temporary file of the set); target is
 * where it goes (messages) and names the frames file beside it. plan is
 * the shard's plan (sdm_plan_keep_renders); of what the render used (or
 * NULL), the texts (the prompts' chunks and weights as JSON) are kept as
 * they are for the join's sidecars, with its device, dtypes, batch and
 * SDXL's time ids. */
int sdm_segment_write(const char *path, const char *target, const sdm_segment_info *info, const sdm_recipe *r,
                      const sdm_plan *plan, const sdm_sidecar_used *used, sdm_error *err);
/* Reads a manifest (or, given NAME.rgb, the NAME.json beside it); errors
 * name the file and the field. */
int sdm_segment_read(const char *path, sdm_segment_info *out, sdm_error *err);
/* A manifest's text (len bytes) as read from path (which names the frames
 * file's folder and the messages). */
int sdm_segment_parse(const char *text, size_t len, const char *path, sdm_segment_info *out, sdm_error *err);
/* Frees what a read allocated (the texts). */
void sdm_segment_clear(sdm_segment_info *s);

#endif
