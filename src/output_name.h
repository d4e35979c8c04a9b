/* Output file names: which formats sdmorph writes and the extension that
 * names each. No FFmpeg here, so the recipe checks its outputs against the
 * same table the sink opens its formats from, without linking an encoder. */
#ifndef SDM_OUTPUT_NAME_H
#define SDM_OUTPUT_NAME_H

#include "error.h"

/* Outputs one render writes, besides a contact sheet. */
#define SDM_MAX_OUTPUTS 16

typedef enum {
    SDM_OUTPUT_MP4,
    SDM_OUTPUT_GIF,
    SDM_OUTPUT_RAW, /* raw RGB24 frames */
    SDM_OUTPUT_SHEET, /* the PNG contact sheet */
    SDM_OUTPUT_STILL, /* a PNG of one frame (the render writes those, not the sink) */
    SDM_OUTPUT_COUNT
} sdm_output_kind;

/* The last component of path ("" for "out/"). */
const char *sdm_output_base_name(const char *path);
/* The extension of path's file name (".mp4"), or NULL if it has none
 * (".mp4" alone is a name without one). */
const char *sdm_output_extension(const char *path);
/* The format path's extension names (case-insensitive): a video format, or
 * with sheet != 0 the contact sheet; -1 if none. */
int sdm_output_kind_of(const char *path, int sheet);
/* 0 if path names a file in a format we write, else an SDM_EXIT_USAGE
 * error naming it and the extensions to use. Call before rendering. */
int sdm_output_check(const char *path, int sheet, sdm_error *err);

#endif
