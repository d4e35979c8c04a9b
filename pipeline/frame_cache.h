/* Frames shown more than once (pingpong's way back, holds, repeated
 * keyframes) are rendered once and kept until their last showing: as RGB
 * images on the host while those fit a memory budget, beyond it as their
 * final latents (a twelfth of the size at SD's scale), which the render
 * decodes again when they are shown. Each is let go at its last showing,
 * so what is kept is only what is still to come. */
#ifndef SDM_FRAME_CACHE_H
#define SDM_FRAME_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "torch_api.h"

typedef struct sdm_frame_cache sdm_frame_cache;

/* For renders 0..n_renders-1 shown in the order `sequence` (n_sequence
 * render indices, each < n_renders), frames of frame_bytes, and up to
 * rgb_budget bytes of images. */
int sdm_frame_cache_new(const int *sequence, int n_sequence, int n_renders, size_t frame_bytes, size_t rgb_budget,
                        sdm_frame_cache **out, sdm_error *err);

/* Keeps render r for its showings still to come (none: nothing kept; kept
 * already: nothing changes): a copy of rgb while the images fit the
 * budget, else row `row` of latents [n,C,h,w]. */
int sdm_frame_cache_keep(sdm_frame_cache *c, int r, const uint8_t *rgb, const sdm_tensor *latents, int row,
                         sdm_error *err);
/* Render r was shown once more; at its last showing its frame is let go. */
void sdm_frame_cache_shown(sdm_frame_cache *c, int r);

/* Render r's kept image, or NULL. */
const uint8_t *sdm_frame_cache_rgb(const sdm_frame_cache *c, int r);
/* Render r's kept latent [1,C,h,w] (the cache's; NULL if none). */
sdm_tensor *sdm_frame_cache_latent(const sdm_frame_cache *c, int r);
/* Showings of render r still to come. */
int sdm_frame_cache_remaining(const sdm_frame_cache *c, int r);
/* Bytes of images kept now (never more than the budget). */
size_t sdm_frame_cache_rgb_bytes(const sdm_frame_cache *c);

void sdm_frame_cache_free(sdm_frame_cache **c);

#endif
