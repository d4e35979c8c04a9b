#!/usr/bin/env python3
"""Makes the analytic test bundle: a tiny model whose answers are known.

    analytic.py --out DIR [--prediction epsilon|v_prediction] [--width 256 --height 256]
                [--step SHARPNESS] [--no-vae-encoder]

- text encoder: as export_sd.py's, it takes token embeddings (the table is
  token_embedding.safetensors, looked up by sdmorph) and gives every
  layer's output: layer k of LAYERS is x + pos + (LAYERS-1-k)*delta, so the
  last is x + pos (= table[ids] + pos) and clip skip s adds (s-1)*delta
  exactly; from_ids(ids) is the last layer from ids, for tests.
  --text-input ids makes the older kind (ids in, last layer out);
- UNet: a perfect denoiser toward x0 = target(emb, h, w), a colour field
  that depends smoothly on the mean token embedding (exported as a method,
  with alpha_bar(t) and alphas_cumprod() for checks);
- VAE decoder: bilinear upsampling by 8, a fixed 1x1 colour mix, tanh;
- VAE encoder: the decoder's inverse on its range, as moments (mean, then
  logvar = -30, so the latent drawn is the mean to 3e-7): atanh, the colour
  mix's pseudo-inverse, an 8x8 average pool and the inverse of what that
  pool does to a bilinear upsampling (a fixed tridiagonal matrix per axis).
  decode(encode(x)) = x for every image the decoder can make, and
  encode(decode(z)) = z for latents in the colour mix's row space.

Every deterministic sampler then has a closed-form result, CFG is linear
in x0, and a morph frame is exactly decode(target(mix(e_a, e_b, t))).

--xl makes the SDXL-shaped twin: a second text encoder (HIDDEN_2 wide,
padding with "!"), whose extra output layer is the running mean of its last
layer's rows times a projection, so the pooled embedding (that layer's row
at the end of text) follows the words; both encoders read the layer before
the last (text.penultimate); the UNet takes (x, t, emb [B,L,HIDDEN+HIDDEN_2],
pooled [B,HIDDEN_2], time_ids [B,6]) and its target adds pooled @ Wp and
time_ids/1024 @ Wt before the tanh: target(emb, pooled, time_ids, h, w).
The VAE scaling factor is SDXL's (the encoder inverts that decoder as the
plain bundle's does), and an empty negative prompt is zeros.

--step K (K > 0) adds a sharp step along every morph that crosses a fixed
plane of embedding space: with S the sum of the token embeddings, S0 the
empty prompt's, d a fixed unit direction and P a fixed pattern of +-STEP_AMP,

    s = (S - S0) . d,  gate = sigmoid(K s),  x0 = tanh(m W + b + gate P)

so the picture is a smooth function of the weight except near s = 0, where
it jumps within a weight range of about 8 / (K |s_b - s_a|). For a lerp
morph s is linear in the weight t: the step sits at t = s_a / (s_a - s_b)
exactly (`step_position(emb)` returns s). The step's tensors come from a
generator of their own, so every other weight is that of the plain bundle.
Weights come from a fixed seed: every machine makes the same bundle. Works
with torch 1.13 (Debian's python3-torch) and 2.x.
"""

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bundle_yaml  # noqa: E402
import clip_vocab  # noqa: E402
import safetensors_io  # noqa: E402

SEED = 20240531
HIDDEN = 32
LAYERS = 3              # text encoder layers (clip skip 1..3)
TOKENS = clip_vocab.TOKEN_LENGTH
LATENT = 4
GRID = 4                # the target is a GRID x GRID field, upsampled
VAE_SCALE = 8
SCALING = 0.18215
TRAIN_STEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012
W_SCALE = 3.0           # a token moves each pre-tanh value by about 0.2-0.3
GRADIENT = 0.6          # of the colour level, across the field
DETAIL = 0.25
AMP = 1.0
STEP_SEED = SEED + 1    # the step's direction and pattern (--step)
STEP_AMP = 1.5          # pre-tanh offset the step adds, per value
HIDDEN_2 = 24           # --xl: the second encoder's width (= its pooled width)
XL_SEED = SEED + 2      # --xl: the second encoder's and the added terms' weights
XL_SCALING = 0.13025
POOLED_SCALE = 1.5      # a prompt's pooled embedding moves each pre-tanh value by about 0.2
TIME_SCALE = 0.5        # time ids / 1024 through Wt
ATANH_LIMIT = 0.999     # the encoder reads pixels clamped to this (atanh(1) is infinite)
LOGVAR = -30.0          # the encoder's logvar: diffusers' lower clamp, std 3e-7

