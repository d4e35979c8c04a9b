/* Glue between FFmpeg and sdmorph's errors and log; used by the encoders
 * modules only (all FFmpeg code lives in encoders/). */
#ifndef SDM_FFUTIL_H
#define SDM_FFUTIL_H

#include "error.h"

/* Routes av_log into sdm_log, once per process: FFmpeg's warnings and errors
 * become ours, its chatter (x264's statistics...) goes to debug. */
void sdm_ff_log_init(void);

/* Sets err to the formatted text followed by ": " and FFmpeg's message for
 * averr (an AVERROR code). Returns -1. */
int sdm_ff_error(sdm_error *err, int averr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
