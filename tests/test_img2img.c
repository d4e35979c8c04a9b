/* Image-to-image on the analytic bundle: the picture reader (formats, fit,
 * limits), image starts against DDIM's closed form, strength 0 as the
 * encoded-decoded picture, walks and morphs around pictures, and bad
 * pictures refused (by `sdmorph check` and `render`) before any model loads. */
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_run.h"
#include "condition.h"
#include "engine.h"
#include "image_in.h"
#include "png.h"
#include "render.h"
#include "sampler.h"
#include "analytic.h"
#include "test.h"

static const sdm_device cpu = { SDM_DEVICE_CPU, 0 };
static char model_dir[512];
static char tmp[] = "/tmp/sdm-img2img-XXXXXX";

#define W 64
#define H 64
#define LAT (W / 8)

static const char *tmp_path(const char *name)
{
    static char buf[8][PATH_MAX];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, PATH_MAX, "%s/%s", tmp, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

/* ---- the picture reader -------------------------------------------------- */

/* An 8x4 picture: left half red, right half blue. */
static void test_fit(void)
{
    uint8_t pic[8 * 4 * 3], *rgb = NULL;
    sdm_error err = { 0 };
    sdm_image_header h;
    const char *path = tmp_path("halves.png");

    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 8; x++) {
            uint8_t *p = pic + (y * 8 + x) * 3;
            p[0] = x < 4 ? 200 : 10;
            p[1] = 30;
            p[2] = x < 4 ? 10 : 220;
        }
    CHECK_INT(sdm_png_write(path, pic, 8, 4, NULL, path, &err), 0);
    CHECK_INT(sdm_image_check(path, &h, &err), 0);
    CHECK_STR(h.format, "PNG");
    CHECK_INT(h.width, 8);
    CHECK_INT(h.height, 4);
    /* the same size: the pixels themselves */
    CHECK_INT(sdm_image_load(path, 8, 4, SDM_FIT_CROP, &rgb, &err), 0);
    CHECK(rgb && !memcmp(rgb, pic, sizeof pic));
    free(rgb);
    /* crop to a square: the middle 4 columns, exactly */
    CHECK_INT(sdm_image_load(path, 4, 4, SDM_FIT_CROP, &rgb, &err), 0);
    for (int y = 0; rgb && y < 4; y++)
        CHECK(!memcmp(rgb + y * 12, pic + (y * 8 + 2) * 3, 12));
    free(rgb);
    /* pad to 8x8: two black rows above and below, the picture between */
    CHECK_INT(sdm_image_load(path, 8, 8, SDM_FIT_PAD, &rgb, &err), 0);
    for (int y = 0; rgb && y < 8; y++) {
        int inside = y >= 2 && y < 6, black = 1;
        for (int i = 0; i < 24; i++)
            black &= rgb[y * 24 + i] == 0;
        CHECK(inside ? !memcmp(rgb + y * 24, pic + (y - 2) * 24, 24) : black);
    }
    free(rgb);
    /* stretch: the left of the frame red, the right blue */
    CHECK_INT(sdm_image_load(path, 16, 16, SDM_FIT_STRETCH, &rgb, &err), 0);
    CHECK(rgb && rgb[(8 * 16 + 1) * 3] > 150 && rgb[(8 * 16 + 1) * 3 + 2] < 60);
    CHECK(rgb && rgb[(8 * 16 + 14) * 3] < 60 && rgb[(8 * 16 + 14) * 3 + 2] > 150);
    free(rgb);
}