# Latent channel -> RGB: each channel a colour direction (warm, green-teal,
# blue-violet, brightness), so random fields come out as soft colour mixes.
COLOUR_MIX = [
    [0.80, -0.30, 0.10, 0.40],
    [0.30, 0.70, -0.20, 0.40],
    [-0.50, 0.10, 0.80, 0.40],
]
COLOUR_BIAS = [0.05, 0.0, 0.05]


def schedule():
    """alphas_cumprod of SD's scaled_linear schedule, in float64: betas =
    linspace(sqrt(b0), sqrt(b1), n)**2 with linspace's own formula (from
    the start for the first half, from the end for the second), then a
    running product. Plain Python arithmetic, so every torch version (and
    the C host, in double) gets the same bits."""
    s0, s1, n = BETA_START ** 0.5, BETA_END ** 0.5, TRAIN_STEPS
    step = (s1 - s0) / (n - 1)
    ac, p = [], 1.0
    for i in range(n):
        r = s0 + step * i if i < n // 2 else s1 - step * (n - 1 - i)
        p *= 1.0 - r * r
        ac.append(p)
    return ac


class TextEncoder(torch.nn.Module):
    """inputs_embeds [B,L,H] -> [LAYERS,B,L,H]."""

    def __init__(self, table, pos, delta):
        super().__init__()
        self.register_buffer("table", table)
        self.register_buffer("pos", pos)
        self.register_buffer("delta", delta)
        self.layers = LAYERS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.pos[: x.shape[1]].unsqueeze(0)
        outs = [h + float(self.layers - 1 - k) * self.delta for k in range(self.layers - 1)]
        outs.append(h)
        return torch.stack(outs)

    @torch.jit.export
    def from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.table) + self.pos[: ids.shape[1]].unsqueeze(0)

    @torch.jit.export
    def layer_delta(self) -> torch.Tensor:
        return self.delta.clone()


class PooledTextEncoder(torch.nn.Module):
    """--xl's second encoder: inputs_embeds [B,L,H2] -> [LAYERS+1,B,L,H2];
    the extra layer is cumsum(last)/position @ proj: row i is the mean of
    rows 0..i projected, so the row at the end of text pools the prompt."""

    def __init__(self, table, pos, delta, proj, eos_id: int):
        super().__init__()
        self.register_buffer("table", table)
        self.register_buffer("pos", pos)
        self.register_buffer("delta", delta)
        self.register_buffer("proj", proj)
        self.layers = LAYERS
        self.eos_id = eos_id

    @torch.jit.export
    def penultimate_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """The layer before the last from ids [B,L]: [B,L,H2], for tests."""
        return F.embedding(ids, self.table) + self.pos[: ids.shape[1]].unsqueeze(0) + self.delta

    @torch.jit.export
    def pooled_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """The pooled embedding from ids [B,L] (the first eos after bos): [B,H2], for tests."""
        h = F.embedding(ids, self.table) + self.pos[: ids.shape[1]].unsqueeze(0)
        out = []
        for i in range(ids.shape[0]):
            hits = (ids[i, 1:] == self.eos_id).nonzero()
            eos = int(hits[0, 0]) + 1 if hits.shape[0] > 0 else ids.shape[1] - 1
            out.append(h[i, : eos + 1].mean(dim=0) @ self.proj)
        return torch.stack(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.pos[: x.shape[1]].unsqueeze(0)
        outs = [h + float(self.layers - 1 - k) * self.delta for k in range(self.layers - 1)]
        outs.append(h)
        count = torch.arange(1, h.shape[1] + 1, dtype=h.dtype, device=h.device).reshape(1, -1, 1)
        outs.append((h.cumsum(dim=1) / count) @ self.proj)
        return torch.stack(outs)


class IdsTextEncoder(torch.nn.Module):
    """The older kind: ids [B,L] -> last layer [B,L,H]."""

    def __init__(self, table, pos):
        super().__init__()
        self.register_buffer("table", table)
        self.register_buffer("pos", pos)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.table) + self.pos[: ids.shape[1]].unsqueeze(0)


