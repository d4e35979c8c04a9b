/* Helpers for tests on the analytic bundle: the engine on it, tensors to
 * host floats, the UNet's exact answer x0 = target(emb, h, w), and the
 * sampling loop on the engine's UNet as the render builds it. */
#ifndef SDM_TEST_ANALYTIC_H
#define SDM_TEST_ANALYTIC_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "denoiser.h"
#include "engine.h"
#include "test.h"

/* The engine on the analytic bundle `make` builds (its directory in dir), on
 * the CPU with one thread; NULL where there is none (a skip, said) or it
 * does not open (a failed check). */
static inline sdm_engine *analytic_engine(char *dir, size_t len)
{
    const sdm_device cpu = { SDM_DEVICE_CPU, 0 };
    sdm_engine *e = NULL;
    sdm_error err = { 0 };
    struct stat st;

    snprintf(dir, len, "%s/models/analytic", test_build_dir());
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
    sdm_denoiser_params p = { sdm_engine_device(e), sdm_engine_dtype(e), sdm_engine_unet_call, e, 0.0 };
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

#endif