/* A PNG of just a header: IHDR of w x h (CRC not checked by the header reader), IEND. */
static size_t png_header_only(uint8_t *b, uint32_t w, uint32_t h)
{
    static const uint8_t start[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R' };
    static const uint8_t end[] = { 8, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82 };
    size_t n = 0;

    memcpy(b, start, sizeof start);
    n = sizeof start;
    for (int i = 3; i >= 0; i--)
        b[n++] = (uint8_t)(w >> (8 * i));
    for (int i = 3; i >= 0; i--)
        b[n++] = (uint8_t)(h >> (8 * i));
    memcpy(b + n, end, sizeof end);
    return n + sizeof end;
}

static void expect_bad(const uint8_t *data, size_t n, const char *why)
{
    sdm_image_header h;
    sdm_error err = { 0 };

    CHECK(sdm_image_header_read(data, n, "pic", &h, &err) != 0);
    CHECK_INT(err.code, SDM_EXIT_USAGE);
    CHECK_CONTAINS(err.msg, "pic: ");
    CHECK_CONTAINS(err.msg, why);
}

static void test_headers(void)
{
    uint8_t b[64];
    sdm_image_header h;
    sdm_error err = { 0 };
    /* JPEG: SOI, an APP0 segment, SOF0 of 40x30, then the end marker */
    static const uint8_t jpeg[] = { 0xFF, 0xD8, 0xFF, 0xE0, 0, 4,    0, 0,    0xFF, 0xC0, 0, 11,   8,   0,
                                    30,   0,    40,   1,    1, 0x11, 0, 0xFF, 0xDA, 0,    2, 0xFF, 0xD9 };
    static const uint8_t jpeg_huge[] = { 0xFF, 0xD8, 0xFF, 0xC2, 0,    11, 8,    0xEA, 0x60,
                                         0xEA, 0x60, 1,    1,    0x11, 0,  0xFF, 0xD9 };
    /* WebP: RIFF, WEBP, a VP8X chunk with a 300x200 canvas */
    uint8_t webp[30] = { 'R', 'I', 'F', 'F', 22, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8',
                         'X', 10,  0,   0,   0,  0, 0, 0, 0,   43,  1,   0,   199, 0,   0 };

    CHECK_INT(sdm_image_header_read(jpeg, sizeof jpeg, "j", &h, &err), 0);
    CHECK_STR(h.format, "JPEG");
    CHECK(h.width == 40 && h.height == 30);
    expect_bad(jpeg, sizeof jpeg - 2, "truncated");
    expect_bad(jpeg_huge, sizeof jpeg_huge, "too large (60000x60000");
    CHECK_INT(sdm_image_header_read(webp, sizeof webp, "w", &h, &err), 0);
    CHECK_STR(h.format, "WebP");
    CHECK(h.width == 300 && h.height == 200);
    expect_bad(webp, 20, "truncated");
    expect_bad(b, png_header_only(b, 30000, 30000), "too large (30000x30000, from its PNG header)");
    expect_bad(b, png_header_only(b, 9000, 9000), "too large");
    expect_bad(b, png_header_only(b, 0, 10), "no size");
    expect_bad(b, png_header_only(b, 64, 64) - 12, "truncated");
    expect_bad((const uint8_t *)"hello, world\n", 13, "not an image");
    expect_bad(b, 0, "empty");
    CHECK_INT(sdm_image_header_read(b, png_header_only(b, 8192, 8192), "big", &h, &err), 0);
}

/* A 16x8 JPEG and a lossless WebP (libavcodec's mjpeg and libwebp
 * encoders): the left half red, the right half blue. */
static const uint8_t jpeg_16x8[] = {
    0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x10, 0x4C, 0x61, 0x76, 0x63, 0x35, 0x39, 0x2E, 0x33, 0x37, 0x2E, 0x31, 0x30, 0x30,
    0x00, 0xFF, 0xDB, 0x00, 0x43, 0x00, 0x08, 0x04, 0x04, 0x04, 0x04, 0x04, 0x05, 0x05, 0x05, 0x05, 0x05, 0x05, 0x06,
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x07, 0x07, 0x07, 0x08, 0x08, 0x08, 0x07,
    0x07, 0x07, 0x06, 0x06, 0x07, 0x07, 0x08, 0x08, 0x08, 0x08, 0x09, 0x09, 0x09, 0x08, 0x08, 0x08, 0x08, 0x09, 0x09,
    0x0A, 0x0A, 0x0A, 0x0C, 0x0C, 0x0B, 0x0B, 0x0E, 0x0E, 0x0E, 0x11, 0x11, 0x14, 0xFF, 0xC4, 0x00, 0x50, 0x00, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x01, 0x01, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x06, 0x10, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11, 0x00, 0x03, 0x01,
    0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x85, 0xC4, 0x46, 0x45,
    0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x08, 0x00, 0x10, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x00, 0x03, 0x11, 0x00,
    0xFF, 0xDA, 0x00, 0x0C, 0x03, 0x01, 0x00, 0x02, 0x11, 0x03, 0x11, 0x00, 0x3F, 0x00, 0x36, 0x36, 0x48, 0x36, 0x75,
    0x05, 0xD1, 0xCC, 0xD8, 0x51, 0x3A, 0xBC, 0x1A, 0x19, 0x4F, 0xFF, 0xD9,
};
static const uint8_t webp_16x8[] = {
    0x52, 0x49, 0x46, 0x46, 0x58, 0x00, 0x00, 0x00, 0x57, 0x45, 0x42, 0x50, 0x56, 0x50, 0x38, 0x4C,
    0x4C, 0x00, 0x00, 0x00, 0x2F, 0x0F, 0xC0, 0x01, 0x00, 0x2F, 0x40, 0x98, 0x6D, 0xB4, 0xFD, 0x86,
    0x72, 0xFE, 0x60, 0xC7, 0x43, 0x10, 0x40, 0x92, 0x44, 0xD2, 0x93, 0x8D, 0xB0, 0xCD, 0x64, 0xD2,
    0x36, 0xA5, 0x82, 0xE6, 0x60, 0x3A, 0xE6, 0xFF, 0x98, 0x8F, 0xF9, 0x8F, 0xF9, 0x34, 0x3C, 0x40,
    0xAD, 0x9E, 0x81, 0x42, 0x48, 0x92, 0x9C, 0x8B, 0x00, 0xAB, 0xB0, 0x0A, 0x4B, 0xF0, 0xFF, 0xFE,
    0x58, 0xD1, 0x20, 0xA2, 0xFF, 0x21, 0x69, 0xB5, 0x99, 0xED, 0x00, 0xC6, 0x1F, 0xC9, 0x79, 0x06,
};

static void expect_halves(const uint8_t *data, size_t n, const char *format)
{
    sdm_image_header h;
    sdm_error err = { 0 };
    uint8_t *rgb = NULL;

    CHECK_INT(sdm_image_header_read(data, n, format, &h, &err), 0);
    CHECK_STR(h.format, format);
    CHECK(h.width == 16 && h.height == 8);
    CHECK_INT(sdm_image_decode(data, n, format, 16, 8, SDM_FIT_STRETCH, &rgb, &err), 0);
    if (!rgb) {
        fprintf(stderr, "%s: %s\n", format, err.msg);
        return;
    }
    for (int y = 0; y < 8; y++) {
        const uint8_t *l = rgb + (y * 16 + 2) * 3, *r = rgb + (y * 16 + 13) * 3;
        CHECK(l[0] > 170 && l[2] < 70 && r[0] < 70 && r[2] > 170);
    }
    free(rgb);
    /* cut short: refused, by the header or the decoder, with the name */
    memset(&err, 0, sizeof err);
    CHECK(sdm_image_decode(data, n * 2 / 3, format, 16, 8, SDM_FIT_CROP, &rgb, &err) != 0 && !rgb);
    CHECK_CONTAINS(err.msg, format);
}

/* ---- the recipe's keys -------------------------------------------------------- */

static sdm_recipe *load_with(const char *name, const char *yaml, const sdm_recipe_override *ov, int n, sdm_error *err)
{
    sdm_recipe *r = NULL;

    memset(err, 0, sizeof *err);
    sdm_recipe_load_string_with(name, yaml, strlen(yaml), ov, n, &r, err);
    return r;
}

static void test_recipe_keys(void)
{
    const char *yaml =
        "image: base.png\nstrength: 0.3\nfit: pad\n"
        "keyframes:\n  - a lake\n  - {prompt: a sea, image: own.jpg, strength: 0.9, fit: stretch}\n"
        "  - {prompt: a sky, image: /abs/sky.webp}\n";
    const sdm_recipe_override ov[] = { { "--image x.png", "image", "\"x.png\"" },
                                       { "--strength 0.5", "strength", "0.5" } };
    sdm_error err;
    sdm_recipe *r = load_with("scenes/a.yaml", yaml, NULL, 0, &err);

    CHECK(r && r->n_keyframes == 3);
    if (r && r->n_keyframes == 3) {
        CHECK_STR(r->keyframes[0].image, "scenes/base.png");
        CHECK_NEAR(r->keyframes[0].strength, 0.3, 0);
        CHECK_INT(r->keyframes[0].fit, SDM_FIT_PAD);
        CHECK_STR(r->keyframes[1].image, "scenes/own.jpg");
        CHECK_NEAR(r->keyframes[1].strength, 0.9, 0);
        CHECK_INT(r->keyframes[1].fit, SDM_FIT_STRETCH);
        CHECK_STR(r->keyframes[2].image, "/abs/sky.webp");
        CHECK(sdm_recipe_has_images(r));
    }
    sdm_recipe_free(&r);
    /* the command line's picture and strength replace every keyframe's own, relative to the working directory */
    r = load_with("scenes/a.yaml", yaml, ov, 2, &err);
    for (int k = 0; r && k < r->n_keyframes; k++) {
        CHECK_STR(r->keyframes[k].image, "x.png");
        CHECK_NEAR(r->keyframes[k].strength, 0.5, 0);
    }
    sdm_recipe_free(&r);
    r = load_with("w.yaml", "walk: {prompt: a lake, image: p.png, strength: 0.25, fit: crop, closed: true}\n", NULL, 0,
                  &err);
    CHECK(r && r->walk && r->n_keyframes == 1);
    if (r && r->walk) {
        CHECK_STR(r->walk->image, "p.png");
        CHECK_STR(r->keyframes[0].image, "p.png");
        CHECK_NEAR(r->keyframes[0].strength, 0.25, 0);
    }
    sdm_recipe_free(&r);
    r = load_with("t.yaml", "keyframes: [a lake]\n", NULL, 0, &err);
    CHECK(r && !sdm_recipe_has_images(r) && !r->keyframes[0].image);
    CHECK(r && sdm_keyframe_strength(&r->keyframes[0]) == 1.0);
    sdm_recipe_free(&r);
    r = load_with("t.yaml", "keyframes:\n  - {prompt: a lake, image: p.png, strength: 1.5}\n", NULL, 0, &err);
    CHECK(!r && err.code == SDM_EXIT_USAGE);
    CHECK_CONTAINS(err.msg, "t.yaml:2:");
    CHECK_CONTAINS(err.msg, "'strength'");
    r = load_with("t.yaml", "fit: zoom\nkeyframes: [a lake]\n", NULL, 0, &err);
    CHECK(!r && err.code == SDM_EXIT_USAGE);
    CHECK_CONTAINS(err.msg, "crop, pad or stretch");
    r = load_with("t.yaml", "keyframes:\n  - {prompt: a lake, image: }\n", NULL, 0, &err);
    CHECK(!r && err.code == SDM_EXIT_USAGE);
    CHECK_CONTAINS(err.msg, "'image'");
}

/* ---- image starts against closed forms -------------------------------------- */

/* The test picture: a few soft colour bands, in [0,255]. */
static void write_picture(const char *path)
{
    uint8_t pic[W * H * 3];
    sdm_error err = { 0 };

    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = pic + (y * W + x) * 3;
            p[0] = (uint8_t)(128 + 100 * sin(x * 0.09));
            p[1] = (uint8_t)(128 + 90 * cos(y * 0.07));
            p[2] = (uint8_t)(60 + 2 * x);
        }
    if (sdm_png_write(path, pic, W, H, NULL, path, &err))
        fprintf(stderr, "%s\n", err.msg);
}