class UNet(torch.nn.Module):
    def __init__(self, w, b, alphas_cumprod, v_prediction: bool, step):
        super().__init__()
        self.register_buffer("w", w)
        self.register_buffer("b", b)
        # step: (sharpness K, direction d [H], offset S0.d, pattern P [4*G*G]); K = 0: none
        self.step_k = float(step[0])
        self.register_buffer("step_dir", step[1])
        self.step_c = float(step[2])
        self.register_buffer("step_pattern", step[3])
        self.register_buffer("ac", torch.tensor(alphas_cumprod, dtype=torch.float64))
        log_sigmas = [math.log(math.sqrt((1 - a) / a)) for a in alphas_cumprod]
        self.register_buffer("log_sigmas", torch.tensor(log_sigmas, dtype=torch.float64))
        self.amp = AMP
        self.channels = LATENT
        self.grid = GRID
        self.v_prediction = v_prediction

    @torch.jit.export
    def target(self, emb: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x0 = G(emb): [B,L,H] -> [B,4,h,w], float32."""
        m = emb.to(self.w.dtype).mean(dim=1)
        pre = m @ self.w + self.b
        if self.step_k > 0:
            gate = torch.sigmoid(self.step_k * self.step_position(emb))
            pre = pre + gate.unsqueeze(1) * self.step_pattern
        z = torch.tanh(pre) * self.amp
        z = z.reshape(-1, self.channels, self.grid, self.grid)
        return F.interpolate(z, size=[h, w], mode="bilinear", align_corners=False)

    @torch.jit.export
    def step_position(self, emb: torch.Tensor) -> torch.Tensor:
        """s = (S - S0) . d per batch item [B], float32: the step is at s = 0."""
        total = emb.to(self.w.dtype).sum(dim=1)
        return (total * self.step_dir).sum(dim=1) - self.step_c

    @torch.jit.export
    def alphas_cumprod(self) -> torch.Tensor:
        return self.ac.clone()

    @torch.jit.export
    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_bar at timesteps t [B] (float64 [B]). A fractional t
        interpolates log sigma between floor(t) and floor(t)+1, the exact
        inverse of diffusers' _sigma_to_t; an integer t is the table value."""
        n = self.ac.shape[0]
        td = t.to(self.ac.device, torch.float64).reshape(-1).clamp(0, n - 1)
        low = td.floor().clamp(max=n - 2).long()
        frac = td - low.to(torch.float64)
        log_sigma = (1 - frac) * self.log_sigmas[low] + frac * self.log_sigmas[low + 1]
        ab = 1.0 / (1.0 + torch.exp(2.0 * log_sigma))
        ab = torch.where(frac == 0, self.ac[low], ab)
        return torch.where(frac == 1, self.ac[low + 1], ab)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The perfect prediction at x, t toward x0: eps (or v)."""
        x0 = x0.to(torch.float64)
        ab = self.alpha_bar(t).reshape(-1, 1, 1, 1)
        a, s = ab.sqrt(), (1.0 - ab).sqrt()
        eps = (x.to(torch.float64) - a * x0) / s
        if self.v_prediction:
            return (a * eps - s * x0).to(x.dtype)
        return eps.to(x.dtype)

    def forward(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.denoise(x, t, self.target(emb, x.shape[2], x.shape[3]))


class UNetXL(UNet):
    """The perfect denoiser of --xl: its target also reads the pooled
    embedding and the time ids."""

    def __init__(self, w, b, alphas_cumprod, v_prediction: bool, step, wp, wt):
        super().__init__(w, b, alphas_cumprod, v_prediction, step)
        self.register_buffer("wp", wp)
        self.register_buffer("wt", wt)

    @torch.jit.export
    def target_xl(self, emb: torch.Tensor, pooled: torch.Tensor, time_ids: torch.Tensor, h: int,
                  w: int) -> torch.Tensor:
        """x0 = G(emb, pooled, time_ids): -> [B,4,h,w], float32."""
        m = emb.to(self.w.dtype).mean(dim=1)
        pre = m @ self.w + self.b + pooled.to(self.w.dtype) @ self.wp + (time_ids.to(self.w.dtype) / 1024.0) @ self.wt
        z = torch.tanh(pre) * self.amp
        z = z.reshape(-1, self.channels, self.grid, self.grid)
        return F.interpolate(z, size=[h, w], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor, pooled: torch.Tensor,
                time_ids: torch.Tensor) -> torch.Tensor:
        return self.denoise(x, t, self.target_xl(emb, pooled, time_ids, x.shape[2], x.shape[3]))


class VaeDecoder(torch.nn.Module):
    def __init__(self, weight, bias):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.scale = VAE_SCALE

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(self.weight.dtype)
        y = F.interpolate(z, size=[z.shape[2] * self.scale, z.shape[3] * self.scale],
                          mode="bilinear", align_corners=False)
        return torch.tanh(F.conv2d(y, self.weight, self.bias))


class VaeEncoder(torch.nn.Module):
    """image [B,3,8h,8w] in [-1,1] -> moments [B,2*LATENT,h,w] (float32)."""

    def __init__(self, pinv, bias):
        super().__init__()
        self.register_buffer("pinv", pinv)
        self.register_buffer("bias", bias)
        self.scale = VAE_SCALE
        self.limit = ATANH_LIMIT
        self.logvar = LOGVAR

    def smoothing(self, n: int) -> torch.Tensor:
        """A [n,n]: avg_pool(upsample_bilinear(z), 8) = A z along one axis."""
        a = torch.eye(n, dtype=torch.float64) * 0.75
        if n > 1:
            off = torch.full([n - 1], 0.125, dtype=torch.float64)
            a = a + torch.diag(off, 1) + torch.diag(off, -1)
        a[0, 0] += 0.125
        a[n - 1, n - 1] += 0.125
        return a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.atanh(x.to(torch.float64).clamp(-self.limit, self.limit)) - self.bias.reshape(1, 3, 1, 1)
        u = F.conv2d(y, self.pinv)
        p = F.avg_pool2d(u, self.scale)
        z = torch.linalg.solve(self.smoothing(p.shape[2]), p)
        z = torch.linalg.solve(self.smoothing(p.shape[3]), z.transpose(2, 3)).transpose(2, 3)
        return torch.cat([z, torch.full_like(z, self.logvar)], dim=1).float()


def pseudo_inverse(w):
    """W^T (W W^T)^-1 of the 3x4 colour mix, in plain float64 arithmetic
    (the same bits on every machine): [4,3,1,1] for a 1x1 convolution."""
    m = [[math.fsum(w[i][k] * w[j][k] for k in range(LATENT)) for j in range(3)] for i in range(3)]
    cof = [[m[(i + 1) % 3][(j + 1) % 3] * m[(i + 2) % 3][(j + 2) % 3]
            - m[(i + 1) % 3][(j + 2) % 3] * m[(i + 2) % 3][(j + 1) % 3] for i in range(3)] for j in range(3)]
    det = math.fsum(m[0][j] * cof[j][0] for j in range(3))
    inv = [[cof[i][j] / det for j in range(3)] for i in range(3)]
    p = [[math.fsum(w[r][k] * inv[r][c] for r in range(3)) for c in range(3)] for k in range(LATENT)]
    return torch.tensor(p, dtype=torch.float64).reshape(LATENT, 3, 1, 1)


# The weights are drawn with torch.randn (the same bits in every torch
# version) and everything derived from them is computed in float64 by
# elementwise ops or plain Python, then rounded once: no reductions or
# matrix products whose summation order differs between builds.

def projection(g):
    """W [H, 4*GRID*GRID]: per channel a colour level, a left-right and a
    top-bottom gradient, and a little fine detail, each a random linear
    function of the mean embedding. Fields are then soft washes of colour,
    not noise."""
    ramp = torch.tensor([-1.0 + 2.0 * i / (GRID - 1) for i in range(GRID)], dtype=torch.float64)
    level = torch.randn(HIDDEN, LATENT, 1, 1, generator=g).double()
    across = torch.randn(HIDDEN, LATENT, 1, 1, generator=g).double() * ramp.reshape(1, 1, 1, GRID)
    down = torch.randn(HIDDEN, LATENT, 1, 1, generator=g).double() * ramp.reshape(1, 1, GRID, 1)
    fine = torch.randn(HIDDEN, LATENT, GRID, GRID, generator=g).double()
    w = (level + GRADIENT * (across + down) + DETAIL * fine) * W_SCALE
    return w.reshape(HIDDEN, LATENT * GRID * GRID).float()


def centre(table, pos, w, empty_ids):
    """b = -(mean embedding of the empty prompt) @ W, so that the empty
    prompt's target is 0 (a flat field); exactly rounded sums."""
    t, p, wl = table.tolist(), pos.tolist(), w.tolist()
    m = [math.fsum(t[tok][j] + p[i][j] for i, tok in enumerate(empty_ids)) / len(empty_ids)
         for j in range(HIDDEN)]
    return torch.tensor([-math.fsum(m[j] * wl[j][k] for j in range(HIDDEN)) for k in range(len(wl[0]))])


def step_tensors(table, pos, empty_ids, sharpness):
    """The step of --step: a unit direction and a +-STEP_AMP pattern from
    a generator of their own, and S0.d in exactly rounded sums."""
    g = torch.Generator().manual_seed(STEP_SEED)
    d = torch.randn(HIDDEN, generator=g).double()
    d = (d / math.sqrt(math.fsum(v * v for v in d.tolist()))).float()
    sign = torch.randn(LATENT * GRID * GRID, generator=g)
    pattern = torch.where(sign >= 0, torch.tensor(STEP_AMP), torch.tensor(-STEP_AMP))
    t, p, dl = table.tolist(), pos.tolist(), d.tolist()
    s0 = [math.fsum(t[tok][j] + p[i][j] for i, tok in enumerate(empty_ids)) for j in range(HIDDEN)]
    c = math.fsum(s0[j] * dl[j] for j in range(HIDDEN))
    return sharpness, d, c, pattern


def make_modules(vocab_size, bos_id, eos_id, empty_ids, v_prediction, step=0.0):
    g = torch.Generator().manual_seed(SEED)
    table = torch.randn(vocab_size, HIDDEN, generator=g)
    # bos/eos (and pad = eos) fill most of the 77 rows: kept small, so the
    # target follows the words of a prompt rather than its length.
    for i in (bos_id, eos_id):
        table[i] = (table[i].double() * 0.05).float()
    pos = torch.randn(TOKENS, HIDDEN, generator=g)
    w = projection(g)
    # drawn last: the table, pos and W are the same as before layers existed
    delta = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(SEED + 1)) * 0.5
    text = TextEncoder(table, pos, delta)
    unet = UNet(w, centre(table, pos, w, empty_ids), schedule(), v_prediction,
                step_tensors(table, pos, empty_ids, step))
    weight = torch.tensor([[v * SCALING for v in row] for row in COLOUR_MIX]).reshape(3, LATENT, 1, 1)
    vae = VaeDecoder(weight, torch.tensor(COLOUR_BIAS))
    w = [[v * SCALING for v in row] for row in COLOUR_MIX]
    enc = VaeEncoder(pseudo_inverse([[float(torch.tensor(v)) for v in row] for row in w]),
                     torch.tensor(COLOUR_BIAS, dtype=torch.float64))
    return text, unet, vae, enc


