/* The text chunks of a PNG file (tEXt, zTXt, iTXt), where image tools keep
 * their settings: A1111 writes "parameters", ComfyUI "prompt" (its graph
 * as JSON). Read by hand: FFmpeg's PNG decoder (5.1, Debian 12) gives
 * tEXt and zTXt as frame metadata but drops iTXt, which A1111 writes for
 * every prompt outside Latin-1. Every length is checked against the bytes
 * there are, each chunk's CRC is checked, inflated text is capped; Latin-1
 * text (tEXt, zTXt) comes back as UTF-8. */
#ifndef SDM_PNG_TEXT_H
#define SDM_PNG_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* The most a text (inflated) may be, and a file read whole. */
#define SDM_PNG_MAX_TEXT (1u << 20)
#define SDM_PNG_MAX_FILE (256u << 20)

/* The text of the first chunk whose keyword is key: *out malloc'd UTF-8
 * (NUL-terminated), or NULL where there is none (not an error). Errors
 * (SDM_EXIT_USAGE): not a PNG, a chunk that runs past the end or has a
 * bad CRC, a text that does not inflate or is too long; name: for messages. */
int sdm_png_text(const char *name, const uint8_t *data, size_t len, const char *key, char **out, sdm_error *err);
/* The same from a file (at most SDM_PNG_MAX_FILE bytes). */
int sdm_png_text_file(const char *path, const char *key, char **out, sdm_error *err);

#endif
