/* The thin C API over libtorch. C types only; opaque handles; every C++
 * exception is caught at the boundary and comes back as a status plus a
 * message (sdm_torch_last_error, per thread). Nothing of the pipeline's
 * logic lives behind it: just load/call modules and a few tensor ops. Its
 * messages say what failed and why; what to do about it is the caller's
 * to say (torch_error.h). */
#ifndef SDM_TORCH_API_H
#define SDM_TORCH_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdm_module sdm_module;
typedef struct sdm_tensor sdm_tensor;

typedef enum {
    SDM_TORCH_OK = 0,
    SDM_TORCH_ERROR, /* any other failure; see sdm_torch_last_error() */
    SDM_TORCH_OOM, /* out of (device or host) memory */
    SDM_TORCH_STATUS_COUNT
} sdm_torch_status;

/* SDM_F64 is for schedule tables and checks (the analytic bundle's
 * alphas_cumprod()); models run in F32 or F16. */
typedef enum { SDM_F32, SDM_F16, SDM_I64, SDM_U8, SDM_F64, SDM_DTYPE_COUNT } sdm_dtype;
const char *sdm_dtype_name(sdm_dtype d);
/* "float32"/"fp32", "float16"/"fp16", "float64", "int64", "uint8"; 0 on success */
int sdm_dtype_from_str(const char *s, sdm_dtype *out);

typedef enum { SDM_DEVICE_CPU, SDM_DEVICE_CUDA, SDM_DEVICE_TYPE_COUNT } sdm_device_type;
typedef struct {
    sdm_device_type type;
    int index;
} sdm_device;

/* "cpu", "cuda", "cuda:N"; 0 on success. */
int sdm_device_from_str(const char *s, sdm_device *out);
void sdm_device_name(sdm_device d, char *buf, size_t len);
int sdm_cuda_device_count(void); /* 0 where libtorch has no CUDA */
/* Free and total memory of a CUDA device in bytes; SDM_TORCH_ERROR on CPU. */
sdm_torch_status sdm_cuda_mem_info(sdm_device d, size_t *free_b, size_t *total_b);
/* Waits until the device has run all the work queued on it (nothing to wait
 * for on the CPU, where every call has run when it returns). */
sdm_torch_status sdm_device_sync(sdm_device d);
/* Gives the blocks libtorch's CUDA allocator holds unused back to the
 * device, so sdm_cuda_mem_info counts them free (nothing to do on the CPU,
 * or in a build without the CUDA runtime's headers). */
sdm_torch_status sdm_device_release_cached(sdm_device d);
/* Name of the GPU ("NVIDIA H100 80GB HBM3") or "cpu". */
void sdm_device_description(sdm_device d, char *buf, size_t len);

/* Message of the last failed call on this thread ("" if none). */
const char *sdm_torch_last_error(void);
/* Loads libtorch now (sdmorph's side of it, libsdm_torch.so; otherwise
 * on the first call that needs it): 1, or 0 with sdm_torch_last_error()
 * saying why it cannot be. */
int sdm_torch_load(void);
/* Intra-op threads for CPU work (0 leaves libtorch's default). */
void sdm_torch_set_threads(int n);
/* Make CUDA kernels deterministic where libtorch can (cuDNN determinism). */
void sdm_torch_set_deterministic(int on);
/* cuDNN's benchmark mode: each convolution shape tries its algorithms once
 * and keeps the fastest. Faster, but the choice is made by timing, so two
 * runs may pick differently and frames may differ in the last bits. */
void sdm_torch_set_cudnn_benchmark(int on);
/* TF32 tensor-core math for float32 matmuls and convolutions on CUDA; off
 * for float32 models, so their frames match a float32 reference. */
void sdm_torch_set_tf32(int on);

/* --- modules -------------------------------------------------------------- */
/* Loads a TorchScript file onto a device. The path is named in errors.
 * A path ending in ".pt2" is an AOTInductor package instead (compiled
 * for CUDA; builds whose libtorch has the loader, see sdm_aoti_available):
 * it has forward() only, takes tensors only (made contiguous, on its
 * device) and returns its first output; it runs on the current CUDA
 * stream, so CUDA graphs capture it like a TorchScript module. */
sdm_torch_status sdm_module_load(const char *path, sdm_device dev, sdm_module **out);
/* 1 where this build can load AOTInductor packages (torch >= 2.6 with CUDA). */
int sdm_aoti_available(void);
int sdm_module_has_method(const sdm_module *m, const char *method);
/* Calls m.method(args...) -> one tensor. method NULL means "forward". */
sdm_torch_status sdm_module_call(sdm_module *m, const char *method, sdm_tensor *const *args, int nargs,
                                 sdm_tensor **out);

