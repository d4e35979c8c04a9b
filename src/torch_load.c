/* torch_api.h's functions in sdmorph: each loads the shim on first use and
 * calls through.
 *
 * Why: libtorch's static initialisers register thousands of operators, a
 * second of CPU at every start, so sdmorph does not link it. torch_api.cpp
 * (with torch_names.c) is built into a shared object of its own,
 * libsdm_torch.so, linked with libtorch; sdmorph links this file instead,
 * and libtorch is loaded by the first call that needs it. `--version`,
 * check, measure, info, tokenize, import, samplers, join and slurm never
 * make one, and neither does a render refused before its model loads
 * (on a build without CUDA, where no CUDA device is the answer without asking).
 *
 * The shim is looked for in $SDM_TORCH_LIB (only there, when set), beside
 * the executable, in ../lib/sdmorph/ from it (where `make install` puts
 * it) and where the build made it. It must have been built from the same
 * torch_api.h (SDM_TORCH_ABI, a checksum of it: a shim of another version
 * would be called with the wrong arguments). When it cannot be loaded, a
 * call fails as a libtorch call does: SDM_TORCH_ERROR, with
 * sdm_torch_last_error() naming the file and why.
 *
 * The stubs are made from one list (below), each entry the function's
 * parameters and the arguments that pass them on: the compiler checks
 * every stub against its prototype in torch_api.h, and a function added
 * there but not here leaves sdmorph's link with an undefined reference. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "torch_api.h"

#ifndef SDM_TORCH_ABI
#define SDM_TORCH_ABI "?"
#endif
#ifndef SDM_TORCH_BUILT
#define SDM_TORCH_BUILT "build/libsdm_torch.so"
#endif
#define SHIM "libsdm_torch.so"

/* S: returns a status (SDM_TORCH_ERROR when the shim cannot load).
 * V: returns a value (`fail` when it cannot load).
 * D: returns nothing (a setting: loads the shim to apply it).
 * F: frees a handle; never loads the shim (a handle means it is loaded).
 * H: written by hand below. */
