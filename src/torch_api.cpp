/* The C API over libtorch (torch_api.h). Every entry point runs its body
 * through guarded(): inference mode on, and any C++ exception turned into a
 * status plus a message kept per thread. Builds against libtorch 1.13
 * (Debian) and 2.x (pip); only APIs present in both are used, except for
 * AOTInductor packages (SDM_HAVE_AOTI: torch >= 2.6 with CUDA). The names
 * of dtypes and devices are torch_names.c's (no libtorch needed). */
#include "torch_api.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/version.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#ifdef SDM_HAVE_CUDA
#include <dlfcn.h>
#endif
#ifdef SDM_HAVE_AOTI
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#endif
#ifdef SDM_HAVE_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

/* A TorchScript module, or an AOTInductor package (is_aoti; mod is then
 * empty and must not be touched). */
struct sdm_module {
    torch::jit::Module mod;
    std::string path;
    bool is_aoti = false;
#ifdef SDM_HAVE_AOTI
    std::unique_ptr<torch::inductor::AOTIModelPackageLoader> aoti;
#endif
    c10::Device device = c10::kCPU; /* where the package runs */
    sdm_dtype aoti_dtype = SDM_F32;
};

struct sdm_tensor {
    at::Tensor t;
};

struct sdm_generator {
    at::Generator gen;
};

struct sdm_graph {
#ifdef SDM_HAVE_CUDA_GRAPHS
    at::cuda::CUDAGraph graph;
    std::optional<c10::cuda::CUDAStreamGuard> guard; /* the capture stream, while capturing */
#endif
    c10::DeviceIndex device = 0; /* where it was captured */
    bool captured = false;
};

struct sdm_download {
    at::Tensor host; /* pinned where the source is on CUDA */
    std::optional<c10::Event> event; /* the copy is done when this is */
};

namespace
{

/* An error whose message is complete (it already names what failed). */
struct op_error : std::runtime_error {
    explicit op_error(const std::string &m) : std::runtime_error(m)
    {
    }
};
/* The same, for running out of memory. */
struct oom_error : op_error {
    explicit oom_error(const std::string &m) : op_error(m)
    {
    }
};

thread_local char last_error[4096];

void set_error(const char *msg) noexcept
{
    snprintf(last_error, sizeof last_error, "%s", msg);
}

std::string first_line(const std::string &m)
{
    size_t nl = m.find('\n');
    std::string s = nl == std::string::npos ? m : m.substr(0, nl);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\r' || s.back() == '.'))
        s.pop_back();
    return s;
}

std::string trimmed(const std::string &m)
{
    size_t end = m.find_last_not_of(" \t\r\n");
    return end == std::string::npos ? std::string() : m.substr(0, end + 1);
}

/* TorchScript errors start with a long traceback and end with the cause:
 * put the cause first, keep the traceback after it. */
std::string cause_first(const std::string &m)
{
    std::string t = trimmed(m);
    if (t.find("The following operation failed in the TorchScript interpreter") == std::string::npos)
        return t;
    size_t nl = t.find_last_of('\n');
    if (nl == std::string::npos)
        return t;
    return t.substr(nl + 1) + "\n" + t.substr(0, nl);
}

bool looks_like_oom(const std::string &m)
{
    return m.find("out of memory") != std::string::npos || m.find("CUBLAS_STATUS_ALLOC_FAILED") != std::string::npos ||
           m.find("can't allocate memory") != std::string::npos;
}

std::string oom_message(const std::string &ctx, const std::string &m)
{
    /* CUDA's message is a paragraph of allocator advice: keep the first
     * three sentences (what was asked, what the GPU has). */
    std::string s = first_line(m);
    size_t at = 0;
    for (int i = 0; i < 3 && at != std::string::npos; i++) {
        at = s.find(". ", at);
        if (at != std::string::npos)
            at += 1;
    }
    if (at != std::string::npos)
        s = s.substr(0, at - 1);
    return ctx + ": out of memory (" + s + ")";
}

/* Rethrows the exception being handled as op_error/oom_error with ctx in
 * front of libtorch's message. Call only inside a catch block. */
[[noreturn]] void rethrow_in(const std::string &ctx)
{
    try {
        throw;
    } catch (const op_error &) {
        throw;
    } catch (const c10::OutOfMemoryError &e) {
        throw oom_error(oom_message(ctx, e.what_without_backtrace()));
    } catch (const c10::Error &e) {
        std::string m = e.what_without_backtrace();
        if (looks_like_oom(m))
            throw oom_error(oom_message(ctx, m));
        throw op_error(ctx + ": " + cause_first(m));
    } catch (const std::bad_alloc &) {
        throw oom_error(ctx + ": out of host memory");
    } catch (const std::exception &e) {
        std::string m = e.what();
        if (looks_like_oom(m))
            throw oom_error(oom_message(ctx, m));
        throw op_error(ctx + ": " + cause_first(m));
    } catch (...) {
        throw op_error(ctx + ": unknown C++ exception");
    }
}

template <class F> sdm_torch_status guarded(const char *op, F &&body) noexcept
{
    try {
        try {
            c10::InferenceMode inference;
            body();
        } catch (...) {
            rethrow_in(op);
        }
    } catch (const oom_error &e) {
        set_error(e.what());
        return SDM_TORCH_OOM;
    } catch (const op_error &e) {
        set_error(e.what());
        return SDM_TORCH_ERROR;
    } catch (...) {
        set_error(op);
        return SDM_TORCH_ERROR;
    }
    return SDM_TORCH_OK;
}

at::ScalarType scalar_type(sdm_dtype d)
{
    switch (d) {
    case SDM_F32:
        return at::kFloat;
    case SDM_F16:
        return at::kHalf;
    case SDM_I64:
        return at::kLong;
    case SDM_U8:
        return at::kByte;
    case SDM_F64:
        return at::kDouble;
    default:
        break;
    }
    throw op_error("unknown dtype " + std::to_string((int)d));
}

sdm_dtype from_scalar_type(at::ScalarType s)
{
    switch (s) {
    case at::kFloat:
        return SDM_F32;
    case at::kHalf:
        return SDM_F16;
    case at::kLong:
        return SDM_I64;
    case at::kByte:
        return SDM_U8;
    case at::kDouble:
        return SDM_F64;
    default:
        return SDM_DTYPE_COUNT;
    }
}

/* A CPU tensor on d. To CUDA through pinned memory and without waiting:
 * a plain copy from pageable memory waits for all queued GPU work, which
 * would stall the render's next batch behind the one in flight. */
at::Tensor to_device(const at::Tensor &cpu, c10::Device d)
{
    if (d.is_cpu())
        return cpu;
    return cpu.pin_memory().to(d, /*non_blocking=*/true);
}

std::string device_str(sdm_device d)
{
    char buf[32];
    sdm_device_name(d, buf, sizeof buf);
    return buf;
}

/* The torch device for d, checked against what this libtorch can reach. */
c10::Device torch_device(sdm_device d)
{
    if (d.type == SDM_DEVICE_CPU)
        return c10::Device(c10::kCPU);
    if (d.type != SDM_DEVICE_CUDA)
        throw op_error("unknown device type " + std::to_string((int)d.type));
    if (!torch::cuda::is_available())
        throw op_error(device_str(d) +
                       " requested, but CUDA is not available "
                       "(libtorch built without CUDA, or no GPU visible)");
    int n = (int)torch::cuda::device_count();
    if (d.index < 0 || d.index >= n)
        throw op_error(device_str(d) + " requested, but there " + (n == 1 ? "is " : "are ") + std::to_string(n) +
                       " CUDA device" + (n == 1 ? "" : "s"));
    return c10::Device(c10::kCUDA, (c10::DeviceIndex)d.index);
}

std::string shape_str(const at::Tensor &t)
{
    std::ostringstream s;
    s << t.sizes();
    return s.str();
}

std::vector<int64_t> shape_vec(const int64_t *shape, int ndim, const char *op)
{
    if (ndim < 0 || ndim > SDM_MAX_DIMS)
        throw op_error(std::string(op) + ": ndim " + std::to_string(ndim) + " is outside 0.." +
                       std::to_string(SDM_MAX_DIMS));
    if (ndim > 0 && !shape)
        throw op_error(std::string(op) + ": shape is NULL");
    std::vector<int64_t> v(shape, shape + ndim);
    for (int64_t s : v)
        if (s < 0)
            throw op_error(std::string(op) + ": negative size " + std::to_string(s));
    return v;
}

const at::Tensor &arg(const sdm_tensor *t, const char *op, const char *name)
{
    if (!t)
        throw op_error(std::string(op) + ": " + name + " is NULL");
    return t->t;
}

void need_out(void *out, const char *op)
{
    if (!out)
        throw op_error(std::string(op) + ": out is NULL");
}

void same_shape(const at::Tensor &a, const at::Tensor &b, const char *op)
{
    if (!a.sizes().equals(b.sizes()))
        throw op_error(std::string(op) + ": shapes differ: " + shape_str(a) + " vs " + shape_str(b));
}

sdm_tensor *wrap(at::Tensor t)
{
    return new sdm_tensor{ std::move(t) };
}

} // namespace

