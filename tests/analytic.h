/* Helpers for tests on the analytic bundle: the engine on it, tensors to
 * host floats, the UNet's exact answer x0 = target(emb, h, w), and the
 * sampling loop on the engine's UNet as the render builds it. */
#ifndef SDM_TEST_ANALYTIC_H
#define SDM_TEST_ANALYTIC_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "denoiser.h"
#include "engine.h"
#include "render_hooks.h"
#include "test.h"

/* The engine on the analytic bundle build/models/NAME that `make` builds
 * (its directory in dir), on the CPU with one thread; NULL where there is
 * none (a skip, said) or it does not open (a failed check). */
static inline sdm_engine *analytic_engine_named(const char *name, char *dir, size_t len)
{
    const sdm_device cpu = { SDM_DEVICE_CPU, 0 };
    sdm_engine *e = NULL;
    sdm_error err = { 0 };
    struct stat st;

    snprintf(dir, len, "%s/models/%s", test_build_dir(), name);
    if (stat(dir, &st)) {
        SKIP("no analytic bundle (run make first)");
        return NULL;
    }
    sdm_torch_set_threads(1);
    CHECK(sdm_engine_open(dir, cpu, &e, &err) == 0);
    if (!e)
        fprintf(stderr, "%s\n", err.msg);
    return e;
}

static inline sdm_engine *analytic_engine(char *dir, size_t len)
{
    return analytic_engine_named("analytic", dir, len);
}

static inline float *host_f32(const sdm_tensor *t)
{
    size_t n = (size_t)sdm_tensor_numel(t);
    float *v = malloc(n * sizeof *v);
    if (v && sdm_tensor_to_host(t, SDM_F32, v, n * sizeof *v)) {
        free(v);
        v = NULL;
    }
    return v;
}

/* The bundle's UNet loaded apart from the engine's (which keeps its
 * modules to itself), for its analytic `target` method. */
static inline sdm_module *analytic_unet(const sdm_engine *e)
{
    sdm_module *m = NULL;
    if (sdm_module_load(sdm_engine_bundle(e)->unet, sdm_engine_device(e), &m))
        fprintf(stderr, "analytic unet: %s\n", sdm_torch_last_error());
    return m;
}

static inline sdm_tensor *target(sdm_module *unet, const sdm_tensor *emb, int h, int w)
{
    sdm_arg a[3] = { sdm_arg_tensor(emb), sdm_arg_int(h), sdm_arg_int(w) };
    sdm_tensor *x0 = NULL;
    if (!unet || sdm_module_call_args(unet, "target", a, 3, &x0))
        fprintf(stderr, "target: %s\n", sdm_torch_last_error());
    return x0;
}

/* A denoiser on the engine's UNet, as the render makes one. */
static inline sdm_denoiser *engine_denoiser(sdm_engine *e)
{
    sdm_denoiser_params p = {
        sdm_engine_device(e), sdm_engine_dtype(e), sdm_engine_unet_call, e, 0.0, sdm_engine_bundle(e)->text2.pooled_size
    };
    sdm_denoiser *d = NULL;
    sdm_error err = { 0 };
    if (sdm_denoiser_new(&p, &d, &err))
        fprintf(stderr, "denoiser: %s\n", err.msg);
    return d;
}

/* One frame (or batch) of noise x through schedule s with one guidance
 * scale g for all: sdm_denoiser_run's return. */
static inline int denoise(sdm_denoiser *d, const sdm_schedule *s, const sdm_tensor *x, const sdm_tensor *cond,
                          const sdm_tensor *uncond, double g, sdm_step_noise_fn noise, void *noise_user,
                          sdm_tensor **out, sdm_error *err)
{
    int B = (int)sdm_tensor_dim(x, 0);
    double *gs = malloc(sizeof *gs * (B > 0 ? B : 1));
    sdm_batch b = { 0 };
    int rc;

    for (int j = 0; gs && j < B; j++)
        gs[j] = g;
    b.latents = x;
    b.cond.cond = cond;
    b.cond.uncond = uncond;
    b.guidance = gs;
    b.noise = noise;
    b.noise_user = noise_user;
    rc = gs ? sdm_denoiser_run(d, s, &b, out, err) : sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    free(gs);
    return rc;
}

/* ---- closed forms and captured frames, shared by the render tests ------ */

/* DDIM (eta 0) on a perfect denoiser toward x0*: every step predicts x0*
 * exactly, so the final latent is sqrt(a_f)·x0* + sqrt(1−a_f)·eps0 with
 * eps0 = (x_T − sqrt(a_T)·x0*)/sqrt(1−a_T). */
static inline void ddim_closed_form(const sdm_bundle *b, int steps, const float *x0, const float *xT, size_t n,
                                    double *out)
{
    double *ac = malloc(sizeof *ac * b->train_steps);
    sdm_alphas_cumprod(b, ac);
    int tT = (steps - 1) * (b->train_steps / steps) + b->steps_offset;
    double aT = ac[tT], af = b->set_alpha_to_one ? 1.0 : ac[0];
    for (size_t i = 0; i < n; i++) {
        double eps = (xT[i] - sqrt(aT) * x0[i]) / sqrt(1 - aT);
        out[i] = sqrt(af) * x0[i] + sqrt(1 - af) * eps;
    }
    free(ac);
}

/* x0* = x0u + g·(x0c − x0u), or x0c when g ≤ 1 (conditional only). */
static inline void guided_target(const float *x0c, const float *x0u, double g, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = g > 1 ? (float)(x0u[i] + g * ((double)x0c[i] - x0u[i])) : x0c[i];
}

typedef struct {
    uint8_t **frames;
    int n, cap, width, height;
} capture;

static inline int capture_frame(void *user, int index, const uint8_t *rgb, int width, int height)
{
    capture *c = user;
    size_t bytes = (size_t)width * height * 3;
    if (index != c->n)
        return -1;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->frames = realloc(c->frames, sizeof *c->frames * c->cap);
    }
    c->frames[c->n] = malloc(bytes);
    memcpy(c->frames[c->n++], rgb, bytes);
    c->width = width;
    c->height = height;
    return 0;
}

static inline void capture_free(capture *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->frames[i]);
    free(c->frames);
    memset(c, 0, sizeof *c);
}

static inline double max_abs_u8(const uint8_t *a, const uint8_t *b, size_t n, double *mean)
{
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        m = fmax(m, d);
        s += d;
    }
    if (mean)
        *mean = s / n;
    return m;
}

/* Renders recipe text (named test.yaml) on the CPU with the bundle in
 * model_dir, the other parameters as p has them (hooks may be NULL);
 * sdm_render_hooked's return, the message said on stderr. */
static inline int render_text(const char *yaml, const char *model_dir, sdm_render_params *p,
                              const sdm_render_hooks *hooks, sdm_render_stats *stats, sdm_error *err)
{
    sdm_recipe *r = NULL;
    int rc;

    if (sdm_recipe_load_string("test.yaml", yaml, strlen(yaml), &r, err)) {
        fprintf(stderr, "recipe: %s\n", err->msg);
        return -1;
    }
    p->model_dir = model_dir;
    p->device.type = SDM_DEVICE_CPU;
    p->device.index = 0;
    rc = sdm_render_hooked(r, p, hooks, stats, err);
    if (rc)
        fprintf(stderr, "render: %s\n", err->msg);
    sdm_recipe_free(&r);
    return rc;
}

#endif
