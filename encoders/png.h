/* One image as a PNG through libavcodec's encoder, with a comment (the
 * recipe and model it came from) in a text chunk: the contact sheet's
 * (sheet.c) and a render's stills (`-o pick.png`). */
#ifndef SDM_PNG_H
#define SDM_PNG_H

#include <stdint.h>

#include "error.h"

struct AVIOContext;

/* 0 where this FFmpeg has the PNG encoder, else an error naming target. */
int sdm_png_check(const char *target, sdm_error *err);
/* Encodes width x height RGB24 pixels (rows linesize bytes apart) and
 * writes the PNG to pb, the comment (may be NULL) in a "Comment" chunk.
 * Messages name target. pb is flushed, not closed. */
int sdm_png_encode(const uint8_t *rgb, int linesize, int width, int height, const char *comment, struct AVIOContext *pb,
                   const char *target, sdm_error *err);
/* The same into the file path (created or replaced), closed after. */
int sdm_png_write(const char *path, const uint8_t *rgb, int width, int height, const char *comment, const char *target,
                  sdm_error *err);

#endif