/* --- the shim's version ----------------------------------------------------
 * This file is built into libsdm_torch.so, which sdmorph loads on first use
 * (torch_load.c); the loader refuses a shim built from another torch_api.h. */

#ifndef SDM_TORCH_ABI
#define SDM_TORCH_ABI "?"
#endif
extern "C" const char sdm_torch_abi[] = SDM_TORCH_ABI;

/* --- CUDA queries ----------------------------------------------------------
 * The Makefile links libtorch only, and pip's libtorch ships no CUDA headers,
 * so the two runtime calls libtorch does not wrap are looked up in the CUDA
 * libraries that libtorch_cuda has already loaded. */

int sdm_cuda_device_count(void)
{
    try {
        return torch::cuda::is_available() ? (int)torch::cuda::device_count() : 0;
    } catch (...) {
        return 0;
    }
}

#ifdef SDM_HAVE_CUDA
namespace
{

typedef int (*cuda_mem_get_info_fn)(size_t *free_b, size_t *total_b); /* cudaMemGetInfo */
typedef int (*cu_init_fn)(unsigned flags);
typedef int (*cu_device_get_fn)(int *dev, int ordinal);
typedef int (*cu_device_get_name_fn)(char *name, int len, int dev);

void cuda_mem_info(int index, size_t *free_b, size_t *total_b)
{
    auto fn = (cuda_mem_get_info_fn)dlsym(RTLD_DEFAULT, "cudaMemGetInfo");
    if (!fn)
        throw op_error("cuda:" + std::to_string(index) + ": cudaMemGetInfo not found in the loaded CUDA runtime");
    c10::DeviceGuard guard(c10::Device(c10::kCUDA, (c10::DeviceIndex)index));
    int rc = fn(free_b, total_b);
    if (rc != 0)
        throw op_error("cuda:" + std::to_string(index) + ": cudaMemGetInfo failed (error " + std::to_string(rc) + ")");
}

bool cuda_name(int index, char *buf, size_t len)
{
    void *lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (!lib)
        lib = dlopen("libcuda.so.1", RTLD_LAZY);
    if (!lib)
        return false;
    auto init = (cu_init_fn)dlsym(lib, "cuInit");
    auto get = (cu_device_get_fn)dlsym(lib, "cuDeviceGet");
    auto name = (cu_device_get_name_fn)dlsym(lib, "cuDeviceGetName");
    int dev = 0;
    bool ok = init && get && name && init(0) == 0 && get(&dev, index) == 0 && name(buf, (int)len, dev) == 0;
    dlclose(lib);
    return ok;
}

} // namespace
#endif

