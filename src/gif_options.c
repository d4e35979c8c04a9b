#include "gif_options.h"

static const sdm_enum_entry gif_palette_entries[] = { { "stream", SDM_GIF_PALETTE_STREAM },
                                                      { "frame", SDM_GIF_PALETTE_FRAME } };
static const sdm_enum_entry gif_dither_entries[] = { { "bayer", SDM_GIF_DITHER_BAYER },
                                                     { "sierra2_4a", SDM_GIF_DITHER_SIERRA2_4A },
                                                     { "floyd_steinberg", SDM_GIF_DITHER_FLOYD_STEINBERG },
                                                     { "none", SDM_GIF_DITHER_NONE } };
const sdm_enum_table sdm_gif_palette_names = SDM_ENUM_TABLE(gif_palette_entries);
const sdm_enum_table sdm_gif_dither_names = SDM_ENUM_TABLE(gif_dither_entries);

SDM_ENUM_FUNCTIONS(sdm_gif_palette, sdm_gif_palette_names) /* sdm_gif_palette_name, sdm_gif_palette_from_str */
SDM_ENUM_FUNCTIONS(sdm_gif_dither, sdm_gif_dither_names) /* sdm_gif_dither_name, sdm_gif_dither_from_str */
