/* The adjacent-frame measures (src/frame_distance.h): BT.601 luma, SSIM
 * against hand-computed cases and against an independent numpy
 * implementation run now, the distance's linear growth, the latent RMS
 * distance and the largest/median summary. */
#include <stdint.h>
#include <unistd.h>

#include "frame_distance.h"
#include "test.h"

#define C1 (0.01 * 255 * 0.01 * 255)

/* A fixed pseudo-random image (an LCG, the same on every machine). */
static void noise_rgb(uint8_t *rgb, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        rgb[i] = (uint8_t)(seed >> 24);
    }
}

static void fill_rgb(uint8_t *rgb, size_t n_pixels, uint8_t r, uint8_t g, uint8_t b)
{
    for (size_t i = 0; i < n_pixels; i++) {
        rgb[3 * i] = r;
        rgb[3 * i + 1] = g;
        rgb[3 * i + 2] = b;
    }
}

static void test_luma(void)
{
    const uint8_t rgb[] = { 255, 255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30 };
    double y[5];

    sdm_luma_bt601(rgb, 5, y);
    CHECK_NEAR(y[0], 255.0, 1e-12);
    CHECK_NEAR(y[1], 76.245, 1e-12);
    CHECK_NEAR(y[2], 149.685, 1e-12);
    CHECK_NEAR(y[3], 29.07, 1e-12);
    CHECK_NEAR(y[4], 2.99 + 11.74 + 3.42, 1e-12);
}

static void test_ssim_by_hand(void)
{
    enum { W = 16, H = 13 };
    uint8_t a[W * H * 3], b[W * H * 3];
    sdm_ssim *s = sdm_ssim_new(W, H);
    double ssim;

    CHECK(s != NULL);
    if (!s)
        return;
    /* identical frames: exactly 1, distance exactly 0 */
    noise_rgb(a, sizeof a, 7);
    CHECK(sdm_ssim_rgb(s, a, a) == 1.0);
    CHECK(sdm_ssim_distance(sdm_ssim_rgb(s, a, a)) == 0.0);
    /* flat frames of luma x and y: no structure, so SSIM is the luminance
     * term alone, (2xy + C1) / (x² + y² + C1), at every position */
    fill_rgb(a, W * H, 100, 100, 100);
    fill_rgb(b, W * H, 110, 110, 110);
    ssim = sdm_ssim_rgb(s, a, b);
    CHECK_NEAR(ssim, (2 * 100.0 * 110 + C1) / (100.0 * 100 + 110.0 * 110 + C1), 1e-12);
    CHECK_NEAR(sdm_ssim_distance(ssim), sqrt(100.0 / (100.0 * 100 + 110.0 * 110 + C1)), 1e-9);
    /* symmetric (to rounding: g·a·b and g·b·a round apart) */
    noise_rgb(a, sizeof a, 1);
    noise_rgb(b, sizeof b, 2);
    CHECK_NEAR(sdm_ssim_rgb(s, a, b), sdm_ssim_rgb(s, b, a), 1e-15);
    /* two unrelated noise images are far apart: SSIM near 0 */
    CHECK(fabs(sdm_ssim_rgb(s, a, b)) < 0.2);
    sdm_ssim_free(&s);
    CHECK(s == NULL);
    sdm_ssim_free(&s); /* NULL-safe */
    /* too small for one window */
    CHECK(sdm_ssim_new(10, 64) == NULL);
    CHECK(sdm_ssim_new(64, 10) == NULL);
    s = sdm_ssim_new(11, 11);
    CHECK(s != NULL);
    sdm_ssim_free(&s);
}

/* sqrt(1 - SSIM) grows linearly with a small change, so distances add up
 * along a morph; 1 - SSIM would grow with its square. */
static void test_distance_linear(void)
{
    enum { W = 32, H = 32 };
    static uint8_t base[W * H * 3], moved[W * H * 3];
    double y0[W * H], y1[W * H], d[3];
    sdm_ssim *s = sdm_ssim_new(W, H);

    CHECK(s != NULL);
    if (!s)
        return;
    noise_rgb(base, sizeof base, 3);
    sdm_luma_bt601(base, W * H, y0);
    for (int k = 1; k <= 3; k++) {
        /* the same picture moved a little toward another one */
        noise_rgb(moved, sizeof moved, 4);
        sdm_luma_bt601(moved, W * H, y1);
        for (int i = 0; i < W * H; i++)
            y1[i] = y0[i] + 0.01 * k * (y1[i] - y0[i]);
        d[k - 1] = sdm_ssim_distance(sdm_ssim_luma(s, y0, y1));
    }
    CHECK(d[0] > 0);
    CHECK_NEAR(d[1] / d[0], 2.0, 0.02); /* (1 - SSIM would give 4 and 9) */
    CHECK_NEAR(d[2] / d[0], 3.0, 0.05);
    sdm_ssim_free(&s);
}