sdm_torch_status sdm_cuda_mem_info(sdm_device d, size_t *free_b, size_t *total_b)
{
    return guarded("cuda memory info", [&] {
        if (!free_b || !total_b)
            throw op_error("sdm_cuda_mem_info: NULL output");
        if (d.type != SDM_DEVICE_CUDA)
            throw op_error(device_str(d) + " is not a CUDA device: no device memory to report");
        torch_device(d);
#ifdef SDM_HAVE_CUDA
        cuda_mem_info(d.index, free_b, total_b);
#else
        throw op_error("this build has no CUDA");
#endif
    });
}

sdm_torch_status sdm_device_sync(sdm_device d)
{
    return guarded("waiting for the device", [&] {
        c10::Device dev = torch_device(d);
#ifdef SDM_HAVE_CUDA
        if (dev.is_cuda())
            torch::cuda::synchronize(dev.index());
#else
        (void)dev;
#endif
    });
}

sdm_torch_status sdm_device_release_cached(sdm_device d)
{
    return guarded("releasing cached device memory", [&] {
        c10::Device dev = torch_device(d);
#ifdef SDM_HAVE_CUDA_GRAPHS /* the allocator's header needs the CUDA runtime's */
        if (dev.is_cuda()) {
            torch::cuda::synchronize(dev.index());
            c10::cuda::CUDACachingAllocator::emptyCache();
        }
#else
        (void)dev;
#endif
    });
}

void sdm_device_description(sdm_device d, char *buf, size_t len)
{
    if (!buf || !len)
        return;
    sdm_device_name(d, buf, len);
#ifdef SDM_HAVE_CUDA
    if (d.type == SDM_DEVICE_CUDA && d.index >= 0 && d.index < sdm_cuda_device_count()) {
        try {
            if (!cuda_name(d.index, buf, len))
                sdm_device_name(d, buf, len);
        } catch (...) {
            sdm_device_name(d, buf, len);
        }
    }
#endif
}

/* --- settings ------------------------------------------------------------- */

const char *sdm_torch_last_error(void)
{
    return last_error;
}

/* Inside the shim libtorch is loaded already (sdmorph's side: torch_load.c). */
int sdm_torch_load(void)
{
    return 1;
}

void sdm_torch_set_threads(int n)
{
    try {
        if (n > 0)
            at::set_num_threads(n);
    } catch (...) {
    }
}

void sdm_torch_set_deterministic(int on)
{
    try {
        at::globalContext().setDeterministicCuDNN(on != 0);
        if (on)
            at::globalContext().setBenchmarkCuDNN(false);
    } catch (...) {
    }
}

void sdm_torch_set_cudnn_benchmark(int on)
{
    try {
        at::globalContext().setBenchmarkCuDNN(on != 0);
    } catch (...) {
    }
}

void sdm_torch_set_tf32(int on)
{
    try {
        at::globalContext().setAllowTF32CuBLAS(on != 0);
        at::globalContext().setAllowTF32CuDNN(on != 0);
    } catch (...) {
    }
}

/* --- modules -------------------------------------------------------------- */

namespace
{

bool is_package_path(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && strcmp(path + n - 4, ".pt2") == 0;
}

#ifdef SDM_HAVE_AOTI
/* Loads an AOTInductor package. run_single_threaded: the container's default
 * run records an event per call and, with one runner, waits on the last
 * call's event before the next one starts (the host would stall every step,
 * and a CUDA graph cannot capture that); sdmorph calls a module from one
 * thread at a time. */
void load_package(sdm_module &m, const std::string &ctx, c10::Device d)
{
    using torch::inductor::AOTIModelPackageLoader;
    std::unordered_map<std::string, std::string> meta;
    const std::string unreadable = ctx +
                                   ": not a readable AOTInductor package (truncated, or made by another "
                                   "torch?): ";
    try {
        meta = AOTIModelPackageLoader::load_metadata_from_package(m.path, "model");
    } catch (const c10::Error &e) {
        throw op_error(unreadable + first_line(e.what_without_backtrace()));
    } catch (const std::exception &e) {
        throw op_error(unreadable + first_line(e.what()));
    }
    auto key = meta.find("AOTI_DEVICE_KEY");
    if (key != meta.end() && key->second != (d.is_cuda() ? "cuda" : "cpu"))
        throw op_error(ctx + ": the package was compiled for " + key->second + ", not " + d.str());
    try {
        c10::DeviceGuard guard(d);
        m.aoti = std::make_unique<AOTIModelPackageLoader>(m.path, "model", /*run_single_threaded=*/true,
                                                          /*num_runners=*/1, d.is_cuda() ? d.index() : -1);
    } catch (...) {
        rethrow_in(ctx);
    }
    m.is_aoti = true;
    m.device = d;
    /* the dtype of a float16 model: its constants (weights) are float16 */
    m.aoti_dtype = SDM_F32;
    for (const auto &c : m.aoti->get_runner()->getConstantNamesToDtypes())
        if (c.second == (int32_t)at::kHalf)
            m.aoti_dtype = SDM_F16;
}
#endif

/* forward() of either kind of module. A package takes tensors only: each
 * goes to the package's device, contiguous (a no-op for the engine's
 * tensors, so CUDA graph inputs keep their addresses). It runs on the
 * current stream: a null stream is resolved by the CUDA runner to c10's
 * current stream of the current device, which the guard makes the
 * package's. */
c10::IValue module_forward(sdm_module *m, std::vector<c10::IValue> in, const std::string &ctx)
{
    if (!m->is_aoti)
        return m->mod.forward(std::move(in));
#ifdef SDM_HAVE_AOTI
    std::vector<at::Tensor> args;
    args.reserve(in.size());
    for (size_t i = 0; i < in.size(); i++) {
        if (!in[i].isTensor())
            throw op_error(ctx + ": argument " + std::to_string(i) +
                           " is not a tensor (an AOTInductor package "
                           "takes tensors only)");
        args.push_back(in[i].toTensor().to(m->device).contiguous());
    }
    c10::DeviceGuard guard(m->device);
    std::vector<at::Tensor> r = m->aoti->run(args, nullptr);
    if (r.empty())
        throw op_error(ctx + ": the package returned no tensor");
    return r[0];
#else
    throw op_error(ctx + ": this build has no AOTInductor");
#endif
}

} // namespace