/* z = scaling·(mean + std·eps) of the picture, as diffusers' image-to-image
 * draws it: the encoder run on the pixels directly, eps the seed's first
 * draw; *noise the second draw (the initial noise). */
static float *picture_latent(sdm_engine *e, const char *path, uint64_t seed, float **noise)
{
    const sdm_bundle *b = sdm_engine_bundle(e);
    int64_t ps[4] = { 1, 3, H, W }, ls[4] = { 1, 4, LAT, LAT };
    size_t n = 4 * LAT * LAT;
    float *px = malloc(sizeof *px * 3 * W * H), *m = NULL, *eps = NULL, *z = malloc(sizeof *z * n);
    uint8_t *rgb = NULL;
    sdm_module *enc = NULL;
    sdm_tensor *x = NULL, *mom = NULL, *e0 = NULL, *e1 = NULL;
    sdm_generator *g = NULL;
    sdm_error err = { 0 };

    CHECK_INT(sdm_image_load(path, W, H, SDM_FIT_CROP, &rgb, &err), 0);
    for (int i = 0; rgb && i < W * H; i++)
        for (int c = 0; c < 3; c++)
            px[c * W * H + i] = 2.0f * ((float)rgb[3 * i + c] / 255.0f) - 1.0f;
    CHECK(sdm_module_load(b->vae_encoder, cpu, &enc) == 0);
    CHECK(sdm_tensor_from_host(px, SDM_F32, ps, 4, cpu, &x) == 0);
    CHECK(enc && sdm_module_call(enc, NULL, &x, 1, &mom) == 0);
    CHECK(sdm_generator_new(seed, &g) == 0 && sdm_generator_randn(g, ls, 4, cpu, &e0) == 0 &&
          sdm_generator_randn(g, ls, 4, cpu, &e1) == 0);
    m = mom ? host_f32(mom) : NULL;
    eps = e0 ? host_f32(e0) : NULL;
    *noise = e1 ? host_f32(e1) : NULL;
    for (size_t i = 0; m && eps && i < n; i++) {
        float sd = expf(0.5f * fminf(fmaxf(m[n + i], -30.0f), 20.0f));
        z[i] = (float)b->scaling_factor * (m[i] + sd * eps[i]);
    }
    free(px);
    free(m);
    free(eps);
    free(rgb);
    sdm_module_free(&enc);
    sdm_tensor_free(&x);
    sdm_tensor_free(&mom);
    sdm_tensor_free(&e0);
    sdm_tensor_free(&e1);
    sdm_generator_free(&g);
    return z;
}