/* Arguments of other types, for methods such as the analytic bundle's
 * target(emb, h: int, w: int):
 *   sdm_arg a[3] = { sdm_arg_tensor(emb), sdm_arg_int(32), sdm_arg_int(32) };
 *   sdm_module_call_args(unet, "target", a, 3, &x0);                        */
typedef enum { SDM_ARG_TENSOR, SDM_ARG_INT, SDM_ARG_DOUBLE, SDM_ARG_KIND_COUNT } sdm_arg_kind;
typedef struct {
    sdm_arg_kind kind;
    const sdm_tensor *tensor; /* SDM_ARG_TENSOR */
    int64_t i; /* SDM_ARG_INT */
    double d; /* SDM_ARG_DOUBLE */
} sdm_arg;
static inline sdm_arg sdm_arg_tensor(const sdm_tensor *t)
{
    sdm_arg a = { SDM_ARG_TENSOR, t, 0, 0.0 };
    return a;
}
static inline sdm_arg sdm_arg_int(int64_t i)
{
    sdm_arg a = { SDM_ARG_INT, NULL, i, 0.0 };
    return a;
}
static inline sdm_arg sdm_arg_double(double d)
{
    sdm_arg a = { SDM_ARG_DOUBLE, NULL, 0, d };
    return a;
}
sdm_torch_status sdm_module_call_args(sdm_module *m, const char *method, const sdm_arg *args, int nargs,
                                      sdm_tensor **out);
/* dtype of the module's first float32/float16 parameter or buffer (SDM_F32
 * if none); float64 buffers (schedule tables) are not counted. For an
 * AOTInductor package: SDM_F16 if any of its constants is float16. */
sdm_dtype sdm_module_dtype(const sdm_module *m);
void sdm_module_free(sdm_module **m);

/* --- tensors -------------------------------------------------------------- */
#define SDM_MAX_DIMS 8

/* Copies host memory (contiguous, row-major) into a new tensor on dev.
 * ndim 0 makes a scalar (shape may then be NULL). */
sdm_torch_status sdm_tensor_from_host(const void *data, sdm_dtype dtype, const int64_t *shape, int ndim, sdm_device dev,
                                      sdm_tensor **out);
sdm_torch_status sdm_tensor_zeros(sdm_dtype dtype, const int64_t *shape, int ndim, sdm_device dev, sdm_tensor **out);
/* Exactly torch.randn(shape, generator=torch.Generator().manual_seed(seed)),
 * float32, made on the CPU and then moved to dev. Like torch, only the low
 * 32 bits of the seed key the generator: s and s + 2^32 give the same noise. */
sdm_torch_status sdm_tensor_randn(uint64_t seed, const int64_t *shape, int ndim, sdm_device dev, sdm_tensor **out);
/* A CPU generator: torch.Generator().manual_seed(seed). Each
 * sdm_generator_randn is the next torch.randn(shape, generator=g) of its
 * stream, float32, moved to dev: diffusers' initial latents and then its
 * schedulers' per-step noise come from one such stream. */
typedef struct sdm_generator sdm_generator;
sdm_torch_status sdm_generator_new(uint64_t seed, sdm_generator **out);
sdm_torch_status sdm_generator_randn(sdm_generator *g, const int64_t *shape, int ndim, sdm_device dev,
                                     sdm_tensor **out);
void sdm_generator_free(sdm_generator **g);
sdm_torch_status sdm_tensor_clone(const sdm_tensor *t, sdm_tensor **out);
/* New tensor of the same values on another device and/or dtype. */
sdm_torch_status sdm_tensor_to(const sdm_tensor *t, sdm_device dev, sdm_dtype dtype, sdm_tensor **out);

int sdm_tensor_ndim(const sdm_tensor *t);
int64_t sdm_tensor_dim(const sdm_tensor *t, int i); /* negative i counts from the end; -1 if out of range */
int64_t sdm_tensor_numel(const sdm_tensor *t);
sdm_dtype sdm_tensor_dtype(const sdm_tensor *t); /* SDM_DTYPE_COUNT: another type */
sdm_device sdm_tensor_device(const sdm_tensor *t);

/* Copies all elements (converted to dtype, contiguous) to host memory of
 * `bytes` bytes, which must be exactly numel * sizeof(dtype). Syncs. */
sdm_torch_status sdm_tensor_to_host(const sdm_tensor *t, sdm_dtype dtype, void *dst, size_t bytes);