int sdm_aoti_available(void)
{
#ifdef SDM_HAVE_AOTI
    return 1;
#else
    return 0;
#endif
}

sdm_torch_status sdm_module_load(const char *path, sdm_device dev, sdm_module **out)
{
    if (out)
        *out = NULL;
    return guarded("load module", [&] {
        need_out(out, "sdm_module_load");
        if (!path || !*path)
            throw op_error("load module: no path given");
        std::string ctx = std::string("cannot load module '") + path + "'";
        FILE *f = fopen(path, "rb");
        if (!f)
            throw op_error(ctx + ": " + strerror(errno));
        fclose(f);
        c10::Device d = c10::kCPU;
        try {
            d = torch_device(dev);
        } catch (const op_error &e) {
            throw op_error(ctx + ": " + e.what());
        }
        if (is_package_path(path)) {
#ifdef SDM_HAVE_AOTI
            auto m = std::make_unique<sdm_module>();
            m->path = path;
            load_package(*m, ctx, d);
            *out = m.release();
            return;
#else
            throw op_error(ctx + ": an AOTInductor package; this build's libtorch has none (torch >= 2.6 "
                           "with CUDA needed)");
#endif
        }
        torch::jit::Module mod;
        try {
            mod = torch::jit::load(std::string(path), d);
        } catch (const c10::Error &e) {
            if (looks_like_oom(e.what_without_backtrace()))
                rethrow_in(ctx);
            /* Truncated or foreign files fail deep in the zip reader. */
            throw op_error(ctx + ": not a readable TorchScript file (truncated or corrupt?): " +
                           first_line(e.what_without_backtrace()));
        } catch (...) {
            rethrow_in(ctx);
        }
        mod.eval();
        auto m = std::make_unique<sdm_module>();
        m->mod = std::move(mod);
        m->path = path;
        *out = m.release();
    });
}

int sdm_module_has_method(const sdm_module *m, const char *method)
{
    try {
        if (m && m->is_aoti)
            return !method || !strcmp(method, "forward");
        return m && m->mod.find_method(method ? method : "forward").has_value();
    } catch (...) {
        return 0;
    }
}

sdm_torch_status sdm_module_call_args(sdm_module *m, const char *method, const sdm_arg *args, int nargs,
                                      sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("module call", [&] {
        need_out(out, "sdm_module_call");
        if (!m)
            throw op_error("sdm_module_call: module is NULL");
        std::string name = method ? method : "forward";
        std::string ctx = m->path + ": " + name + "()";
        if (nargs < 0 || (nargs > 0 && !args))
            throw op_error(ctx + ": bad argument list");
        if (m->is_aoti && name != "forward")
            throw op_error(m->path + ": an AOTInductor package has forward() only, no '" + name + "'");
        decltype(m->mod.find_method(name)) meth;
        if (!m->is_aoti)
            meth = m->mod.find_method(name);
        if (!m->is_aoti && !meth)
            throw op_error(m->path + ": the module has no method '" + name + "'");
        std::vector<c10::IValue> in;
        in.reserve(nargs);
        for (int i = 0; i < nargs; i++) {
            switch (args[i].kind) {
            case SDM_ARG_TENSOR:
                if (!args[i].tensor)
                    throw op_error(ctx + ": argument " + std::to_string(i) + " is NULL");
                in.emplace_back(args[i].tensor->t);
                break;
            case SDM_ARG_INT:
                in.emplace_back(args[i].i);
                break;
            case SDM_ARG_DOUBLE:
                in.emplace_back(args[i].d);
                break;
            default:
                throw op_error(ctx + ": argument " + std::to_string(i) + " has an unknown kind");
            }
        }
        c10::IValue r;
        try {
            r = m->is_aoti ? module_forward(m, std::move(in), ctx) : (*meth)(std::move(in));
        } catch (...) {
            rethrow_in(ctx);
        }
        if (!r.isTensor())
            throw op_error(ctx + ": returned " + r.tagKind() + ", not a tensor");
        *out = wrap(r.toTensor());
    });
}

sdm_torch_status sdm_module_call(sdm_module *m, const char *method, sdm_tensor *const *args, int nargs,
                                 sdm_tensor **out)
{
    std::vector<sdm_arg> a;
    if (out)
        *out = NULL;
    sdm_torch_status st = guarded("module call", [&] {
        if (nargs < 0 || (nargs > 0 && !args))
            throw op_error("sdm_module_call: bad argument list");
        for (int i = 0; i < nargs; i++)
            a.push_back(sdm_arg_tensor(args[i]));
    });
    if (st != SDM_TORCH_OK)
        return st;
    return sdm_module_call_args(m, method, a.data(), nargs, out);
}

