/* A UNet that fails on purpose, wrapped around a render's own (the render
 * hooks' wrap_unet, render_hooks.h): out of memory on calls of more than
 * max_inputs inputs (a guided frame is two; -1: no limit) and on every call
 * from call fail_from on (0: never), and slower by sleep_us a call. The out
 * of memory is a real status, from an allocation no machine can grant, as a
 * GPU gives one. */
#ifndef SDM_TEST_UNET_FAULTS_H
#define SDM_TEST_UNET_FAULTS_H

#include <stdint.h>
#include <unistd.h>

#include "denoiser.h"
#include "torch_error.h"

typedef struct {
    sdm_unet_fn real;
    void *real_user;
    int64_t max_inputs;
    int fail_from;
    int sleep_us;
    int calls; /* calls made */
    int failed; /* calls that ran out of memory */
} unet_faults;

static inline int unet_faults_call(void *user, sdm_tensor *const *args, sdm_tensor **out, sdm_error *err)
{
    unet_faults *u = user;
    const int64_t huge[2] = { 1LL << 30, 1LL << 30 };
    sdm_tensor *t = NULL;
    sdm_torch_status st;

    u->calls++;
    if (u->sleep_us)
        usleep((useconds_t)u->sleep_us);
    if ((u->max_inputs < 0 || sdm_tensor_dim(args[0], 0) <= u->max_inputs) &&
        (!u->fail_from || u->calls < u->fail_from))
        return u->real(u->real_user, args, out, err);
    u->failed++;
    st = sdm_tensor_zeros(SDM_F32, huge, 2, sdm_tensor_device(args[0]), &t);
    sdm_tensor_free(&t);
    return sdm_torch_error(err, st, "UNet");
}

static inline void unet_faults_wrap(void *user, sdm_unet_fn *fn, void **fn_user)
{
    unet_faults *u = user;

    u->real = *fn;
    u->real_user = *fn_user;
    *fn = unet_faults_call;
    *fn_user = u;
}

#endif