#define SDM_TORCH_FUNCTIONS(S, V, D, F, H)                                                                           \
    H(sdm_cuda_device_count)                                                                                         \
    S(sdm_cuda_mem_info, (sdm_device d, size_t * free_b, size_t * total_b), (d, free_b, total_b))                    \
    S(sdm_device_sync, (sdm_device d), (d))                                                                          \
    S(sdm_device_release_cached, (sdm_device d), (d))                                                                \
    H(sdm_device_description)                                                                                        \
    H(sdm_torch_last_error)                                                                                          \
    D(sdm_torch_set_threads, (int n), (n))                                                                           \
    D(sdm_torch_set_deterministic, (int on), (on))                                                                   \
    D(sdm_torch_set_cudnn_benchmark, (int on), (on))                                                                 \
    D(sdm_torch_set_tf32, (int on), (on))                                                                            \
    S(sdm_module_load, (const char *path, sdm_device dev, sdm_module **out), (path, dev, out))                       \
    V(int, sdm_aoti_available, (void), (), 0)                                                                        \
    V(int, sdm_module_has_method, (const sdm_module *m, const char *method), (m, method), 0)                         \
    S(sdm_module_call, (sdm_module * m, const char *method, sdm_tensor *const *args, int nargs, sdm_tensor **out),   \
      (m, method, args, nargs, out))                                                                                 \
    S(sdm_module_call_args, (sdm_module * m, const char *method, const sdm_arg *args, int nargs, sdm_tensor **out),  \
      (m, method, args, nargs, out))                                                                                 \
    V(sdm_dtype, sdm_module_dtype, (const sdm_module *m), (m), SDM_F32)                                              \
    F(sdm_module_free, (sdm_module * *m), (m))                                                                       \
    S(sdm_tensor_from_host,                                                                                          \
      (const void *data, sdm_dtype dtype, const int64_t *shape, int ndim, sdm_device dev, sdm_tensor **out),         \
      (data, dtype, shape, ndim, dev, out))                                                                          \
    S(sdm_tensor_zeros, (sdm_dtype dtype, const int64_t *shape, int ndim, sdm_device dev, sdm_tensor **out),         \
      (dtype, shape, ndim, dev, out))                                                                                \
    S(sdm_tensor_randn, (uint64_t seed, const int64_t *shape, int ndim, sdm_device dev, sdm_tensor **out),           \
      (seed, shape, ndim, dev, out))                                                                                 \
    S(sdm_generator_new, (uint64_t seed, sdm_generator * *out), (seed, out))                                         \
    S(sdm_generator_randn, (sdm_generator * g, const int64_t *shape, int ndim, sdm_device dev, sdm_tensor **out),    \
      (g, shape, ndim, dev, out))                                                                                    \
    F(sdm_generator_free, (sdm_generator * *g), (g))                                                                 \
    S(sdm_tensor_clone, (const sdm_tensor *t, sdm_tensor **out), (t, out))                                           \
    S(sdm_tensor_to, (const sdm_tensor *t, sdm_device dev, sdm_dtype dtype, sdm_tensor **out), (t, dev, dtype, out)) \
    V(int, sdm_tensor_ndim, (const sdm_tensor *t), (t), 0)                                                           \
    V(int64_t, sdm_tensor_dim, (const sdm_tensor *t, int i), (t, i), -1)                                             \
    V(int64_t, sdm_tensor_numel, (const sdm_tensor *t), (t), 0)                                                      \
    V(sdm_dtype, sdm_tensor_dtype, (const sdm_tensor *t), (t), SDM_DTYPE_COUNT)                                      \
    V(sdm_device, sdm_tensor_device, (const sdm_tensor *t), (t), ((sdm_device){ SDM_DEVICE_CPU, 0 }))                \
    S(sdm_tensor_to_host, (const sdm_tensor *t, sdm_dtype dtype, void *dst, size_t bytes), (t, dtype, dst, bytes))   \
    S(sdm_tensor_axpby, (double a, const sdm_tensor *x, double b, const sdm_tensor *y, sdm_tensor **out),            \
      (a, x, b, y, out))                                                                                             \
    S(sdm_tensor_axpby_, (double a, const sdm_tensor *x, double b, sdm_tensor *y), (a, x, b, y))                     \
    S(sdm_tensor_slerp, (const sdm_tensor *a, const sdm_tensor *b, double t, int per_row, sdm_tensor **out),         \
      (a, b, t, per_row, out))                                                                                       \
    S(sdm_tensor_cat, (sdm_tensor *const *ts, int n, sdm_tensor **out), (ts, n, out))                                \
    S(sdm_tensor_narrow, (const sdm_tensor *t, int64_t start, int64_t len, sdm_tensor **out), (t, start, len, out))  \
    S(sdm_tensor_cfg, (const sdm_tensor *both, const sdm_tensor *g, sdm_tensor **out), (both, g, out))               \
    S(sdm_tensor_cfg_rescale, (const sdm_tensor *both, const sdm_tensor *g, double phi, sdm_tensor **out),           \
      (both, g, phi, out))                                                                                           \
    S(sdm_tensor_to_rgb8, (const sdm_tensor *t, sdm_tensor **out), (t, out))                                         \
    S(sdm_tensor_max_abs_diff, (const sdm_tensor *a, const sdm_tensor *b, double *out), (a, b, out))                 \
    F(sdm_tensor_free, (sdm_tensor * *t), (t))                                                                       \
    V(int, sdm_graphs_available, (void), (), 0)                                                                      \
    S(sdm_capture_begin, (sdm_device dev, sdm_graph * *out), (dev, out))                                             \
    S(sdm_capture_end, (sdm_graph * g), (g))                                                                         \
    S(sdm_graph_replay, (sdm_graph * g), (g))                                                                        \
    S(sdm_graph_upload, (sdm_graph * g, int *uploaded), (g, uploaded))                                               \
    F(sdm_graph_free, (sdm_graph * *g), (g))                                                                         \
    S(sdm_tensor_copy_, (sdm_tensor * dst, const sdm_tensor *src), (dst, src))                                       \
    S(sdm_tensor_copy_rows_, (sdm_tensor * dst, int64_t dst_row, const sdm_tensor *src, int64_t src_row, int64_t n), \
      (dst, dst_row, src, src_row, n))                                                                               \
    S(sdm_download_start, (const sdm_tensor *t, sdm_dtype dtype, sdm_download **out), (t, dtype, out))               \
    S(sdm_download_wait, (sdm_download * d, const void **data, size_t *bytes), (d, data, bytes))                     \
    F(sdm_download_free, (sdm_download * *d), (d))

/* A pointer into the shim for each function, typed by its prototype. */
#define PTR(name) static __typeof__(name) *p_##name;
#define PTR3(name, params, args) PTR(name)
#define PTR5(type, name, params, args, fail) PTR(name)
SDM_TORCH_FUNCTIONS(PTR3, PTR5, PTR3, PTR3, PTR)

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static void *shim; /* the loaded shim; NULL until then, or for good when it cannot load */
static char load_error[3 * (PATH_MAX + 32) + 512]; /* three paths and words */