sdm_dtype sdm_module_dtype(const sdm_module *m)
{
    try {
        if (!m)
            return SDM_F32;
        if (m->is_aoti)
            return m->aoti_dtype;
        for (const at::Tensor &p : m->mod.parameters())
            if (p.scalar_type() == at::kFloat || p.scalar_type() == at::kHalf)
                return from_scalar_type(p.scalar_type());
        for (const at::Tensor &b : m->mod.buffers())
            if (b.scalar_type() == at::kFloat || b.scalar_type() == at::kHalf)
                return from_scalar_type(b.scalar_type());
    } catch (...) {
    }
    return SDM_F32;
}

void sdm_module_free(sdm_module **m)
{
    if (!m || !*m)
        return;
    try {
        delete *m;
    } catch (...) {
    }
    *m = NULL;
}

/* --- tensors -------------------------------------------------------------- */

sdm_torch_status sdm_tensor_from_host(const void *data, sdm_dtype dtype, const int64_t *shape, int ndim, sdm_device dev,
                                      sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("tensor from host", [&] {
        need_out(out, "sdm_tensor_from_host");
        std::vector<int64_t> sizes = shape_vec(shape, ndim, "sdm_tensor_from_host");
        at::ScalarType st = scalar_type(dtype);
        c10::Device d = torch_device(dev);
        at::Tensor t = at::empty(sizes, at::TensorOptions().dtype(st));
        if (t.numel() > 0) {
            if (!data)
                throw op_error("sdm_tensor_from_host: data is NULL");
            memcpy(t.data_ptr(), data, (size_t)t.numel() * t.element_size());
        }
        *out = wrap(to_device(t, d));
    });
}

sdm_torch_status sdm_tensor_zeros(sdm_dtype dtype, const int64_t *shape, int ndim, sdm_device dev, sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("zeros", [&] {
        need_out(out, "sdm_tensor_zeros");
        std::vector<int64_t> sizes = shape_vec(shape, ndim, "sdm_tensor_zeros");
        at::TensorOptions o = at::TensorOptions().dtype(scalar_type(dtype)).device(torch_device(dev));
        *out = wrap(at::zeros(sizes, o));
    });
}

sdm_torch_status sdm_tensor_randn(uint64_t seed, const int64_t *shape, int ndim, sdm_device dev, sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("randn", [&] {
        need_out(out, "sdm_tensor_randn");
        std::vector<int64_t> sizes = shape_vec(shape, ndim, "sdm_tensor_randn");
        c10::Device d = torch_device(dev);
        /* torch.Generator().manual_seed(seed) is a fresh CPU generator with
         * that seed: the same engine state as constructing it with the seed. */
        at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
        at::Tensor t = at::randn(sizes, gen, at::TensorOptions().dtype(at::kFloat));
        *out = wrap(to_device(t, d));
    });
}

sdm_torch_status sdm_generator_new(uint64_t seed, sdm_generator **out)
{
    if (out)
        *out = NULL;
    return guarded("generator", [&] {
        need_out(out, "sdm_generator_new");
        *out = new sdm_generator{ at::make_generator<at::CPUGeneratorImpl>(seed) };
    });
}

sdm_torch_status sdm_generator_randn(sdm_generator *g, const int64_t *shape, int ndim, sdm_device dev, sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("randn", [&] {
        need_out(out, "sdm_generator_randn");
        if (!g)
            throw op_error("sdm_generator_randn: no generator");
        std::vector<int64_t> sizes = shape_vec(shape, ndim, "sdm_generator_randn");
        at::Tensor t = at::randn(sizes, g->gen, at::TensorOptions().dtype(at::kFloat));
        *out = wrap(to_device(t, torch_device(dev)));
    });
}

void sdm_generator_free(sdm_generator **g)
{
    if (!g || !*g)
        return;
    delete *g;
    *g = NULL;
}

sdm_torch_status sdm_tensor_clone(const sdm_tensor *t, sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("clone", [&] {
        need_out(out, "sdm_tensor_clone");
        *out = wrap(arg(t, "clone", "t").clone());
    });
}

sdm_torch_status sdm_tensor_to(const sdm_tensor *t, sdm_device dev, sdm_dtype dtype, sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("tensor to", [&] {
        need_out(out, "sdm_tensor_to");
        const at::Tensor &x = arg(t, "tensor to", "t");
        *out = wrap(x.to(torch_device(dev), scalar_type(dtype), false, true));
    });
}

int sdm_tensor_ndim(const sdm_tensor *t)
{
    return t ? (int)t->t.dim() : 0;
}

int64_t sdm_tensor_dim(const sdm_tensor *t, int i)
{
    if (!t)
        return -1;
    int64_t n = t->t.dim();
    int64_t k = i < 0 ? n + i : i;
    return k >= 0 && k < n ? t->t.size(k) : -1;
}

int64_t sdm_tensor_numel(const sdm_tensor *t)
{
    return t ? t->t.numel() : 0;
}

sdm_dtype sdm_tensor_dtype(const sdm_tensor *t)
{
    return t ? from_scalar_type(t->t.scalar_type()) : SDM_DTYPE_COUNT;
}

sdm_device sdm_tensor_device(const sdm_tensor *t)
{
    if (t && t->t.is_cuda())
        return sdm_device{ SDM_DEVICE_CUDA, (int)t->t.get_device() };
    return sdm_device{ SDM_DEVICE_CPU, 0 };
}

