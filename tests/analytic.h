/* Helpers for tests on the analytic bundle: the engine on it, tensors to
 * host floats, and the UNet's exact answer x0 = target(emb, h, w). */
#ifndef SDM_TEST_ANALYTIC_H
#define SDM_TEST_ANALYTIC_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

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

static inline sdm_tensor *target(sdm_engine *e, const sdm_tensor *emb, int h, int w)
{
    sdm_arg a[3] = { sdm_arg_tensor(emb), sdm_arg_int(h), sdm_arg_int(w) };
    sdm_tensor *x0 = NULL;
    if (sdm_module_call_args(sdm_engine_unet(e), "target", a, 3, &x0))
        fprintf(stderr, "target: %s\n", sdm_torch_last_error());
    return x0;
}

#endif
