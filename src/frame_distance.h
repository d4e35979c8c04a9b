/* How far apart two frames look: the pace of an animation is the sequence
 * of its adjacent-frame distances. Two measures, pure C:
 *
 * - SSIM on luminance (Wang, Bovik, Sheikh & Simoncelli 2004): BT.601 luma,
 *   the paper's 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, L 255,
 *   the mean over every position where the window lies inside the image
 *   (their ssim_index.m with 'valid' filtering). The distance is
 *   sqrt(1 - SSIM): 1 - SSIM grows with the square of a small change, its
 *   root linearly (it is close to a metric: Brunet, Vrscay & Wang 2012), so
 *   distances add up along a morph like lengths along a path.
 * - RMS distance between two latents: what the sampler produced, before
 *   the VAE; no decode needed.
 *
 * And the summary everyone reads: the largest and the median of a list of
 * distances. */
#ifndef SDM_FRAME_DISTANCE_H
#define SDM_FRAME_DISTANCE_H

#include <stddef.h>
#include <stdint.h>

#define SDM_SSIM_WINDOW 11 /* pixels; frames must be at least this wide and high */
#define SDM_SSIM_SIGMA 1.5

/* Y = 0.299 R + 0.587 G + 0.114 B of n RGB24 pixels, in 0..255 (full range). */
void sdm_luma_bt601(const uint8_t *rgb, size_t n_pixels, double *y);

/* Buffers for one frame size, so measuring many frames allocates nothing. */
typedef struct sdm_ssim sdm_ssim;

/* NULL if width or height is below SDM_SSIM_WINDOW or out of memory. */
sdm_ssim *sdm_ssim_new(int width, int height);
/* Mean SSIM of two luma images of the context's size: 1 for identical ones. */
double sdm_ssim_luma(sdm_ssim *s, const double *x, const double *y);
/* The same for two RGB24 frames (their luma first). */
double sdm_ssim_rgb(sdm_ssim *s, const uint8_t *a, const uint8_t *b);
void sdm_ssim_free(sdm_ssim **s);

/* sqrt(1 - ssim), 0 for ssim >= 1. */
double sdm_ssim_distance(double ssim);

/* sqrt(mean((a - b)^2)) over n values: 0 when n is 0. */
double sdm_latent_distance(const float *a, const float *b, size_t n);

typedef struct {
    int n; /* distances summarised */
    double largest, median; /* 0 when n is 0; median of an even count: mean of the middle two */
    int largest_at; /* index of the (first) largest, -1 when n is 0 */
} sdm_distance_summary;

/* 0, or -1 out of memory. */
int sdm_distance_summarise(const double *d, int n, sdm_distance_summary *out);
/* largest / median: how uneven the pace is (1: even, also when nothing
 * moves at all); 0 when n is 0; infinity when the median is 0 and the
 * largest is not. */
double sdm_distance_unevenness(const sdm_distance_summary *s);

#endif