sdm_torch_status sdm_tensor_to_host(const sdm_tensor *t, sdm_dtype dtype, void *dst, size_t bytes)
{
    return guarded("tensor to host", [&] {
        const at::Tensor &x = arg(t, "tensor to host", "t");
        at::ScalarType st = scalar_type(dtype);
        size_t need = (size_t)x.numel() * c10::elementSize(st);
        if (bytes != need)
            throw op_error("tensor to host: a " + shape_str(x) + " " + sdm_dtype_name(dtype) + " tensor is " +
                           std::to_string(need) + " bytes, the buffer " + std::to_string(bytes));
        if (need == 0)
            return;
        if (!dst)
            throw op_error("tensor to host: dst is NULL");
        at::Tensor c = x.to(at::kCPU, st).contiguous();
        memcpy(dst, c.data_ptr(), need);
    });
}

sdm_torch_status sdm_tensor_axpby(double a, const sdm_tensor *x, double b, const sdm_tensor *y, sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("axpby", [&] {
        need_out(out, "sdm_tensor_axpby");
        const at::Tensor &xt = arg(x, "axpby", "x");
        if (!y) {
            *out = wrap(xt * a);
            return;
        }
        same_shape(xt, y->t, "axpby");
        *out = wrap(at::add(xt * a, y->t, b));
    });
}

sdm_torch_status sdm_tensor_axpby_(double a, const sdm_tensor *x, double b, sdm_tensor *y)
{
    return guarded("axpby_", [&] {
        const at::Tensor &xt = arg(x, "axpby_", "x");
        if (!y)
            throw op_error("axpby_: y is NULL");
        at::Tensor &yt = y->t;
        same_shape(xt, yt, "axpby_");
        if (xt.is_same(yt)) {
            yt.mul_(a + b);
            return;
        }
        yt.mul_(b);
        yt.add_(xt, a);
    });
}

sdm_torch_status sdm_tensor_slerp(const sdm_tensor *a, const sdm_tensor *b, double t, int per_row, sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("slerp", [&] {
        need_out(out, "sdm_tensor_slerp");
        const at::Tensor &at_ = arg(a, "slerp", "a");
        const at::Tensor &bt = arg(b, "slerp", "b");
        same_shape(at_, bt, "slerp");
        if (at_.numel() == 0) {
            *out = wrap(at_.clone());
            return;
        }
        /* Rows in float64: the weights of nearly parallel rows are ratios of
         * small sines that float32 would blur. */
        int64_t cols = per_row && at_.dim() > 0 ? at_.size(-1) : at_.numel();
        at::Tensor A = at_.to(at::kDouble).reshape({ -1, cols });
        at::Tensor B = bt.to(at_.device(), at::kDouble).reshape({ -1, cols });
        at::Tensor nn = (A * A).sum(1).sqrt() * (B * B).sum(1).sqrt();
        at::Tensor dot = (A * B).sum(1) / nn;
        /* Nearly parallel (or zero) rows: plain lerp, as the common SD slerp. */
        at::Tensor lerp = (dot.abs() > 0.9995).logical_or(nn == 0).logical_or(dot.isnan());
        at::Tensor theta = dot.clamp(-1.0, 1.0).acos();
        at::Tensor s = theta.sin();
        at::Tensor s0 = (theta * (1.0 - t)).sin().div(s).masked_fill(lerp, 1.0 - t);
        at::Tensor s1 = (theta * t).sin().div(s).masked_fill(lerp, t);
        at::Tensor r = s0.unsqueeze(1) * A + s1.unsqueeze(1) * B;
        *out = wrap(r.reshape(at_.sizes()).to(at_.scalar_type()));
    });
}

sdm_torch_status sdm_tensor_cat(sdm_tensor *const *ts, int n, sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("cat", [&] {
        need_out(out, "sdm_tensor_cat");
        if (n <= 0 || !ts)
            throw op_error("cat: no tensors given");
        std::vector<at::Tensor> v;
        v.reserve(n);
        for (int i = 0; i < n; i++)
            v.push_back(arg(ts[i], "cat", "a tensor"));
        *out = wrap(at::cat(v, 0));
    });
}

sdm_torch_status sdm_tensor_narrow(const sdm_tensor *t, int64_t start, int64_t len, sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("narrow", [&] {
        need_out(out, "sdm_tensor_narrow");
        const at::Tensor &x = arg(t, "narrow", "t");
        if (x.dim() < 1)
            throw op_error("narrow: a scalar has no rows");
        if (start < 0 || len < 0 || start > x.size(0) - len)
            throw op_error("narrow: rows [" + std::to_string(start) + ", " + std::to_string(start + len) +
                           ") are outside a tensor of " + std::to_string(x.size(0)) + " rows");
        *out = wrap(x.narrow(0, start, len).clone(at::MemoryFormat::Contiguous));
    });
}

/* u + g·(c − u) of a guided batch [2B,...] (sdm_tensor_cfg); *cond: c. */
static at::Tensor cfg_of(const at::Tensor &x, const at::Tensor &gs, at::Tensor *cond)
{
    if (gs.dim() != 1 || gs.size(0) < 1)
        throw op_error("cfg: guidance scales must be [B], got " + shape_str(gs));
    int64_t batch = gs.size(0);
    if (x.dim() < 1 || x.size(0) != 2 * batch)
        throw op_error("cfg: expects a guided batch of " + std::to_string(2 * batch) + " rows, got " + shape_str(x));
    if (gs.device() != x.device())
        throw op_error("cfg: guidance scales and batch are on different devices");
    std::vector<int64_t> gshape(x.dim(), 1);
    gshape[0] = batch;
    at::Tensor gt = gs.to(x.scalar_type()).view(gshape);
    at::Tensor u = x.narrow(0, 0, batch), c = x.narrow(0, batch, batch);
    if (cond)
        *cond = c;
    return u + gt * (c - u);
}