/* out = a*x + b*y (same shape; y may be NULL for out = a*x). */
sdm_torch_status sdm_tensor_axpby(double a, const sdm_tensor *x, double b, const sdm_tensor *y, sdm_tensor **out);
/* In place: y = a*x + b*y. */
sdm_torch_status sdm_tensor_axpby_(double a, const sdm_tensor *x, double b, sdm_tensor *y);
/* Spherical interpolation of the rows of the last dimension (per token row
 * for embeddings [.., 77, H]); flattens everything for noise (rows = 0).
 * Falls back to lerp where two rows are nearly parallel. As the common SD
 * slerp: cos θ = <a/|a|, b/|b|>; |cos θ| > 0.9995 (or a zero row) gives
 * (1−t)a + t·b, else (sin((1−t)θ)·a + sin(tθ)·b) / sin θ. Computed in
 * float64, returned in a's dtype. */
sdm_torch_status sdm_tensor_slerp(const sdm_tensor *a, const sdm_tensor *b, double t, int per_row, sdm_tensor **out);
/* Concatenates along dim 0. */
sdm_torch_status sdm_tensor_cat(sdm_tensor *const *ts, int n, sdm_tensor **out);
/* Rows [start, start+len) of dim 0 (a copy). */
sdm_torch_status sdm_tensor_narrow(const sdm_tensor *t, int64_t start, int64_t len, sdm_tensor **out);
/* Classifier-free guidance over a guided batch: `both` is [2B,...] with the
 * unconditional halves first, g is [B] on the same device (made once per
 * batch, so the step loop copies nothing from the host);
 * out[i] = u[i] + g[i]·(c[i] − u[i]), per frame. */
sdm_torch_status sdm_tensor_cfg(const sdm_tensor *both, const sdm_tensor *g, sdm_tensor **out);
/* The same, then diffusers' guidance_rescale (rescale_noise_cfg): per frame
 * r = out·std(c)/std(out) (std over all but dim 0, unbiased), and
 * out = phi·r + (1 − phi)·out. */
sdm_torch_status sdm_tensor_cfg_rescale(const sdm_tensor *both, const sdm_tensor *g, double phi, sdm_tensor **out);
/* [B,3,H,W] in [-1,1] -> [B,H,W,3] uint8 on the same device:
 * round((x/2+0.5).clamp(0,1)*255), the way diffusers makes PIL images. */
sdm_torch_status sdm_tensor_to_rgb8(const sdm_tensor *t, sdm_tensor **out);
/* Max |a-b| over all elements; b NULL: max |a| (syncs; for tests and checks). */
sdm_torch_status sdm_tensor_max_abs_diff(const sdm_tensor *a, const sdm_tensor *b, double *out);
void sdm_tensor_free(sdm_tensor **t);

/* --- CUDA graphs -------------------------------------------------------------
 * Everything the calling thread enqueues on the device between
 * sdm_capture_begin and sdm_capture_end is recorded, not run, and
 * sdm_graph_replay then runs all of it with one launch. The tensors the
 * captured work reads and writes are the graph's static buffers: copy new
 * values into them (sdm_tensor_copy_) before a replay. Between begin and end
 * only device work is allowed: no host copies, no syncs. */
typedef struct sdm_graph sdm_graph;
int sdm_graphs_available(void); /* 0 where this build has no CUDA graphs */
sdm_torch_status sdm_capture_begin(sdm_device dev, sdm_graph **out);
sdm_torch_status sdm_capture_end(sdm_graph *g);
sdm_torch_status sdm_graph_replay(sdm_graph *g);
/* Puts a captured graph on the device without running it, so that its
 * first replay costs no more than the next (cudaGraphUpload). A libtorch
 * that does not give the executable graph (before 2.6) runs it once
 * instead. *uploaded: 1 uploaded, 0 ran. */
sdm_torch_status sdm_graph_upload(sdm_graph *g, int *uploaded);
void sdm_graph_free(sdm_graph **g); /* also ends a capture left open */
/* dst ← src in place (same shape; converts dtype), asynchronously on the device. */
sdm_torch_status sdm_tensor_copy_(sdm_tensor *dst, const sdm_tensor *src);
/* Rows [dst_row, dst_row + n) of dst ← rows [src_row, src_row + n) of src,
 * in place (other dimensions equal): fills part of a static buffer. */
sdm_torch_status sdm_tensor_copy_rows_(sdm_tensor *dst, int64_t dst_row, const sdm_tensor *src, int64_t src_row,
                                       int64_t n);

/* --- downloads ----------------------------------------------------------------
 * A device-to-host copy that does not wait: the GPU can go on with the next
 * batch while the host waits for this one. On the CPU the copy is made at
 * once. The data stays valid until sdm_download_free. */
typedef struct sdm_download sdm_download;
sdm_torch_status sdm_download_start(const sdm_tensor *t, sdm_dtype dtype, sdm_download **out);
/* Waits for the copy; *data: the elements, contiguous, *bytes long. */
sdm_torch_status sdm_download_wait(sdm_download *d, const void **data, size_t *bytes);
void sdm_download_free(sdm_download **d);

#ifdef __cplusplus
}
#endif
#endif