/* Sets every pointer; NULL, or the name of a function the shim lacks. */
static const char *resolve(void *lib)
{
#define RESOLVE(name)                                          \
    if (!(p_##name = (__typeof__(p_##name))dlsym(lib, #name))) \
        return #name;
#define RESOLVE3(name, params, args) RESOLVE(name)
#define RESOLVE5(type, name, params, args, fail) RESOLVE(name)
    SDM_TORCH_FUNCTIONS(RESOLVE3, RESOLVE5, RESOLVE3, RESOLVE3, RESOLVE)
    return NULL;
}

/* Opens path and checks it is the shim of this sdmorph; 0, or -1 with load_error set. */
static int open_shim(const char *path)
{
    /* RTLD_GLOBAL: libtorch's symbols must be the process's, as when it was
     * linked: AOTInductor packages resolve aoti_torch_* through them, and
     * the CUDA queries look up the runtime's functions (RTLD_DEFAULT). */
    void *lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    const char *abi, *missing;

    if (!lib) {
        snprintf(load_error, sizeof load_error, "cannot load %s (sdmorph's libtorch side): %s", path, dlerror());
        return -1;
    }
    abi = (const char *)dlsym(lib, "sdm_torch_abi");
    missing = abi && !strcmp(abi, SDM_TORCH_ABI) ? resolve(lib) : "sdm_torch_abi";
    if (missing) {
        snprintf(load_error, sizeof load_error,
                 "%s is not the libtorch side of this sdmorph (%s: missing or another version): rebuild, or "
                 "make install again",
                 path, missing);
        return -1; /* not closed: libtorch cannot be unloaded */
    }
    __atomic_store_n(&shim, lib, __ATOMIC_RELEASE);
    return 0;
}

static void load_shim(void)
{
    char exe[PATH_MAX], paths[3][PATH_MAX + 32], *slash;
    const char *env = getenv("SDM_TORCH_LIB");
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    int k = 0;

    if (env && *env) {
        open_shim(env);
        return;
    }
    exe[n > 0 ? n : 0] = '\0';
    if ((slash = strrchr(exe, '/'))) {
        *slash = '\0';
        snprintf(paths[k++], sizeof paths[0], "%s/" SHIM, exe);
        snprintf(paths[k++], sizeof paths[0], "%s/../lib/sdmorph/" SHIM, exe);
    }
    snprintf(paths[k++], sizeof paths[0], "%s", SDM_TORCH_BUILT);
    for (int i = 0; i < k; i++)
        if (access(paths[i], F_OK) == 0) {
            open_shim(paths[i]);
            return;
        }
    snprintf(load_error, sizeof load_error,
             SHIM
             " (sdmorph's libtorch side) not found: looked for %s%s%s%s%s (make builds it, make install "
             "installs it; SDM_TORCH_LIB=PATH names another)",
             paths[0], k > 1 ? ", " : "", k > 1 ? paths[1] : "", k > 2 ? ", " : "", k > 2 ? paths[2] : "");
}

/* 1 once the shim is loaded (loading it the first time). */
static int load(void)
{
    pthread_once(&load_once, load_shim);
    return __atomic_load_n(&shim, __ATOMIC_ACQUIRE) != NULL;
}

static int loaded(void)
{
    return __atomic_load_n(&shim, __ATOMIC_ACQUIRE) != NULL;
}

#define STUB_S(name, params, args)  \
    sdm_torch_status name params    \
    {                               \
        if (!load())                \
            return SDM_TORCH_ERROR; \
        return p_##name args;       \
    }
#define STUB_V(type, name, params, args, fail) \
    type name params                           \
    {                                          \
        if (!load())                           \
            return fail;                       \
        return p_##name args;                  \
    }
#define STUB_D(name, params, args) \
    void name params               \
    {                              \
        if (load())                \
            p_##name args;         \
    }
#define STUB_F(name, params, args) \
    void name params               \
    {                              \
        if (loaded())              \
            p_##name args;         \
    }
#define STUB_H(name)
SDM_TORCH_FUNCTIONS(STUB_S, STUB_V, STUB_D, STUB_F, STUB_H)

/* A build without CUDA has no CUDA device: said without loading libtorch,
 * since a render picks its device before it checks its recipe. */
int sdm_cuda_device_count(void)
{
#ifdef SDM_HAVE_CUDA
    return load() ? p_sdm_cuda_device_count() : 0;
#else
    return 0;
#endif
}

/* Without the shim, the device's plain name. */
void sdm_device_description(sdm_device d, char *buf, size_t len)
{
    if (load())
        p_sdm_device_description(d, buf, len);
    else
        sdm_device_name(d, buf, len);
}

int sdm_torch_load(void)
{
    return load();
}

/* Why the shim did not load, while it is not loaded ("" before a try). */
const char *sdm_torch_last_error(void)
{
    return loaded() ? p_sdm_torch_last_error() : load_error;
}