def make_xl_modules(vocab_size, bos_id, eos_id, empty_ids, v_prediction):
    """--xl: the first encoder and the VAE as the plain bundle's (VAE with
    SDXL's scaling), a second encoder, and the UNet over both."""
    text, unet, _, _ = make_modules(vocab_size, bos_id, eos_id, empty_ids, v_prediction)
    g = torch.Generator().manual_seed(XL_SEED)
    table2 = torch.randn(vocab_size, HIDDEN_2, generator=g)
    for i in (bos_id, eos_id):
        table2[i] = (table2[i].double() * 0.05).float()
    pos2 = torch.randn(TOKENS, HIDDEN_2, generator=g) * 0.5
    delta2 = torch.randn(HIDDEN_2, generator=g) * 0.5
    proj = torch.randn(HIDDEN_2, HIDDEN_2, generator=g) / math.sqrt(HIDDEN_2)
    text2 = PooledTextEncoder(table2, pos2, delta2, proj, eos_id)
    # W over both encoders' rows: the first's as the plain bundle's, the second's drawn here
    w2 = torch.randn(HIDDEN_2, LATENT * GRID * GRID, generator=g) * W_SCALE * 0.5
    w = torch.cat([unet.w, w2])
    wp = torch.randn(HIDDEN_2, LATENT * GRID * GRID, generator=g) * POOLED_SCALE / math.sqrt(HIDDEN_2)
    wt = torch.randn(6, LATENT * GRID * GRID, generator=g) * TIME_SCALE
    with torch.no_grad():
        empty = torch.tensor([empty_ids])
        e1 = text(F.embedding(empty, text.table))[LAYERS - 2]
        e2 = text2(F.embedding(empty, table2))[LAYERS - 2]
        b = -(torch.cat([e1, e2], dim=2).mean(dim=1) @ w).reshape(-1)
    unet_xl = UNetXL(w, b, schedule(), v_prediction, (0.0, unet.step_dir, 0.0, unet.step_pattern), wp, wt)
    weight = torch.tensor([[v * XL_SCALING for v in row] for row in COLOUR_MIX]).reshape(3, LATENT, 1, 1)
    w = [[v * XL_SCALING for v in row] for row in COLOUR_MIX]
    enc = VaeEncoder(pseudo_inverse([[float(torch.tensor(v)) for v in row] for row in w]),
                     torch.tensor(COLOUR_BIAS, dtype=torch.float64))
    return text, text2, unet_xl, VaeDecoder(weight, torch.tensor(COLOUR_BIAS)), enc


