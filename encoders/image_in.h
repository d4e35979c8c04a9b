/* Starting pictures: a PNG, JPEG or WebP file read and brought to the
 * frame size. The header is read first (format and size, no decoding), so a
 * file that is missing, unreadable, not one of these formats, truncated or
 * too large is refused before anything is allocated for its pixels; then
 * libavcodec decodes it and libswscale converts and scales it to RGB24 as
 * `fit` says. Every error names the file and what is wrong with it. */
#ifndef SDM_IMAGE_IN_H
#define SDM_IMAGE_IN_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "image_fit.h"

/* Larger pictures are refused from their header: a side over MAX_SIDE or
 * more than MAX_PIXELS pixels (8192 x 8192), a file over MAX_BYTES. */
#define SDM_IMAGE_MAX_SIDE 16384
#define SDM_IMAGE_MAX_PIXELS (8192LL * 8192LL)
#define SDM_IMAGE_MAX_BYTES (256u << 20)

typedef struct {
    const char *format; /* "PNG", "JPEG", "WebP" */
    int width, height;
} sdm_image_header;

/* The header of a picture in memory: its format and size, checked against
 * the limits, and that the file is whole (a PNG ends with IEND, a JPEG has
 * its end marker). `name` is for messages. SDM_EXIT_USAGE errors. */
int sdm_image_header_read(const uint8_t *data, size_t size, const char *name, sdm_image_header *out, sdm_error *err);
/* The same for a file, read whole (what `sdmorph check` does for each picture). */
int sdm_image_check(const char *path, sdm_image_header *out, sdm_error *err);

/* Decodes a picture in memory and brings it to width x height RGB24 (rows
 * of 3·width bytes) in *rgb (malloc'd; the caller frees it). */
int sdm_image_decode(const uint8_t *data, size_t size, const char *name, int width, int height, sdm_image_fit fit,
                     uint8_t **rgb, sdm_error *err);
/* The same for a file. */
int sdm_image_load(const char *path, int width, int height, sdm_image_fit fit, uint8_t **rgb, sdm_error *err);

#endif