/* DDIM (eta 0) from the picture's latent noised to the start's timestep,
 * on a perfect denoiser toward x0: eps stays (x_k − sqrt(a_k)·x0)/sqrt(1−a_k)
 * through every step, so the final latent is sqrt(a_f)·x0 + sqrt(1−a_f)·eps. */
static void ddim_image_closed_form(const sdm_bundle *b, int steps, int start, const float *x0, const float *z,
                                   const float *noise, size_t n, double *out)
{
    double *ac = malloc(sizeof *ac * b->train_steps);
    int tk = (steps - 1 - start) * (b->train_steps / steps) + b->steps_offset;
    double ak, af;

    sdm_alphas_cumprod(b, ac);
    ak = ac[tk];
    af = b->set_alpha_to_one ? 1.0 : ac[0];
    for (size_t i = 0; i < n; i++) {
        double xk = sqrt(ak) * z[i] + sqrt(1 - ak) * noise[i];
        double eps = (xk - sqrt(ak) * x0[i]) / sqrt(1 - ak);
        out[i] = sqrt(af) * x0[i] + sqrt(1 - af) * eps;
    }
    free(ac);
}

static int render_frames(const char *yaml, int batch, const char *frames, capture *c)
{
    sdm_error err = { 0 };
    sdm_render_params p = sdm_render_default_params();
    sdm_render_stats st;

    p.write_outputs = 0; /* frames only: the recipe's default out/test.mp4 may be the user's */
    p.frames = frames;
    p.on_frame = capture_frame;
    p.user = c;
    p.batch = batch;
    return render_text(yaml, model_dir, &p, NULL, &st, &err);
}

static int render_yaml(const char *yaml, int batch, capture *c)
{
    return render_frames(yaml, batch, NULL, c);
}

/* The decoded frame of latent v (host floats). */
static uint8_t *decode_host(sdm_engine *e, const float *v)
{
    int64_t ls[4] = { 1, 4, LAT, LAT };
    sdm_tensor *t = NULL, *rgb = NULL;
    uint8_t *img = malloc(W * H * 3);
    sdm_error err = { 0 };

    CHECK(sdm_tensor_from_host(v, SDM_F32, ls, 4, cpu, &t) == 0);
    CHECK_INT(sdm_engine_decode(e, t, &rgb, &err), 0);
    CHECK(rgb && sdm_tensor_to_host(rgb, SDM_U8, img, W * H * 3) == 0);
    sdm_tensor_free(&t);
    sdm_tensor_free(&rgb);
    return img;
}

static char *image_recipe(const char *pic, double strength, const char *sampler)
{
    static char y[1024];
    if (snprintf(y, sizeof y,
                 "width: %d\nheight: %d\nsteps: 10\nsampler: %s\nguidance: 1\nseed: 5\n"
                 "keyframes:\n  - {prompt: a quiet lake at dawn, image: \"%s\", strength: %g}\n",
                 W, H, sampler, pic, strength) >= (int)sizeof y)
        CHECK(0);
    return y;
}

