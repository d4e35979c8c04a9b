"""FP8 (e4m3) matrix products for a UNet's attention projections,
feed-forward layers and (SDXL) its transformers' linear projections in and
out, as a lever to measure (issues 17, 20): each nn.Linear there becomes an
Fp8Linear that calls torch._scaled_mm (Hopper's FP8 tensor cores, twice
fp16's peak) on its input quantized to e4m3.

Scales, one of three modes:
  tensor  weights per tensor; the input's per tensor, from its max each call
          (a reduction before every product)
  row     weights per output row; the input's per row, each call (rowwise
          scaled_mm)
  static  weights per tensor; the input's per tensor, fixed by calibrate()
          from calls on sample inputs: the quantization is then pointwise,
          and Inductor can fuse it into the op before

Used by export_sd.py --aoti-fp8 MODE (the UNet package only; opt-in: its
frames differ from the float16 bundle's) and bench/unet_profile.py --fp8
MODE. Needs torch >= 2.4 and a GPU of compute capability 8.9 or more.
"""
import torch

E4M3_MAX = 448.0
# diffusers' module names: Attention's projections, FeedForward's layers, and
# the transformers' projections in and out where they are linear (SDXL's; SD
# 1.5's are 1x1 convolutions, which swap() leaves alone)
TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")


def supported(device):
    """None where FP8 products run on `device`, else why not."""
    if not hasattr(torch, "float8_e4m3fn") or not hasattr(torch, "_scaled_mm"):
        return f"torch {torch.__version__} has no FP8 matrix products (torch >= 2.4)"
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        return "FP8 matrix products need a CUDA GPU of compute capability 8.9 or more (Ada, Hopper)"
    return None


def is_target(name):
    return any(name == t or name.endswith("." + t) for t in TARGETS)


def quantize(x, scale):
    """x / scale as e4m3, saturated (e4m3fn has no infinity: overflow would be NaN)."""
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)


_ROWWISE = {}


def rowwise_takes(dtype, device):
    """Whether this torch's rowwise scaled_mm gives `dtype` out."""
    if dtype not in _ROWWISE:
        a = torch.ones(16, 32, device=device).to(torch.float8_e4m3fn)
        b = torch.ones(16, 32, device=device).to(torch.float8_e4m3fn).t()
        try:
            torch._scaled_mm(a, b, scale_a=torch.ones(16, 1, device=device), scale_b=torch.ones(1, 16, device=device),
                             out_dtype=dtype)
            _ROWWISE[dtype] = True
        except RuntimeError:
            _ROWWISE[dtype] = False
    return _ROWWISE[dtype]


class Fp8Linear(torch.nn.Module):
    def __init__(self, lin, mode):
        super().__init__()
        w = lin.weight.detach().float()  # [out, in]
        if mode == "row":
            w_scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / E4M3_MAX  # [out, 1]
        else:
            w_scale = w.abs().amax().clamp(min=1e-12) / E4M3_MAX
        self.mode = mode
        self.out_features = w.shape[0]
        self.register_buffer("w8", quantize(w, w_scale))  # row-major [out, in]: .t() is column-major
        # rowwise scaled_mm wants scale_b as [1, out]
        self.register_buffer("w_scale", w_scale.reshape(1, -1) if mode == "row" else w_scale.reshape(()))
        self.register_buffer("x_scale", torch.ones((), device=w.device))  # static: set by calibrate()
        self.bias = None if lin.bias is None else torch.nn.Parameter(lin.bias.detach().clone(), requires_grad=False)
        self.out_dtype = lin.weight.dtype
        # some torch versions give rowwise products in bfloat16 only
        self.mm_dtype = self.out_dtype if mode != "row" or rowwise_takes(self.out_dtype, w.device) else torch.bfloat16

    def forward(self, x):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.mode == "row":
            xs = x2.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / E4M3_MAX  # [M, 1]
        elif self.mode == "tensor":
            xs = x2.abs().amax().float().clamp(min=1e-12) / E4M3_MAX
        else:
            xs = self.x_scale
        y = torch._scaled_mm(quantize(x2, xs), self.w8.t(), scale_a=xs, scale_b=self.w_scale,
                             out_dtype=self.mm_dtype).to(self.out_dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


def swap(model, mode):
    """Every target nn.Linear of `model` replaced by an Fp8Linear; their number."""
    n = 0
    for name, mod in list(model.named_modules()):
        if isinstance(mod, torch.nn.Linear) and is_target(name):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, Fp8Linear(mod, mode))
            n += 1
    return n


def calibrate(model, calls, margin=1.0):
    """Static scales: each Fp8Linear's input max over the calls (functions
    running `model`), times margin, as its fixed x_scale."""
    amax = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, Fp8Linear):
            def hook(m, args, name=name):
                a = args[0].detach().abs().amax().float()
                amax[name] = torch.maximum(amax[name], a) if name in amax else a
            hooks.append(mod.register_forward_pre_hook(hook))
            mod.mode_saved, mod.mode = mod.mode, "tensor"  # calibration calls run with dynamic scales
    try:
        with torch.no_grad():
            for call in calls:
                call()
    finally:
        for h in hooks:
            h.remove()
    for name, mod in model.named_modules():
        if isinstance(mod, Fp8Linear):
            mod.mode = mod.mode_saved
            del mod.mode_saved
            mod.x_scale.fill_((amax[name] * margin).clamp(min=1e-12).item() / E4M3_MAX)
    return len(amax)


def fp8_copy(model, mode, calibration_calls):
    """A copy of `model` with its target linears FP8 (swap), static scales
    calibrated on calibration_calls(copy) (functions running the copy);
    returns the copy and the number of layers swapped."""
    import copy

    q = copy.deepcopy(model)
    n = swap(q, mode)
    if mode == "static":
        calibrate(q, calibration_calls(q))
    return q, n