def write_xl(args, vocab, merges):
    """The --xl bundle's modules and model.yaml."""
    bos, eos = vocab[clip_vocab.BOS], vocab[clip_vocab.EOS]
    empty_ids = clip_vocab.encode("", vocab, merges)
    text, text2, unet, vae, enc = make_xl_modules(len(vocab), bos, eos, empty_ids, args.prediction == "v_prediction")
    safetensors_io.write(os.path.join(args.out, "token_embedding.safetensors"), {"weight": text.table})
    safetensors_io.write(os.path.join(args.out, "token_embedding_2.safetensors"), {"weight": text2.table})
    modules = [("text_encoder", text), ("text_encoder_2", text2), ("unet", unet), ("vae_decoder", vae)]
    modules += [] if args.no_vae_encoder else [("vae_encoder", enc)]
    for name, mod in modules:
        torch.jit.script(mod.eval()).save(os.path.join(args.out, name + ".pt"))
    bundle_yaml.write_model_yaml(args.out, bundle_yaml.model_yaml(
        "sdmorph model bundle\nThe analytic SDXL-shaped test model (pipeline/export/analytic.py --xl): "
        "synthetic, exact.",
        family="analytic-sdxl", prediction=args.prediction, dtype="float32", latent_channels=LATENT,
        vae_scale=VAE_SCALE, scaling_factor=XL_SCALING, width=args.width, height=args.height,
        text=dict(token_length=TOKENS, hidden_size=HIDDEN, bos_id=bos, eos_id=eos, pad_id=eos, layers=LAYERS,
                  penultimate=True),
        text_2=dict(hidden_size=HIDDEN_2, pad_id=vocab["!"], layers=LAYERS, pooled_size=HIDDEN_2),
        force_zeros_for_empty_prompt=True, vae_encoder=not args.no_vae_encoder,
        schedule=dict(train_steps=TRAIN_STEPS, beta_start=BETA_START, beta_end=BETA_END,
                      beta_schedule="scaled_linear", steps_offset=1, set_alpha_to_one=False,
                      scheduler="EulerDiscreteScheduler", timestep_spacing="leading"),
        source=dict(exporter="analytic.py", checkpoint="the analytic SDXL-shaped test model (synthetic)")))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="bundle directory to write")
    ap.add_argument("--prediction", choices=["epsilon", "v_prediction"], default="epsilon")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--text-input", choices=["embeds", "ids"], default="embeds",
                    help="ids: the older bundle kind, whose text encoder takes token ids (no clip skip, no embeddings)")
    ap.add_argument("--xl", action="store_true", help="the SDXL-shaped twin (see above)")
    ap.add_argument("--step", type=float, default=0.0, metavar="K",
                    help="sharpness of a step along morphs that cross s = 0 (0: none; see above)")
    ap.add_argument("--no-vae-encoder", action="store_true",
                    help="leave vae_encoder.pt out: the older bundle kind, that cannot start from images")
    args = ap.parse_args()
    if not (args.step >= 0 and math.isfinite(args.step)):
        ap.error("--step must be a finite number >= 0")
    for v in (args.width, args.height):
        if v <= 0 or v % VAE_SCALE:
            ap.error("width and height must be positive multiples of %d" % VAE_SCALE)

    torch.manual_seed(SEED)
    os.makedirs(args.out, exist_ok=True)
    vocab, merges = clip_vocab.write_files(args.out)
    if args.xl:
        write_xl(args, vocab, merges)
        print("analytic SDXL-shaped bundle (%s, %dx%d, torch %s) written to %s"
              % (args.prediction, args.width, args.height, torch.__version__, args.out))
        return
    bos, eos = vocab[clip_vocab.BOS], vocab[clip_vocab.EOS]
    empty_ids = clip_vocab.encode("", vocab, merges)
    text, unet, vae, enc = make_modules(len(vocab), bos, eos, empty_ids, args.prediction == "v_prediction", args.step)

    text_fields = dict(token_length=TOKENS, hidden_size=HIDDEN, bos_id=bos, eos_id=eos, pad_id=eos)
    if args.text_input == "ids":
        text = IdsTextEncoder(text.table, text.pos)
    else:
        safetensors_io.write(os.path.join(args.out, "token_embedding.safetensors"), {"weight": text.table})
        text_fields["layers"] = LAYERS
    modules = [("text_encoder", text), ("unet", unet), ("vae_decoder", vae)]
    modules += [] if args.no_vae_encoder else [("vae_encoder", enc)]
    for name, mod in modules:
        torch.jit.script(mod.eval()).save(os.path.join(args.out, name + ".pt"))

    # model.yaml last: the Makefile's target, so a half-written bundle is remade.
    bundle_yaml.write_model_yaml(args.out, bundle_yaml.model_yaml(
        "sdmorph model bundle\nThe analytic test model (pipeline/export/analytic.py): synthetic, exact."
        + ("\nWith a step along morphs (--step %g)." % args.step if args.step > 0 else ""),
        family="analytic", prediction=args.prediction, dtype="float32", latent_channels=LATENT,
        vae_scale=VAE_SCALE, scaling_factor=SCALING, width=args.width, height=args.height,
        text=text_fields, vae_encoder=not args.no_vae_encoder,
        schedule=dict(train_steps=TRAIN_STEPS, beta_start=BETA_START, beta_end=BETA_END,
                      beta_schedule="scaled_linear", steps_offset=1, set_alpha_to_one=False,
                      scheduler="DDIMScheduler"),
        source=dict(exporter="analytic.py", checkpoint="the analytic test model (synthetic)")))
    print("analytic bundle (%s, %dx%d%s, torch %s) written to %s"
          % (args.prediction, args.width, args.height, ", step %g" % args.step if args.step > 0 else "",
             torch.__version__, args.out))


if __name__ == "__main__":
    main()