/* The pipeline's own pieces (conditioner, image-start schedule, denoiser)
 * against the closed form, to 1e-4; then the render's frame against its
 * decode, to 1/255. */
static void image_start_case(sdm_engine *e, sdm_denoiser *d, sdm_module *unet, const char *pic, double strength)
{
    const sdm_bundle *b = sdm_engine_bundle(e);
    const char *yaml = image_recipe(pic, strength, "ddim");
    size_t n = 4 * LAT * LAT;
    sdm_recipe *r = NULL;
    sdm_plan plan = { 0 };
    sdm_conditioner *c = NULL;
    sdm_frame_cond fc = { 0 };
    sdm_schedule_set set;
    sdm_sampler_params sp = sdm_sampler_default_params();
    const sdm_schedule *s = NULL;
    const sdm_tensor *emb = NULL;
    sdm_tensor *x = NULL, *lat = NULL, *x0t = NULL;
    sdm_error err = { 0 };
    float *noise = NULL, *z = picture_latent(e, pic, 5, &noise), *x0 = NULL, *got = NULL;
    double *want = malloc(sizeof *want * n), worst = 0;
    int start = -2;
    capture cap = { 0 };

    memset(&set, 0, sizeof set);
    sp.kind = SDM_SAMPLER_DDIM;
    sp.steps = 10;
    CHECK_INT(sdm_recipe_load_string("t.yaml", yaml, strlen(yaml), &r, &err), 0);
    CHECK_INT(r ? sdm_plan_make(r, &plan, &err) : -1, 0);
    CHECK_INT(r ? sdm_conditioner_new(e, r, LAT, LAT, &c, &err) : -1, 0);
    if (c && plan.n_renders == 1) {
        start = sdm_conditioner_start(c, &plan.renders[0], 10);
        CHECK_INT(sdm_conditioner_frame(c, &plan.renders[0], &fc, &err), 0);
    }
    CHECK_INT(start, 10 - (int)floor(10 * strength));
    CHECK_INT(sdm_schedule_set_make(b, &sp, &set, &err), 0);
    s = sdm_schedule_set_get(&set, start, &err);
    CHECK(s && s->n_steps == 10 - start && fc.image);
    if (s && fc.image && !sdm_tensor_axpby(s->start_x, fc.image, s->start_noise, fc.noise, &x))
        CHECK_INT(denoise(d, s, x, fc.cond, NULL, 1.0, NULL, NULL, &lat, &err), 0);
    sdm_engine_embed(e, "a quiet lake at dawn", &emb, &err);
    x0t = emb ? target(unet, emb, LAT, LAT) : NULL;
    x0 = x0t ? host_f32(x0t) : NULL;
    got = lat ? host_f32(lat) : NULL;
    if (x0 && z && noise && got) {
        ddim_image_closed_form(b, 10, start, x0, z, noise, n, want);
        for (size_t i = 0; i < n; i++)
            worst = fmax(worst, fabs(got[i] - want[i]));
        printf("ddim image start, strength %.1f (step %d): max |latent - closed form| = %.2e\n", strength, start,
               worst);
        CHECK(worst <= 1e-4);
        for (size_t i = 0; i < n; i++)
            got[i] = (float)want[i];
        CHECK_INT(render_yaml(yaml, 0, &cap), 0);
        if (cap.n == 1) {
            uint8_t *img = decode_host(e, got);
            double maxd = max_abs_u8(img, cap.frames[0], W * H * 3, NULL);
            printf("  rendered frame vs decode(closed form): max %.0f/255\n", maxd);
            CHECK(maxd <= 1);
            free(img);
        }
    } else {
        CHECK(0);
    }
    capture_free(&cap);
    free(want);
    free(z);
    free(noise);
    free(x0);
    free(got);
    sdm_tensor_free(&x);
    sdm_tensor_free(&lat);
    sdm_tensor_free(&x0t);
    sdm_frame_cond_clear(&fc);
    sdm_schedule_set_free(&set);
    sdm_conditioner_free(&c);
    sdm_plan_free(&plan);
    sdm_recipe_free(&r);
}

/* Strength 0: no step runs; the frame is the picture encoded and decoded.
 * The analytic encoder inverts the decoder on its range: a picture the
 * decoder made comes back to within the rounding of its pixels. */
static void test_strength_zero(sdm_engine *e, const char *pic)
{
    const char *made = tmp_path("decoded.png");
    float *noise = NULL, *z = picture_latent(e, pic, 5, &noise);
    uint8_t *dz = z ? decode_host(e, z) : NULL, *again = NULL;
    sdm_error err = { 0 };
    capture cap = { 0 };
    double maxd, mean;

    CHECK_INT(render_yaml(image_recipe(pic, 0.0, "euler"), 0, &cap), 0);
    if (cap.n == 1 && dz) {
        maxd = max_abs_u8(dz, cap.frames[0], W * H * 3, NULL);
        printf("strength 0: max |frame - decode(encode(picture))| = %.0f/255\n", maxd);
        CHECK(maxd <= 1);
    }
    capture_free(&cap);
    /* a picture in the decoder's range, through a strength-0 render */
    if (dz && !sdm_png_write(made, dz, W, H, NULL, made, &err)) {
        CHECK_INT(render_yaml(image_recipe(made, 0.0, "ddim"), 0, &cap), 0);
        if (cap.n == 1) {
            maxd = max_abs_u8(dz, cap.frames[0], W * H * 3, &mean);
            printf("strength 0 on a decoded picture: max %.0f/255, mean %.3f/255 off it\n", maxd, mean);
            CHECK(maxd <= 3 && mean <= 0.5);
        }
    }
    capture_free(&cap);
    free(again);
    free(dz);
    free(z);
    free(noise);
}

