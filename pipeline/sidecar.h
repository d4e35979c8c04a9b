/* The sidecar: a JSON file beside the output listing every shown frame's
 * parameters, so a user can find the frame they liked and re-render it
 * alone (`--frames K`) at more steps. */
#ifndef SDM_SIDECAR_H
#define SDM_SIDECAR_H

#include "plan.h"
#include "recipe.h"

typedef struct {
    const char *model_dir;
    const char *recipe_hash;
    int width, height;
    const int *shown_index;     /* original index of each shown frame (after --frames) */
} sdm_sidecar_info;

/* Writes path atomically (temporary file, then rename). */
int sdm_sidecar_write(const char *path, const sdm_recipe *r, const sdm_plan *p,
                      const sdm_sidecar_info *info, sdm_error *err);

/* "out/x.mp4" → "out/x.json" (ext without the dot). */
void sdm_path_with_ext(const char *path, const char *ext, char *buf, size_t len);

#endif