/* The numpy reference: the 2-D window and a direct weighted sum over each
 * 11x11 neighbourhood (not separable passes, not our summation order). */
static const char numpy_ssim[] =
    "import sys, numpy as np\n"
    "w, h, a_path, b_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]\n"
    "def luma(p):\n"
    "    rgb = np.fromfile(p, dtype=np.uint8).reshape(h, w, 3).astype(np.float64)\n"
    "    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]\n"
    "x, y = luma(a_path), luma(b_path)\n"
    "r = np.arange(11) - 5.0\n"
    "g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5 ** 2))\n"
    "g /= g.sum()\n"
    "def filt(img):\n"
    "    v = np.lib.stride_tricks.sliding_window_view(img, (11, 11))\n"
    "    return np.einsum('ijkl,kl->ij', v, g)\n"
    "mx, my = filt(x), filt(y)\n"
    "vx, vy, cxy = filt(x * x) - mx * mx, filt(y * y) - my * my, filt(x * y) - mx * my\n"
    "c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2\n"
    "m = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))\n"
    "print('%.17g' % m.mean())\n";

static int write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, n, f) == n;

    if (f && fclose(f))
        ok = 0;
    return ok ? 0 : -1;
}

static int numpy_reference(int w, int h, const uint8_t *a, const uint8_t *b, double *ssim)
{
    char script[64], pa[64], pb[64], cmd[512];
    FILE *p;
    int got = 0;

    snprintf(script, sizeof script, "/tmp/sdm-ssim-%ld.py", (long)getpid());
    snprintf(pa, sizeof pa, "/tmp/sdm-ssim-%ld-a.rgb", (long)getpid());
    snprintf(pb, sizeof pb, "/tmp/sdm-ssim-%ld-b.rgb", (long)getpid());
    if (write_bytes(script, numpy_ssim, strlen(numpy_ssim)) || write_bytes(pa, a, (size_t)w * h * 3) ||
        write_bytes(pb, b, (size_t)w * h * 3))
        return -1;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %d %d %s %s 2>/dev/null", script, w, h, pa, pb);
    p = popen(cmd, "r");
    if (p) {
        got = fscanf(p, "%lf", ssim) == 1;
        got = pclose(p) == 0 && got;
    }
    unlink(script);
    unlink(pa);
    unlink(pb);
    return got ? 0 : -1;
}

static int have_numpy(void)
{
    return access("/usr/bin/python3", X_OK) == 0 &&
           system(
               "/usr/bin/python3 -c 'import numpy; numpy.lib.stride_tricks.sliding_window_view' "
               ">/dev/null 2>&1") == 0;
}

static void test_ssim_numpy(void)
{
    enum { W = 37, H = 29 };
    static uint8_t a[W * H * 3], b[W * H * 3];
    double ref;

    if (!have_numpy()) {
        SKIP("SSIM against numpy: /usr/bin/python3 with numpy >= 1.20 not found");
        return;
    }
    for (int c = 0; c < 3; c++) {
        sdm_ssim *s = sdm_ssim_new(W, H);
        noise_rgb(a, sizeof a, 11);
        if (c == 0) {
            noise_rgb(b, sizeof b, 12); /* unrelated */
        } else {
            memcpy(b, a, sizeof b); /* a smooth ramp added, then a few changed pixels */
            for (size_t i = 0; i < sizeof b; i++)
                b[i] = (uint8_t)(b[i] / 2 + (i / 3) % W * 3 + (c == 2 && i % 97 == 0 ? 40 : 0));
        }
        CHECK(s != NULL);
        CHECK(numpy_reference(W, H, a, b, &ref) == 0);
        if (s)
            CHECK_NEAR(sdm_ssim_rgb(s, a, b), ref, 1e-12);
        sdm_ssim_free(&s);
    }
}

/* SSIM one value at a time, in the reference's order (the window along the
 * rows, then down the columns, one running sum over the map). */