/* A closed walk around a picture: the step from the last frame back to
 * the first is like the others; the picture and the noise stay. */
static void test_closed_walk(const char *pic)
{
    char yaml[1024];
    capture cap = { 0 };
    double steps[16], seam = 0, lo = INFINITY, hi = 0, mean;

    if (snprintf(yaml, sizeof yaml,
                 "width: %d\nheight: %d\nsteps: 8\nsampler: ddim\nguidance: 1\n"
                 "walk: {prompt: a quiet lake at dawn, image: \"%s\", strength: 0.7, seed: 3, frames: 12, sigma: 0.4, "
                 "noise_seed: 4, closed: true}\n",
                 W, H, pic) >= (int)sizeof yaml)
        return;
    CHECK_INT(render_yaml(yaml, 4, &cap), 0);
    CHECK_INT(cap.n, 12);
    if (cap.n != 12)
        goto end;
    for (int k = 0; k + 1 < 12; k++) {
        max_abs_u8(cap.frames[k], cap.frames[k + 1], W * H * 3, &steps[k]);
        lo = fmin(lo, steps[k]);
        hi = fmax(hi, steps[k]);
    }
    max_abs_u8(cap.frames[11], cap.frames[0], W * H * 3, &seam);
    max_abs_u8(cap.frames[0], cap.frames[6], W * H * 3, &mean);
    printf("closed walk around a picture: steps %.2f..%.2f/255, seam %.2f/255, frame 0 vs 6 %.2f/255\n", lo, hi, seam,
           mean);
    CHECK(hi > 0.2); /* it moves */
    CHECK(seam <= 1.5 * hi && seam >= 0.3 * lo);
end:
    capture_free(&cap);
}

/* Morphs around pictures: two pictures mixed (lerp and slerp), a picture to
 * a prompt alone (strength to 1), seed morphs; frames the same whatever the
 * batch (frames of several starts are batched by start), and the ends equal
 * the keyframes rendered alone. */
static void test_morphs(const char *pic, const char *pic2)
{
    char yaml[2048], alone[1024];
    capture one = { 0 }, four = { 0 }, a = { 0 };
    const char *interps[] = { "lerp", "slerp" };

    for (int i = 0; i < 2; i++) {
        if (snprintf(yaml, sizeof yaml,
                     "width: %d\nheight: %d\nsteps: 10\nsampler: euler_a\nguidance: 3\nseed: 5\ninterp: %s\n"
                     "keyframes:\n"
                     "  - {prompt: a quiet lake at dawn, image: \"%s\", strength: 0.4, frames: 4}\n"
                     "  - {prompt: a stormy sea, image: \"%s\", strength: 0.8, seed: 6, frames: 4, fit: pad}\n"
                     "  - {prompt: a forest, seed: 7}\n",
                     W, H, interps[i], pic, pic2) >= (int)sizeof yaml)
            return;
        CHECK_INT(render_yaml(yaml, 1, &one), 0);
        CHECK_INT(render_yaml(yaml, 4, &four), 0);
        CHECK_INT(one.n, 9);
        CHECK_INT(four.n, 9);
        for (int k = 0; k < one.n && k < four.n; k++)
            CHECK(!memcmp(one.frames[k], four.frames[k], W * H * 3));
        /* a frame of the transition rendered alone (--frames 6) is the same */
        CHECK_INT(render_frames(yaml, 0, "6", &a), 0);
        CHECK(a.n == 1 && one.n == 9 && !memcmp(a.frames[0], one.frames[6], W * H * 3));
        capture_free(&a);
        if (snprintf(alone, sizeof alone,
                     "width: %d\nheight: %d\nsteps: 10\nsampler: euler_a\nguidance: 3\nseed: 5\n"
                     "keyframes:\n  - {prompt: a stormy sea, image: \"%s\", strength: 0.8, seed: 6, fit: pad}\n"
                     "  - {prompt: a forest, seed: 7}\n",
                     W, H, pic2) >= (int)sizeof alone)
            return;
        CHECK_INT(render_yaml(alone, 1, &a), 0);
        if (a.n == 17 && one.n == 9) {
            CHECK(!memcmp(a.frames[0], one.frames[4], W * H * 3));
            CHECK(!memcmp(a.frames[16], one.frames[8], W * H * 3));
        } else {
            CHECK_INT(a.n, 17);
        }
        if (one.n == 9) {
            double d1, d2;
            max_abs_u8(one.frames[4], one.frames[5], W * H * 3, &d1);
            max_abs_u8(one.frames[7], one.frames[8], W * H * 3, &d2);
            printf("morph (%s): picture to prompt, steps %.1f/255 at the picture, %.1f/255 into the prompt\n",
                   interps[i], d1, d2);
            CHECK(d1 > 0 && d2 > 0);
        }
        capture_free(&one);
        capture_free(&four);
        capture_free(&a);
    }
}

/* The schedule of an image start: diffusers' step for a strength, and the
 * evaluations from it (DDIM's are the whole schedule's from that step on). */
