/* Reads a written file back in process, for tests and benchmarks: what a
 * player would see (codec, size, frames, rate, duration, pixel format), the
 * container facts that matter for playback (MP4 moov before mdat, GIF loop
 * count) and every decoded frame as RGB24. */
#ifndef SDM_PROBE_H
#define SDM_PROBE_H

#include <stdint.h>

#include "error.h"

typedef struct {
    char codec[32]; /* "h264", "gif", "png" */
    char pix_fmt[32]; /* of the decoded frames: "yuv420p", "bgra", "rgb24" */
    char color_space[32]; /* as tagged: "bt709", "unknown" */
    char comment[512]; /* the "comment" metadata, "" if none */
    int width, height;
    int frames; /* frames decoded */
    double duration; /* seconds, from the packets' timestamps and durations */
    double fps; /* frames / duration: the rate a player shows them at */
    double stream_fps; /* the rate the container declares (avg_frame_rate), 0 if none */
    double start_time; /* seconds, first frame's presentation time */
    int gif_loop; /* GIF: 0 = loops forever, n = n times, -1 = no loop extension; MP4: -1 */
    int moov_before_mdat; /* MP4: 1 if the moov atom comes before mdat, 0 if after; else -1 */
    int max_colors; /* most distinct colors in one decoded frame (0 unless counted) */
} sdm_probe_info;

/* Called for each decoded frame in presentation order; rgb is width*height*3
 * bytes, valid during the call. A non-zero return stops the probe with an error. */
typedef int (*sdm_probe_frame_fn)(void *user, int index, const uint8_t *rgb, int width, int height);

/* Decodes the whole file. on_frame may be NULL. count_colors != 0 fills
 * max_colors (slower). */
int sdm_probe_file(const char *path, sdm_probe_frame_fn on_frame, void *user, int count_colors, sdm_probe_info *info,
                   sdm_error *err);

/* PSNR in dB between two RGB24 images of n bytes (99 if identical). */
double sdm_probe_psnr(const uint8_t *a, const uint8_t *b, size_t n);

#endif
