/* SSIM as Wang et al.'s reference code computes it, in double: the five
 * local moments (mean of x, of y, of x², y², xy) by a separable Gaussian
 * filter over the 'valid' positions, then the SSIM map and its mean. The
 * image goes through row by row: the moments along the last window's rows
 * are all that is kept (a few hundred KB at 512x512, not tens of MB). */
#include "frame_distance.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define K1 0.01
#define K2 0.03
#define DYNAMIC_RANGE 255.0
#define MOMENTS 5

struct sdm_ssim {
    int w, h;
    double window[SDM_SSIM_WINDOW];
    double *luma_a, *luma_b; /* one row's, for sdm_ssim_rgb */
    double *rows[MOMENTS]; /* window * (w - window + 1): the moments filtered along the last
                            * window's rows; image row r is at r % window */
    double *column; /* MOMENTS * (w - window + 1): one output row's moments */
};

void sdm_luma_bt601(const uint8_t *rgb, size_t n_pixels, double *y)
{
    for (size_t i = 0; i < n_pixels; i++)
        y[i] = 0.299 * rgb[3 * i] + 0.587 * rgb[3 * i + 1] + 0.114 * rgb[3 * i + 2];
}

sdm_ssim *sdm_ssim_new(int width, int height)
{
    sdm_ssim *s;
    size_t cols;
    double sum = 0;
    int ok = 1;

    if (width < SDM_SSIM_WINDOW || height < SDM_SSIM_WINDOW)
        return NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->w = width;
    s->h = height;
    cols = (size_t)(width - SDM_SSIM_WINDOW + 1);
    s->luma_a = malloc((size_t)width * sizeof *s->luma_a);
    s->luma_b = malloc((size_t)width * sizeof *s->luma_b);
    s->column = malloc(MOMENTS * cols * sizeof *s->column);
    ok = s->luma_a && s->luma_b && s->column;
    for (int m = 0; m < MOMENTS; m++) {
        s->rows[m] = malloc(SDM_SSIM_WINDOW * cols * sizeof *s->rows[m]);
        ok = ok && s->rows[m];
    }
    if (!ok) {
        sdm_ssim_free(&s);
        return NULL;
    }
    /* fspecial('gaussian', 11, 1.5) is the outer product of this, normalised */
    for (int i = 0; i < SDM_SSIM_WINDOW; i++) {
        double d = i - (SDM_SSIM_WINDOW - 1) / 2;
        s->window[i] = exp(-d * d / (2 * SDM_SSIM_SIGMA * SDM_SSIM_SIGMA));
        sum += s->window[i];
    }
    for (int i = 0; i < SDM_SSIM_WINDOW; i++)
        s->window[i] /= sum;
    return s;
}

/* Two doubles at a time (SSE2 on every x86-64, NEON on arm64; elsewhere the
 * compiler splits them): each lane is summed tap by tap from 0, in the
 * reference's order, so the values are the same as one at a time. */
typedef double pair __attribute__((vector_size(2 * sizeof(double)), aligned(sizeof(double)), may_alias));

/* One tap of the window (weight g) on x = a, y = b: the five moments, for
 * two columns (pair) or one (double) alike. */
#define ADD_MOMENTS(acc, g, a, b)                                                                            \
    ((acc)[0] += (g) * (a), (acc)[1] += (g) * (b), (acc)[2] += (g) * (a) * (a), (acc)[3] += (g) * (b) * (b), \
     (acc)[4] += (g) * (a) * (b))

/* Along image row r (x and y: its values): the window-weighted x, y, x², y²,
 * xy at every valid column, into the ring. */
static void filter_row(sdm_ssim *s, const double *xr, const double *yr, int r)
{
    int cols = s->w - SDM_SSIM_WINDOW + 1, c = 0;
    size_t o = (size_t)(r % SDM_SSIM_WINDOW) * cols;

    for (; c + 2 <= cols; c += 2) {
        pair acc[MOMENTS] = { { 0, 0 } };
        for (int k = 0; k < SDM_SSIM_WINDOW; k++) {
            pair g = { s->window[k], s->window[k] }, a = *(const pair *)(xr + c + k), b = *(const pair *)(yr + c + k);
            ADD_MOMENTS(acc, g, a, b);
        }
        for (int m = 0; m < MOMENTS; m++)
            *(pair *)(s->rows[m] + o + c) = acc[m];
    }
    for (; c < cols; c++) {
        double acc[MOMENTS] = { 0 };
        for (int k = 0; k < SDM_SSIM_WINDOW; k++) {
            double g = s->window[k], a = xr[c + k], b = yr[c + k];
            ADD_MOMENTS(acc, g, a, b);
        }
        for (int m = 0; m < MOMENTS; m++)
            s->rows[m][o + c] = acc[m];
    }
}