sdm_torch_status sdm_tensor_cfg(const sdm_tensor *both, const sdm_tensor *g, sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("cfg", [&] {
        need_out(out, "sdm_tensor_cfg");
        *out = wrap(cfg_of(arg(both, "cfg", "both"), arg(g, "cfg", "g"), nullptr));
    });
}

sdm_torch_status sdm_tensor_cfg_rescale(const sdm_tensor *both, const sdm_tensor *g, double phi, sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("cfg", [&] {
        need_out(out, "sdm_tensor_cfg_rescale");
        at::Tensor c;
        at::Tensor x = cfg_of(arg(both, "cfg", "both"), arg(g, "cfg", "g"), &c);
        std::vector<int64_t> dims;
        for (int64_t d = 1; d < x.dim(); d++)
            dims.push_back(d);
        at::Tensor r = x * (c.std(dims, true, true) / x.std(dims, true, true));
        *out = wrap(phi * r + (1.0 - phi) * x);
    });
}

sdm_torch_status sdm_tensor_to_rgb8(const sdm_tensor *t, sdm_tensor **out)
{
    if (out)
        *out = NULL;
    return guarded("to_rgb8", [&] {
        need_out(out, "sdm_tensor_to_rgb8");
        const at::Tensor &x = arg(t, "to_rgb8", "t");
        if (x.dim() != 4 || x.size(1) != 3)
            throw op_error("to_rgb8: expects an image batch [B,3,H,W], got " + shape_str(x));
        if (!at::isFloatingType(x.scalar_type()))
            throw op_error("to_rgb8: expects a floating tensor, got " + std::string(c10::toString(x.scalar_type())));
        /* As diffusers: clamp in the decoder's dtype, then *255 and round
         * half to even in float32. */
        at::Tensor y = (x / 2 + 0.5).clamp(0, 1).to(at::kFloat).mul(255).round();
        *out = wrap(y.to(at::kByte).permute({ 0, 2, 3, 1 }).contiguous());
    });
}

sdm_torch_status sdm_tensor_max_abs_diff(const sdm_tensor *a, const sdm_tensor *b, double *out)
{
    return guarded("max_abs_diff", [&] {
        if (!out)
            throw op_error("max_abs_diff: out is NULL");
        const at::Tensor &x = arg(a, "max_abs_diff", "a");
        if (b)
            same_shape(x, arg(b, "max_abs_diff", "b"), "max_abs_diff");
        if (x.numel() == 0) {
            *out = 0.0;
            return;
        }
        at::Tensor d = b ? x.to(at::kDouble) - b->t.to(x.device(), at::kDouble) : x.to(at::kDouble);
        *out = d.abs().max().item<double>();
    });
}

void sdm_tensor_free(sdm_tensor **t)
{
    if (!t || !*t)
        return;
    try {
        delete *t;
    } catch (...) {
    }
    *t = NULL;
}

/* --- CUDA graphs ------------------------------------------------------------ */

sdm_torch_status sdm_tensor_copy_(sdm_tensor *dst, const sdm_tensor *src)
{
    return guarded("copy", [&] {
        if (!dst)
            throw op_error("copy: dst is NULL");
        const at::Tensor &x = arg(src, "copy", "src");
        if (!dst->t.sizes().equals(x.sizes()))
            throw op_error("copy: shapes differ: " + shape_str(dst->t) + " and " + shape_str(x));
        dst->t.copy_(x, /*non_blocking=*/true);
    });
}

sdm_torch_status sdm_tensor_copy_rows_(sdm_tensor *dst, int64_t dst_row, const sdm_tensor *src, int64_t src_row,
                                       int64_t n)
{
    return guarded("copy rows", [&] {
        if (!dst)
            throw op_error("copy rows: dst is NULL");
        const at::Tensor &x = arg(src, "copy rows", "src");
        at::Tensor &y = dst->t;
        if (x.dim() < 1 || x.dim() != y.dim() || !x.sizes().slice(1).equals(y.sizes().slice(1)))
            throw op_error("copy rows: shapes differ past the rows: " + shape_str(y) + " and " + shape_str(x));
        if (n < 0 || src_row < 0 || dst_row < 0 || src_row > x.size(0) - n || dst_row > y.size(0) - n)
            throw op_error("copy rows: " + std::to_string(n) + " rows from " + std::to_string(src_row) + " of " +
                           shape_str(x) + " to " + std::to_string(dst_row) + " of " + shape_str(y));
        y.narrow(0, dst_row, n).copy_(x.narrow(0, src_row, n), /*non_blocking=*/true);
    });
}

int sdm_graphs_available(void)
{
#ifdef SDM_HAVE_CUDA_GRAPHS
    return 1;
#else
    return 0;
#endif
}

sdm_torch_status sdm_capture_begin(sdm_device dev, sdm_graph **out)
{
    if (out)
        *out = NULL;
    return guarded("graph capture", [&] {
        need_out(out, "sdm_capture_begin");
#ifdef SDM_HAVE_CUDA_GRAPHS
        if (dev.type != SDM_DEVICE_CUDA)
            throw op_error("graph capture: needs a CUDA device");
        auto g = std::make_unique<sdm_graph>();
        c10::Device d = torch_device(dev);
        /* The inputs were made on the current stream: let them land, then
         * capture on a side stream (capture never runs on the default one). */
        torch::cuda::synchronize(d.index());
        /* The graph allocates from a pool of its own: give it the blocks
         * the eager warm-up left cached, or a batch that fits step by step
         * may not fit captured. */
        c10::cuda::CUDACachingAllocator::emptyCache();
        g->guard.emplace(c10::cuda::getStreamFromPool(false, d.index()));
        g->device = d.index();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
        /* --devices: other engines work on other threads meanwhile (their
         * allocations, synchronizations); only this thread's may not */
        g->graph.capture_begin({ 0, 0 }, cudaStreamCaptureModeThreadLocal);
#else
        g->graph.capture_begin();
#endif
        *out = g.release();
#else
        (void)dev;
        throw op_error("graph capture: this build has no CUDA graphs");
#endif
    });
}

