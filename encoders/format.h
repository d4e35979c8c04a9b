/* The sink's internal interface to one output format (mp4.c, gif.c,
 * sheet.c). check() says whether the format can take the settings (the
 * sink calls it before open(), and sdm_sink_check() before any model
 * loads); the sink opens each on the caller's thread, so a file that
 * cannot be made fails before rendering starts; then one encoder thread per output calls
 * write() for every frame in display order and finish() at the end, or only
 * free() when the render is abandoned. Frames are RGB24, p->width x
 * p->height, tightly packed. A format writes `tmp_path` only (plus files
 * named after it, removed by free()); the sink renames it onto the target.
 * Messages name `target`, the path the user asked for. */
#ifndef SDM_FORMAT_H
#define SDM_FORMAT_H

#include <stdint.h>

#include "error.h"
#include "sink.h"

typedef struct sdm_format {
    const char *name; /* "mp4", "gif", "png contact sheet" */
    /* The format's own limits (frame size, rate, encoder options, the
     * encoder being in this FFmpeg); NULL if it has none. */
    int (*check)(const char *target, const sdm_sink_params *p, sdm_error *err);
    int (*open)(void **ctx, const char *tmp_path, const char *target, const sdm_sink_params *p, sdm_error *err);
    int (*write)(void *ctx, const uint8_t *rgb, sdm_error *err);
    /* Flushes the encoder and completes the file; the file is closed after. */
    int (*finish)(void *ctx, sdm_error *err);
    /* NULL-safe; closes the file if still open (it is then incomplete). */
    void (*free)(void **ctx);
} sdm_format;

extern const sdm_format sdm_format_mp4;
extern const sdm_format sdm_format_gif;
extern const sdm_format sdm_format_sheet;
extern const sdm_format sdm_format_raw;

#endif