/* Down the columns, for output row r: the five moments at every column of
 * it into m (summed tap by tap from 0, as filter_rows), then the row's SSIM
 * map added to *total (one running sum over the map, as the reference's). */
static void ssim_row(const sdm_ssim *s, int r, double *const m[MOMENTS], double *total)
{
    const double c1 = (K1 * DYNAMIC_RANGE) * (K1 * DYNAMIC_RANGE), c2 = (K2 * DYNAMIC_RANGE) * (K2 * DYNAMIC_RANGE);
    int cols = s->w - SDM_SSIM_WINDOW + 1;

    for (int i = 0; i < MOMENTS; i++) {
        double *mi = m[i];
        int c = 0;
        for (; c + 2 <= cols; c += 2) {
            pair acc = { 0, 0 };
            for (int k = 0; k < SDM_SSIM_WINDOW; k++) {
                pair g = { s->window[k], s->window[k] };
                acc += g * *(const pair *)(s->rows[i] + (size_t)((r + k) % SDM_SSIM_WINDOW) * cols + c);
            }
            *(pair *)(mi + c) = acc;
        }
        for (; c < cols; c++) {
            double acc = 0;
            for (int k = 0; k < SDM_SSIM_WINDOW; k++)
                acc += s->window[k] * s->rows[i][(size_t)((r + k) % SDM_SSIM_WINDOW) * cols + c];
            mi[c] = acc;
        }
    }
    for (int c = 0; c < cols; c++) {
        double mx = m[0][c], my = m[1][c], vx = m[2][c] - mx * mx, vy = m[3][c] - my * my, cov = m[4][c] - mx * my;
        *total += ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
    }
}

/* The SSIM of two luma planes (x, y), or with rgb != 0 of two RGB24 frames
 * (their luma row by row, as sdm_luma_bt601 gives it). */
static double ssim_of(sdm_ssim *s, const void *x, const void *y, int rgb)
{
    int cols = s->w - SDM_SSIM_WINDOW + 1, out_rows = s->h - SDM_SSIM_WINDOW + 1;
    double total = 0, *m[MOMENTS];

    for (int i = 0; i < MOMENTS; i++)
        m[i] = s->column + (size_t)i * cols;
    for (int r = 0; r < s->h; r++) {
        const double *xr = (const double *)x + (size_t)r * s->w, *yr = (const double *)y + (size_t)r * s->w;
        if (rgb) {
            sdm_luma_bt601((const uint8_t *)x + (size_t)r * s->w * 3, (size_t)s->w, s->luma_a);
            sdm_luma_bt601((const uint8_t *)y + (size_t)r * s->w * 3, (size_t)s->w, s->luma_b);
            xr = s->luma_a;
            yr = s->luma_b;
        }
        filter_row(s, xr, yr, r);
        if (r >= SDM_SSIM_WINDOW - 1)
            ssim_row(s, r - (SDM_SSIM_WINDOW - 1), m, &total);
    }
    return total / ((double)cols * out_rows);
}

double sdm_ssim_luma(sdm_ssim *s, const double *x, const double *y)
{
    return ssim_of(s, x, y, 0);
}

double sdm_ssim_rgb(sdm_ssim *s, const uint8_t *a, const uint8_t *b)
{
    return ssim_of(s, a, b, 1);
}

void sdm_ssim_free(sdm_ssim **ps)
{
    sdm_ssim *s;

    if (!ps || !*ps)
        return;
    s = *ps;
    free(s->luma_a);
    free(s->luma_b);
    free(s->column);
    for (int m = 0; m < MOMENTS; m++)
        free(s->rows[m]);
    free(s);
    *ps = NULL;
}

double sdm_ssim_distance(double ssim)
{
    return ssim < 1 ? sqrt(1 - ssim) : 0.0;
}

double sdm_latent_distance(const float *a, const float *b, size_t n)
{
    double sum = 0;

    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        sum += d * d;
    }
    return sqrt(sum / (double)n);
}

static int by_value(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int sdm_distance_summarise(const double *d, int n, sdm_distance_summary *out)
{
    double *sorted;

    memset(out, 0, sizeof *out);
    out->largest_at = -1;
    if (n <= 0)
        return 0;
    sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted)
        return -1;
    memcpy(sorted, d, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, by_value);
    out->n = n;
    out->median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    out->largest_at = 0;
    for (int i = 1; i < n; i++)
        if (d[i] > d[out->largest_at])
            out->largest_at = i;
    out->largest = d[out->largest_at];
    free(sorted);
    return 0;
}

double sdm_distance_unevenness(const sdm_distance_summary *s)
{
    if (s->n == 0 || s->largest == 0)
        return s->n == 0 ? 0.0 : 1.0;
    return s->median > 0 ? s->largest / s->median : INFINITY;
}
