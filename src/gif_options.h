/* How a GIF chooses its colours: the recipe's gif_palette and gif_dither
 * keys, and the sink's settings (encoders/gif.c says what each costs). */
#ifndef SDM_GIF_OPTIONS_H
#define SDM_GIF_OPTIONS_H

#include "enum_table.h"

typedef enum {
    SDM_GIF_PALETTE_STREAM, /* one palette for the whole GIF, unchanged pixels transparent:
                             * frames spooled to a file beside it (default) */
    SDM_GIF_PALETTE_FRAME, /* a palette per frame: one pass, memory of a few frames */
    SDM_GIF_PALETTE_COUNT
} sdm_gif_palette;

typedef enum {
    SDM_GIF_DITHER_BAYER, /* ordered: stable from frame to frame (default) */
    SDM_GIF_DITHER_SIERRA2_4A, /* error diffusion: finer, but its noise crawls between frames */
    SDM_GIF_DITHER_FLOYD_STEINBERG,
    SDM_GIF_DITHER_NONE,
    SDM_GIF_DITHER_COUNT
} sdm_gif_dither;

#define SDM_GIF_PALETTE_DEFAULT SDM_GIF_PALETTE_STREAM
#define SDM_GIF_DITHER_DEFAULT SDM_GIF_DITHER_BAYER

/* The names (for the recipe's loader and its messages). */
extern const sdm_enum_table sdm_gif_palette_names, sdm_gif_dither_names;

const char *sdm_gif_palette_name(sdm_gif_palette v);
int sdm_gif_palette_from_str(const char *s, sdm_gif_palette *out); /* 0, or -1 if unknown */
const char *sdm_gif_dither_name(sdm_gif_dither v);
int sdm_gif_dither_from_str(const char *s, sdm_gif_dither *out); /* 0, or -1 if unknown */

#endif