sdm_torch_status sdm_capture_end(sdm_graph *g)
{
    return guarded("graph capture", [&] {
#ifdef SDM_HAVE_CUDA_GRAPHS
        if (!g || !g->guard)
            throw op_error("graph capture: no capture in progress");
        try {
            g->graph.capture_end();
        } catch (...) {
            g->guard.reset();
            throw;
        }
        g->guard.reset();
        g->captured = true;
#else
        (void)g;
        throw op_error("graph capture: this build has no CUDA graphs");
#endif
    });
}

sdm_torch_status sdm_graph_replay(sdm_graph *g)
{
    return guarded("graph replay", [&] {
#ifdef SDM_HAVE_CUDA_GRAPHS
        if (!g || !g->captured)
            throw op_error("graph replay: no captured graph");
        g->graph.replay();
#else
        (void)g;
        throw op_error("graph replay: this build has no CUDA graphs");
#endif
    });
}

#ifdef SDM_HAVE_CUDA_GRAPHS
namespace
{

/* cudaGraphUpload onto the stream replays run on, where this libtorch's
 * CUDAGraph gives its executable graph (raw_cuda_graph_exec, torch 2.6
 * on); the overload below, chosen where it does not, says it cannot. */
template <typename G>
auto upload_exec(G &graph, c10::DeviceIndex device, int) -> decltype(graph.raw_cuda_graph_exec(), bool())
{
    C10_CUDA_CHECK(cudaGraphUpload(graph.raw_cuda_graph_exec(), c10::cuda::getCurrentCUDAStream(device).stream()));
    return true;
}

template <typename G> bool upload_exec(G &, c10::DeviceIndex, long)
{
    return false;
}

} // namespace
#endif

sdm_torch_status sdm_graph_upload(sdm_graph *g, int *uploaded)
{
    if (uploaded)
        *uploaded = 0;
    return guarded("graph upload", [&] {
#ifdef SDM_HAVE_CUDA_GRAPHS
        if (!g || !g->captured)
            throw op_error("graph upload: no captured graph");
        if (upload_exec(g->graph, g->device, 0)) {
            if (uploaded)
                *uploaded = 1;
        } else {
            g->graph.replay();
        }
#else
        (void)g;
        throw op_error("graph upload: this build has no CUDA graphs");
#endif
    });
}

void sdm_graph_free(sdm_graph **g)
{
    if (!g || !*g)
        return;
    try {
#ifdef SDM_HAVE_CUDA_GRAPHS
        /* a capture abandoned halfway must end before its stream goes */
        if ((*g)->guard && !(*g)->captured) {
            try {
                (*g)->graph.capture_end();
            } catch (...) {
            }
            (*g)->guard.reset();
        }
#endif
        delete *g;
    } catch (...) {
    }
    *g = NULL;
}

/* --- downloads -------------------------------------------------------------- */

namespace
{

void wait_event(const c10::Event &ev)
{
#if TORCH_VERSION_MAJOR >= 2
    ev.synchronize();
#else
    /* libtorch 1.x events cannot be waited on: poll */
    while (!ev.query())
        std::this_thread::sleep_for(std::chrono::microseconds(100));
#endif
}

} // namespace

sdm_torch_status sdm_download_start(const sdm_tensor *t, sdm_dtype dtype, sdm_download **out)
{
    if (out)
        *out = NULL;
    return guarded("copy to host", [&] {
        need_out(out, "sdm_download_start");
        const at::Tensor &x = arg(t, "copy to host", "t");
        auto d = std::make_unique<sdm_download>();
        at::Tensor src = x.to(scalar_type(dtype)).contiguous();
        if (src.is_cuda()) {
            d->host = at::empty(src.sizes(), at::TensorOptions().dtype(src.scalar_type()).pinned_memory(true));
            d->host.copy_(src, /*non_blocking=*/true);
            d->event.emplace(c10::DeviceType::CUDA);
            c10::impl::VirtualGuardImpl impl(c10::DeviceType::CUDA);
            d->event->record(impl.getStream(src.device()));
        } else {
            /* a copy of its own, as on CUDA: later changes to t do not show */
            d->host = src.data_ptr() == x.data_ptr() ? src.clone() : src;
        }
        *out = d.release();
    });
}

sdm_torch_status sdm_download_wait(sdm_download *d, const void **data, size_t *bytes)
{
    if (data)
        *data = NULL;
    if (bytes)
        *bytes = 0;
    return guarded("copy to host", [&] {
        if (!d)
            throw op_error("copy to host: download is NULL");
        if (d->event) {
            wait_event(*d->event);
            d->event.reset();
        }
        if (data)
            *data = d->host.data_ptr();
        if (bytes)
            *bytes = (size_t)d->host.numel() * d->host.element_size();
    });
}

void sdm_download_free(sdm_download **d)
{
    if (!d || !*d)
        return;
    try {
        /* the copy may still be writing into the pinned buffer */
        if ((*d)->event)
            wait_event(*(*d)->event);
        delete *d;
    } catch (...) {
    }
    *d = NULL;
}