static double ssim_plain(const double *x, const double *y, int w, int h)
{
    const double c2 = (0.03 * 255) * (0.03 * 255);
    int cols = w - SDM_SSIM_WINDOW + 1, rows = h - SDM_SSIM_WINDOW + 1;
    double g[SDM_SSIM_WINDOW], sum = 0, total = 0;
    double *f = malloc((size_t)5 * h * cols * sizeof *f);

    for (int i = 0; i < SDM_SSIM_WINDOW; i++) {
        double d = i - (SDM_SSIM_WINDOW - 1) / 2;
        g[i] = exp(-d * d / (2 * SDM_SSIM_SIGMA * SDM_SSIM_SIGMA));
        sum += g[i];
    }
    for (int i = 0; i < SDM_SSIM_WINDOW; i++)
        g[i] /= sum;
    for (int r = 0; r < h; r++)
        for (int c = 0; c < cols; c++) {
            double acc[5] = { 0 };
            for (int k = 0; k < SDM_SSIM_WINDOW; k++) {
                double a = x[r * w + c + k], b = y[r * w + c + k];
                acc[0] += g[k] * a;
                acc[1] += g[k] * b;
                acc[2] += g[k] * a * a;
                acc[3] += g[k] * b * b;
                acc[4] += g[k] * a * b;
            }
            for (int m = 0; m < 5; m++)
                f[((size_t)m * h + r) * cols + c] = acc[m];
        }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            double m[5] = { 0 }, vx, vy, cov;
            for (int k = 0; k < SDM_SSIM_WINDOW; k++)
                for (int i = 0; i < 5; i++)
                    m[i] += g[k] * f[((size_t)i * h + r + k) * cols + c];
            vx = m[2] - m[0] * m[0];
            vy = m[3] - m[1] * m[1];
            cov = m[4] - m[0] * m[1];
            total += ((2 * m[0] * m[1] + C1) * (2 * cov + c2)) / ((m[0] * m[0] + m[1] * m[1] + C1) * (vx + vy + c2));
        }
    free(f);
    return total / ((double)cols * rows);
}

/* The SSIM's loops run two columns at a time: the same value, to the bit,
 * as one at a time, at even and odd widths (a column left over). */
static void test_ssim_exact(void)
{
    static const int sizes[][2] = { { 11, 11 }, { 12, 13 }, { 37, 29 }, { 64, 40 }, { 65, 17 } };

    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int w = sizes[t][0], h = sizes[t][1];
        size_t n = (size_t)w * h;
        uint8_t *a = malloc(3 * n), *b = malloc(3 * n);
        double *ya = malloc(n * sizeof *ya), *yb = malloc(n * sizeof *yb);
        sdm_ssim *s = sdm_ssim_new(w, h);

        noise_rgb(a, 3 * n, 21 + (uint32_t)t);
        for (size_t i = 0; i < 3 * n; i++)
            b[i] = (uint8_t)(a[i] / 2 + (i / 3) % w * 2 + (i % 31 == 0 ? 60 : 0));
        sdm_luma_bt601(a, n, ya);
        sdm_luma_bt601(b, n, yb);
        CHECK(s != NULL);
        if (s) {
            double got = sdm_ssim_rgb(s, a, b), want = ssim_plain(ya, yb, w, h);
            CHECK(got == want);
            if (got != want)
                fprintf(stderr, "  %dx%d: %.17g, one at a time %.17g\n", w, h, got, want);
            CHECK(got < 0.99);
        }
        sdm_ssim_free(&s);
        free(a);
        free(b);
        free(ya);
        free(yb);
    }
}

static void test_latent_distance(void)
{
    const float a[4] = { 0, 0, 0, 0 }, b[4] = { 1, -1, 1, -1 }, c[2] = { 3, 4 }, z[2] = { 0, 0 };

    CHECK(sdm_latent_distance(a, a, 4) == 0.0);
    CHECK_NEAR(sdm_latent_distance(a, b, 4), 1.0, 1e-15);
    CHECK_NEAR(sdm_latent_distance(c, z, 2), sqrt(12.5), 1e-15);
    CHECK(sdm_latent_distance(a, b, 0) == 0.0);
}

static void test_summary(void)
{
    const double odd[5] = { 0.3, 0.1, 0.5, 0.2, 0.4 }, even[4] = { 4, 1, 2, 3 }, flat[3] = { 0, 0, 0 };
    const double spike[3] = { 0, 0, 1 };
    sdm_distance_summary s;

    CHECK(sdm_distance_summarise(odd, 5, &s) == 0);
    CHECK_INT(s.n, 5);
    CHECK(s.median == 0.3);
    CHECK(s.largest == 0.5);
    CHECK_INT(s.largest_at, 2);
    CHECK_NEAR(sdm_distance_unevenness(&s), 0.5 / 0.3, 1e-15);
    CHECK(sdm_distance_summarise(even, 4, &s) == 0);
    CHECK(s.median == 2.5);
    CHECK_INT(s.largest_at, 0);
    CHECK(sdm_distance_summarise(flat, 3, &s) == 0);
    CHECK(sdm_distance_unevenness(&s) == 1.0);
    CHECK(sdm_distance_summarise(spike, 3, &s) == 0);
    CHECK(isinf(sdm_distance_unevenness(&s)));
    CHECK(sdm_distance_summarise(odd, 0, &s) == 0);
    CHECK_INT(s.n, 0);
    CHECK_INT(s.largest_at, -1);
    CHECK(sdm_distance_unevenness(&s) == 0.0);
}

int main(void)
{
    test_luma();
    test_ssim_by_hand();
    test_distance_linear();
    test_ssim_numpy();
    test_ssim_exact();
    test_latent_distance();
    test_summary();
    return test_report();
}
