/* The sidecar: the plan as JSON beside the output (sdm_plan_write_json),
 * every shown frame's parameters, so a user can find the frame they liked
 * and re-render it alone (`--frames K`) at more steps. */
#ifndef SDM_SIDECAR_H
#define SDM_SIDECAR_H

#include <stddef.h>

#include "plan.h"
#include "recipe.h"

/* Writes path atomically (temporary file beside it, then rename). */
int sdm_sidecar_write(const char *path, const sdm_recipe *r, const sdm_plan *p, sdm_error *err);

/* "out/x.mp4" → "out/x.json" (ext without the dot). */
void sdm_path_with_ext(const char *path, const char *ext, char *buf, size_t len);

#endif
