/* The pace of an animation everyone can read: the distance between each
 * two adjacent frames (SSIM's, frame_distance.h), in display order, and
 * its largest and median value per transition, over the whole animation
 * and at the seam. A render reports it and keeps it in its sidecar;
 * `sdmorph measure` computes the same from any decoded video.
 *
 * - A pair of identical frames (a hold) is a pause, not pace: skipped.
 * - A pair belongs to the transition of its later frame, or where that is
 *   a keyframe, of its earlier one (the step onto a keyframe ends the
 *   transition into it); pingpong's way back counts with its way there.
 * - The seam is where the animation meets itself on repeat: the pairs
 *   (next to last, last), (last, first) and (first, second). Seamless,
 *   its largest is close to its median. */
#ifndef SDM_PACE_H
#define SDM_PACE_H

#include <stdint.h>
#include <stdio.h>

#include "frame_distance.h"

typedef struct {
    int from, to; /* keyframes; -1 -1: frames without keyframes (a video, a walk) */
    sdm_distance_summary s;
} sdm_pace_segment;

/* Transitions a report holds (the pairs of any more count in `all`). */
#define SDM_PACE_MAX_SEGMENTS 64

typedef struct {
    int frames; /* frames measured */
    sdm_pace_segment segments[SDM_PACE_MAX_SEGMENTS]; /* per transition, in order of first appearance */
    int n_segments;
    int segments_left_out; /* transitions past SDM_PACE_MAX_SEGMENTS */
    sdm_distance_summary all; /* every pair */
    sdm_distance_summary seam; /* the three pairs around the seam (n = 0 under 3 frames) */
} sdm_pace_report;

typedef struct sdm_pace sdm_pace;

/* NULL out of memory or for frames under SDM_SSIM_WINDOW pixels a side.
 * The distances are measured on worker threads (one per CPU, at most 4),
 * off the caller's: push copies the frame and returns at once unless 16
 * frames are still waiting to be measured (13 MB at 512x512). */
sdm_pace *sdm_pace_new(int width, int height);
/* The same with `threads` workers (1: measured in push, on the caller's
 * thread). The report does not depend on it. */
sdm_pace *sdm_pace_new_threads(int width, int height, int threads);
/* The next frame in display order (width x height RGB24, copied): from ==
 * to is keyframe `from` itself, from != to a frame of that transition, -1
 * -1 a frame of no transition. 0, or -1 out of memory. */
int sdm_pace_push(sdm_pace *p, const uint8_t *rgb, int from, int to);
/* The report of the frames so far, once every one is measured. 0, or -1
 * out of memory. Call from push's thread. */
int sdm_pace_report_make(sdm_pace *p, sdm_pace_report *out);
void sdm_pace_free(sdm_pace **p);

/* For people: one line per transition, the whole and the seam. */
void sdm_pace_print(const sdm_pace_report *r, FILE *f);
/* As a JSON object (the sidecar's "pace" member), malloc'd; NULL out of memory. */
char *sdm_pace_json(const sdm_pace_report *r);

#endif