static void test_start_steps(const sdm_bundle *b)
{
    sdm_sampler_params p = sdm_sampler_default_params();
    sdm_schedule full = { 0 }, s = { 0 };
    sdm_error err = { 0 };

    CHECK_INT(sdm_image_start_step(50, 0.8), 10);
    CHECK_INT(sdm_image_start_step(50, 0.5), 25);
    CHECK_INT(sdm_image_start_step(10, 0.3), 7);
    CHECK_INT(sdm_image_start_step(10, 1.0), 0);
    CHECK_INT(sdm_image_start_step(10, 0.05), 10);
    CHECK_INT(sdm_image_start_step(10, 0.0), 10);
    const sdm_sampler kinds[] = { SDM_SAMPLER_DDIM,     SDM_SAMPLER_EULER, SDM_SAMPLER_HEUN,  SDM_SAMPLER_PNDM,
                                  SDM_SAMPLER_DPMPP_2M, SDM_SAMPLER_LMS,   SDM_SAMPLER_UNIPC, SDM_SAMPLER_LCM };
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        int evals = kinds[k] == SDM_SAMPLER_HEUN   ? 2 * (10 - 4) - 1
                    : kinds[k] == SDM_SAMPLER_PNDM ? 10 + 1 - 4
                                                   : 10 - 4;
        p.kind = kinds[k];
        p.steps = 10;
        p.from_image = 0;
        CHECK_INT(sdm_schedule_make(b, &p, &full, &err), 0);
        p.from_image = 1;
        p.start = 4;
        CHECK_INT(sdm_schedule_make(b, &p, &s, &err), 0);
        CHECK_INT(s.n_steps, evals);
        CHECK_NEAR(s.init_sigma, 1.0, 0);
        /* the first evaluation is at the start's timestep (pndm: the PLMS entry before it) */
        if (s.n_steps && kinds[k] != SDM_SAMPLER_PNDM)
            CHECK_NEAR(s.steps[0].t, full.steps[kinds[k] == SDM_SAMPLER_HEUN ? 8 : 4].t, 0);
        if (kinds[k] == SDM_SAMPLER_PNDM && s.n_steps > 1)
            CHECK(s.steps[0].t == full.steps[4].t && s.steps[1].t == full.steps[5].t);
        if (kinds[k] == SDM_SAMPLER_DDIM)
            for (int i = 0; i < s.n_steps; i++)
                CHECK(!memcmp(&s.steps[i], &full.steps[4 + i], sizeof s.steps[i]));
        sdm_schedule_free(&full);
        sdm_schedule_free(&s);
    }
    p.kind = SDM_SAMPLER_DDIM;
    p.start = 10;
    CHECK_INT(sdm_schedule_make(b, &p, &s, &err), 0);
    CHECK_INT(s.n_steps, 0);
    sdm_schedule_free(&s);
}

/* ---- bad pictures, from the command line ------------------------------------- */

static void run_bad(const char *cmd, const char *model, const char *pic, const char *why)
{
    char recipe[PATH_MAX], text[512], out[8192];
    char *argv[] = { (char *)test_sdmorph(),      (char *)cmd, recipe, "--model", (char *)model, "-o",
                     (char *)tmp_path("bad.mp4"), NULL };

    snprintf(recipe, sizeof recipe, "%s/bad.yaml", tmp);
    snprintf(text, sizeof text,
             "width: 64\nheight: 64\nsteps: 4\nkeyframes:\n  - prompt: a lake\n  - {prompt: a sea, image: \"%s\"}\n",
             pic);
    write_file(recipe, text);
    CHECK_INT(run(argv, out, sizeof out, NULL), SDM_EXIT_USAGE);
    CHECK_CONTAINS(out, "bad.yaml:6:5: keyframe 1: ");
    CHECK_CONTAINS(out, pic);
    CHECK_CONTAINS(out, why);
    if (!strstr(out, why))
        fprintf(stderr, "%s %s: %s\n", cmd, pic, out);
}

/* A bundle whose model files are empty: model.yaml reads, nothing loads. */
static void unloadable_bundle(const char *from, const char *dir)
{
    const char *files[] = { "text_encoder.pt",
                            "unet.pt",
                            "vae_decoder.pt",
                            "vae_encoder.pt",
                            "vocab.json",
                            "merges.txt",
                            "token_embedding.safetensors" };
    char src[PATH_MAX + 64], dst[PATH_MAX + 64];
    long n;
    char *yaml;

    mkdir(dir, 0755);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        if (snprintf(dst, sizeof dst, "%s/%s", dir, files[i]) < (int)sizeof dst)
            write_file(dst, "");
    }
    if (snprintf(src, sizeof src, "%s/model.yaml", from) >= (int)sizeof src ||
        snprintf(dst, sizeof dst, "%s/model.yaml", dir) >= (int)sizeof dst)
        return;
    yaml = slurp_file(src, &n);
    if (yaml)
        write_file(dst, yaml);
    free(yaml);
}

static void test_bad_pictures(void)
{
    uint8_t b[64], *png = NULL;
    char model[PATH_MAX], broken[PATH_MAX + 64], old[PATH_MAX + 64], out[8192], cmd[PATH_MAX * 5], good[PATH_MAX];
    long n = 0;

    if (!realpath(model_dir, model))
        return;
    snprintf(good, sizeof good, "%s", tmp_path("good.png"));
    write_picture(good);
    png = (uint8_t *)slurp_file(good, &n);
    if (png && n > 100)
        write_bytes(tmp_path("truncated.png"), png, (size_t)n / 2);
    free(png);
    write_file(tmp_path("text.png"), "this is not a picture\n");
    write_bytes(tmp_path("huge.png"), b, png_header_only(b, 30000, 30000));
    snprintf(broken, sizeof broken, "%s/unloadable", tmp);
    unloadable_bundle(model, broken);
    for (int i = 0; i < 2; i++) {
        const char *cmd_name = i ? "render" : "check";
        /* render on a bundle that cannot load: the picture is refused first */
        const char *m = i ? broken : model;
        run_bad(cmd_name, m, tmp_path("truncated.png"), "truncated");
        run_bad(cmd_name, m, tmp_path("text.png"), "not an image");
        run_bad(cmd_name, m, tmp_path("huge.png"), "too large (30000x30000");
        run_bad(cmd_name, m, tmp_path("missing.png"), "cannot open the picture: No such file");
    }
    /* a bundle from before the VAE encoder: pictures are refused, text renders */
    snprintf(old, sizeof old, "%s/old", tmp);
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s' && sed -i '/vae_encoder/d' '%s/model.yaml' && rm '%s/vae_encoder.pt'",
             model, old, old, old);
    CHECK_INT(system(cmd), 0);
    {
        char recipe[PATH_MAX + 64], text[PATH_MAX + 128];
        char *argv[] = { (char *)test_sdmorph(),      "render",   recipe, "--model", old, "-q", "-o",
                         (char *)tmp_path("old.png"), "--frames", "0",    NULL };
        snprintf(recipe, sizeof recipe, "%s/old.yaml", tmp);
        snprintf(text, sizeof text,
                 "width: 64\nheight: 64\nsteps: 4\nkeyframes:\n  - {prompt: a lake, image: \"%s\"}\n", good);
        write_file(recipe, text);
        CHECK_INT(run(argv, out, sizeof out, NULL), SDM_EXIT_USAGE);
        CHECK_CONTAINS(out, "has no VAE encoder");
        write_file(recipe, "width: 64\nheight: 64\nsteps: 4\nkeyframes:\n  - prompt: a lake\n");
        CHECK_INT(run(argv, out, sizeof out, NULL), 0);
    }
}

/* --image and --strength start any recipe from a picture, unedited. */
static void test_cli_image(const char *pic)
{
    char recipe[PATH_MAX], out[8192];
    char *argv[] = { (char *)test_sdmorph(),
                     "render",
                     recipe,
                     "-q",
                     "--image",
                     (char *)pic,
                     "--strength",
                     "0",
                     "--frames",
                     "0",
                     "-o",
                     (char *)tmp_path("cli.png"),
                     NULL };
    char *plain[] = { (char *)test_sdmorph(),        "render", recipe, "-q", "--frames", "0", "-o",
                      (char *)tmp_path("plain.png"), NULL };
    char *a, *b;
    long na, nb;

    snprintf(recipe, sizeof recipe, "%s/cli.yaml", tmp);
    write_file(recipe,
               "width: 64\nheight: 64\nsteps: 6\nkeyframes:\n  - {prompt: a lake, strength: 0.9}\n"
               "  - a sea\n");
    CHECK_INT(run(argv, out, sizeof out, NULL), 0);
    CHECK_INT(run(plain, out, sizeof out, NULL), 0);
    a = slurp_file(tmp_path("cli.png"), &na);
    b = slurp_file(tmp_path("plain.png"), &nb);
    CHECK(a && b && (na != nb || memcmp(a, b, (size_t)na)));
    free(a);
    free(b);
}

int main(void)
{
    sdm_engine *e = NULL;
    sdm_denoiser *d = NULL;
    sdm_module *unet = NULL;
    char pic[PATH_MAX], pic2[PATH_MAX];

    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_fit();
    test_headers();
    expect_halves(jpeg_16x8, sizeof jpeg_16x8, "JPEG");
    expect_halves(webp_16x8, sizeof webp_16x8, "WebP");
    test_recipe_keys();
    e = analytic_engine(model_dir, sizeof model_dir);
    if (!e)
        return test_report();
    snprintf(pic, sizeof pic, "%s", tmp_path("picture.png"));
    snprintf(pic2, sizeof pic2, "%s", tmp_path("wide.png"));
    write_picture(pic);
    {
        uint8_t wide[96 * 40 * 3];
        sdm_error err = { 0 };
        for (int i = 0; i < 96 * 40 * 3; i++)
            wide[i] = (uint8_t)(i * 7 % 251);
        sdm_png_write(pic2, wide, 96, 40, NULL, pic2, &err);
    }
    d = engine_denoiser(e);
    unet = analytic_unet(e);
    CHECK(d && unet);
    test_start_steps(sdm_engine_bundle(e));
    if (d && unet) {
        const double strengths[] = { 0.3, 0.6, 1.0 };
        for (int i = 0; i < 3; i++)
            image_start_case(e, d, unet, pic, strengths[i]);
    }
    test_strength_zero(e, pic);
    test_closed_walk(pic);
    test_morphs(pic, pic2);
    if (file_exists(test_sdmorph())) {
        test_bad_pictures();
        test_cli_image(pic);
    } else {
        SKIP("./sdmorph not built: the command-line checks");
    }
    sdm_module_free(&unet);
    sdm_denoiser_free(&d);
    sdm_engine_free(&e);
    {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd))
            fprintf(stderr, "could not remove %s\n", tmp);
    }
    return test_report();
}
