#!/usr/bin/env python3
"""CPU checks of pipeline/export's checkpoint reading and LoRA fusion, with
torch alone (no diffusers): run by tests/test_export.c, one "ok NAME" or
"FAIL NAME: why" line per check.

- a .ckpt whose unpickling would write a file is refused by export_sd.py
  with a clear message, and the file is not written (while a plain
  torch.load of the same file does write it: the trap is real);
- a .ckpt of plain tensors is read (and refused for what it is not);
- LoRAs in kohya's and diffusers' layouts fuse into the layers they name
  as W + scale * alpha / rank * up @ down, linear and convolutional; a
  LoRA for layers the model lacks, or with tensors that are not LoRA, is
  refused;
- SDXL LoRAs (kohya's with the original UNet's block names or diffusers',
  diffusers' PEFT layout) fuse the same way into layers of down, mid and up
  blocks and of both text encoders, and nothing else; unknown layers, one
  layer named twice, shapes that do not fit and DoRA are refused, changing
  nothing; kohya's original-UNet names of every layer of the real SDXL UNet
  (its config: ../shared/reference/sdxl) map one to one onto diffusers'
  module paths;
- export_sd.py's text encoder on token embeddings (TextEncoderLayers), over
  a CLIP-shaped stand-in, traces and gives every layer after the final
  norm as plain causal attention computes them;
- embedding_to_safetensors.py converts A1111's .pt and diffusers' .bin
  embeddings into one "emb_params" tensor, and refuses a pickle with code.
- model.yaml's schedule: section records the checkpoint's scheduler class
  and the config keys the samplers read (an unknown spacing left out);
- export_sd.py's SDXL path end to end on tiny SDXL-shaped stand-ins of
  transformers' CLIP and diffusers' UNet and VAE (tests/fixtures/hf_stand_in):
  --random-weights writes both text encoders with their tables, model.yaml
  says what SDXL needs, and (where $SDM_BIN is built) sdmorph renders a
  morph with it and `info` names the second encoder; with --lora, the
  LoRA is fused into the UNet and both encoders and recorded in model.yaml.
"""
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
EXPORT = os.path.join(HERE, "..", "pipeline", "export")
sys.path.insert(0, EXPORT)
import bundle_yaml  # noqa: E402
import checkpoint  # noqa: E402
import lora  # noqa: E402


def report(name, ok, why=""):
    print(f"ok {name}" if ok else f"FAIL {name}: {why}", flush=True)


class WritesAFile:
    """Unpickled, this opens (creates) the marker file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def check_pickle(tmp):
    marker = os.path.join(tmp, "marker")
    evil = os.path.join(tmp, "evil.ckpt")
    torch.save({"state_dict": {"w": torch.zeros(2)}, "callback": WritesAFile(marker)}, evil)
    r = subprocess.run([sys.executable, os.path.join(EXPORT, "export_sd.py"), "--checkpoint", evil, "--out",
                        os.path.join(tmp, "out"), "--device", "cpu"], capture_output=True, text=True)
    report("pickle_refused", r.returncode == 1, f"exit {r.returncode}: {r.stderr[-400:]}")
    report("pickle_message", "holds Python objects beyond tensors" in r.stderr and "nothing in it was run" in
           r.stderr and evil in r.stderr, r.stderr[-400:])
    report("pickle_not_run", not os.path.exists(marker), "the marker file was written")
    report("pickle_no_bundle", not os.path.exists(os.path.join(tmp, "out", "model.yaml")), "a bundle was written")
    # the trap is real: an unrestricted load runs it
    subprocess.run([sys.executable, "-c", "import sys, torch; torch.load(sys.argv[1], weights_only=False)", evil],
                   capture_output=True, cwd=HERE)
    report("pickle_trap_is_real", os.path.exists(marker), "an unrestricted torch.load did not write the marker")


def check_plain_ckpt(tmp):
    path = os.path.join(tmp, "plain.ckpt")
    torch.save({"state_dict": {"w": torch.ones(3)}, "global_step": 7, "epoch": 1}, path)
    sd = checkpoint.load_state_dict(path)
    report("ckpt_tensors_read", list(sd) == ["w"] and torch.equal(sd["w"], torch.ones(3)), str(sd))
    try:
        checkpoint.detect_family(sd, path)
        report("ckpt_not_sd", False, "a file without a UNet was taken for SD")
    except checkpoint.CheckpointError as e:
        report("ckpt_not_sd", "does not hold a Stable Diffusion 1.x/2.x or SDXL UNet" in str(e), str(e))
    for name, sd, want in (("sd1", {checkpoint.KEY_V1: torch.zeros(1)}, "sd1"),
                           ("sd2", {checkpoint.KEY_V1: torch.zeros(1), checkpoint.KEY_V2: torch.zeros(4, 1024)},
                            "sd2")):
        report(f"family_{name}", checkpoint.detect_family(sd, "x") == want)
    report("family_sdxl", checkpoint.detect_family({checkpoint.KEY_XL: torch.zeros(1)}, "xl.safetensors") == "sdxl")
    # the configs from_single_file reads for SDXL: both encoders, both tokenizers, the second padding with "!"
    import json
    tok = os.path.join(tmp, "tok")
    os.makedirs(tok, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        with open(os.path.join(tok, name), "w") as f:
            f.write("{}" if name.endswith("json") else "#version: 0.2\n")
    cfg = checkpoint.write_config_dir(os.path.join(tmp, "xlcfg"), "sdxl", tok, image_size=768)

    def read(name):
        with open(os.path.join(cfg, name)) as f:
            return json.load(f)
    index, unet = read("model_index.json"), read("unet/config.json")
    ok = (index["_class_name"] == "StableDiffusionXLPipeline" and index["force_zeros_for_empty_prompt"] and
          unet["addition_embed_type"] == "text_time" and unet["sample_size"] == 96 and
          read("text_encoder_2/config.json")["hidden_size"] == 1280 and
          read("tokenizer_2/special_tokens_map.json")["pad_token"] == "!" and
          read("vae/config.json")["scaling_factor"] == 0.13025 and
          os.path.isfile(os.path.join(cfg, "tokenizer_2", "merges.txt")))
    report("sdxl_config_dir", ok, json.dumps(index))


class Attn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.to_q = torch.nn.Linear(8, 8)
        self.to_out = torch.nn.ModuleList([torch.nn.Linear(8, 6)])


class Unet(torch.nn.Module):
    """Layers named as in diffusers' UNet (module paths with underscores)."""

    def __init__(self):
        super().__init__()
        block = torch.nn.Module()
        block.proj_in = torch.nn.Conv2d(4, 8, 1)
        tb = torch.nn.Module()
        tb.attn1 = Attn()
        block.transformer_blocks = torch.nn.ModuleList([tb])
        res = torch.nn.Module()
        res.conv1 = torch.nn.Conv2d(4, 5, 3, padding=1)
        down = torch.nn.Module()
        down.attentions = torch.nn.ModuleList([block])
        down.resnets = torch.nn.ModuleList([res])
        self.down_blocks = torch.nn.ModuleList([down])


class Text(torch.nn.Module):
    def __init__(self):
        super().__init__()
        tm = torch.nn.Module()
        enc = torch.nn.Module()
        layer = torch.nn.Module()
        layer.self_attn = torch.nn.Module()
        layer.self_attn.q_proj = torch.nn.Linear(8, 8)
        enc.layers = torch.nn.ModuleList([layer])
        tm.encoder = enc
        self.text_model = tm


LAYERS = [  # (model, module path, rank, conv kernel or None)
    ("unet", "down_blocks.0.attentions.0.proj_in", 2, 1),
    ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", 3, None),
    ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0", 2, None),
    ("unet", "down_blocks.0.resnets.0.conv1", 2, 3),
    ("text_encoder", "text_model.encoder.layers.0.self_attn.q_proj", 4, None),
]


def make_lora(models, layout, g):
    """A random LoRA over LAYERS in `layout`, and the expected deltas (per unit scale)."""
    sd, expect = {}, {}
    for key, name, r, k in LAYERS:
        w = dict(models[key].named_modules())[name].weight
        out_f, in_f = w.shape[0], w.shape[1]
        down = torch.randn(r, in_f, k, k, generator=g) if k else torch.randn(r, in_f, generator=g)
        up = torch.randn(out_f, r, 1, 1, generator=g) if k else torch.randn(out_f, r, generator=g)
        alpha = r / 2.0 if layout == "kohya" else float(r)
        if layout == "kohya":
            base = ("lora_unet_" if key == "unet" else "lora_te_") + name.replace(".", "_")
            sd[base + ".lora_down.weight"], sd[base + ".lora_up.weight"] = down, up
            sd[base + ".alpha"] = torch.tensor(alpha)
        else:
            sd[f"{key}.{name}.lora_A.weight"], sd[f"{key}.{name}.lora_B.weight"] = down, up
        full = up.reshape(out_f, r).double() @ down.reshape(r, -1).double()
        expect[(key, name)] = (alpha / r) * full.reshape(w.shape)
    return sd, expect


def check_lora(tmp):
    g = torch.Generator().manual_seed(3)
    for layout in ("kohya", "diffusers"):
        models = {"unet": Unet(), "text_encoder": Text()}
        before = {(k, n): dict(models[k].named_modules())[n].weight.detach().double().clone()
                  for k, n, _, _ in LAYERS}
        sd, expect = make_lora(models, layout, g)
        path = os.path.join(tmp, f"{layout}.pt")
        torch.save(sd, path)
        n = lora.fuse(path, 0.7, models["unet"], models["text_encoder"])
        worst = max((dict(models[k].named_modules())[nm].weight.detach().double() - before[(k, nm)]
                     - 0.7 * expect[(k, nm)]).abs().max().item() for k, nm, _, _ in LAYERS)
        report(f"lora_{layout}_fused", n == len(LAYERS) and worst < 1e-5, f"{n} layers, max error {worst:g}")
    models = {"unet": Unet(), "text_encoder": Text()}
    for what, sd, want in (
            ("unknown_layer", {"lora_unet_mid_block_x.lora_down.weight": torch.zeros(1, 8),
                               "lora_unet_mid_block_x.lora_up.weight": torch.zeros(8, 1)},
             "'lora_unet_mid_block_x' is not a layer of this model"),
            ("extra_tensor", {"unet.down_blocks.0.resnets.0.conv1.lora_A.weight": torch.zeros(1, 4, 3, 3),
                              "unet.down_blocks.0.resnets.0.conv1.lora_B.weight": torch.zeros(5, 1, 1, 1),
                              "unet.down_blocks.0.resnets.0.conv1.dora_scale": torch.zeros(5)},
             "1 tensors are not LoRA layers read here (first: 'unet.down_blocks.0.resnets.0.conv1.dora_scale'"),
            ("sdxl", {"lora_te2_x.lora_down.weight": torch.zeros(1, 8)}, "is an SDXL LoRA")):
        path = os.path.join(tmp, f"{what}.pt")
        torch.save(sd, path)
        try:
            lora.fuse(path, 1.0, models["unet"], models["text_encoder"])
            report(f"lora_refuses_{what}", False, "accepted")
        except checkpoint.CheckpointError as e:
            report(f"lora_refuses_{what}", want in str(e), str(e))
    report("lora_arg", lora.parse_arg("a/b.safetensors:0.5") == ("a/b.safetensors", 0.5) and
           lora.parse_arg("c:/x.pt") == ("c:/x.pt", 1.0) and lora.parse_arg("d.pt") == ("d.pt", 1.0))


class _Attn(torch.nn.Module):
    def __init__(self, h):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = [torch.nn.Linear(h, h) for _ in range(4)]


class _Mlp(torch.nn.Module):
    def __init__(self, h):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(h, 4 * h), torch.nn.Linear(4 * h, h)

    def forward(self, x):
        x = self.fc1(x)
        return self.fc2(x * torch.sigmoid(1.702 * x))   # CLIP's quick_gelu


class _Layer(torch.nn.Module):
    def __init__(self, h):
        super().__init__()
        self.self_attn, self.mlp = _Attn(h), _Mlp(h)
        self.layer_norm1, self.layer_norm2 = torch.nn.LayerNorm(h), torch.nn.LayerNorm(h)


def _clip_stand_in(h, length, heads, layers):
    """The submodules of transformers' CLIPTextModel that TextEncoderLayers reads."""
    import types
    tm = torch.nn.Module()
    tm.embeddings = torch.nn.Module()
    tm.embeddings.position_embedding = torch.nn.Embedding(length, h)
    tm.encoder = torch.nn.Module()
    tm.encoder.layers = torch.nn.ModuleList([_Layer(h) for _ in range(layers)])
    tm.final_layer_norm = torch.nn.LayerNorm(h)
    return types.SimpleNamespace(text_model=tm, config=types.SimpleNamespace(num_attention_heads=heads))


def plain_layers(tm, x, heads):
    """Every layer's output of a CLIP-shaped stand-in on inputs_embeds x
    [1,L,H], plain causal attention written apart (no final norm)."""
    _, length, h = x.shape
    hs, outs, d = x + tm.embeddings.position_embedding.weight, [], h // heads
    causal = torch.ones(length, length, dtype=torch.bool).triu(1)
    for ly in tm.encoder.layers:
        a = ly.layer_norm1(hs)
        q, k, v = [p(a).reshape(1, length, heads, d).transpose(1, 2)
                   for p in (ly.self_attn.q_proj, ly.self_attn.k_proj, ly.self_attn.v_proj)]
        w = ((q @ k.transpose(-1, -2)) / d ** 0.5).masked_fill(causal, float("-inf")).softmax(-1)
        hs = hs + ly.self_attn.out_proj((w @ v).transpose(1, 2).reshape(1, length, h))
        hs = hs + ly.mlp(ly.layer_norm2(hs))
        outs.append(hs)
    return outs


def check_text_layers():
    import importlib.util
    spec = importlib.util.spec_from_file_location("export_sd", os.path.join(EXPORT, "export_sd.py"))
    export_sd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export_sd)
    torch.manual_seed(5)
    h, length, heads, layers = 16, 77, 2, 3
    clip = _clip_stand_in(h, length, heads, layers)
    tm = clip.text_model
    x = torch.randn(1, length, h)
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(export_sd.TextEncoderLayers(clip).eval(), (x,)).eval())
        got = traced(x)
        outs = [tm.final_layer_norm(hs) for hs in plain_layers(tm, x, heads)]
        err = (got - torch.stack(outs)).abs().max().item()
    report("text_layers_shape", tuple(got.shape) == (layers, 1, length, h), str(tuple(got.shape)))
    report("text_layers_values", err < 1e-5, f"max error {err:g}")
    # SDXL's: the layers without the final norm, and one more, the final norm of the last projected
    proj = torch.nn.Linear(h, h, bias=False)
    with torch.no_grad():
        xl = torch.jit.freeze(torch.jit.trace(export_sd.TextEncoderLayers(clip, raw=True, projection=proj).eval(),
                                              (x,)).eval())
        got = xl(x)
        want = plain_layers(tm, x, heads)
        want.append(proj(tm.final_layer_norm(want[-1])))
        err = (got - torch.stack(want)).abs().max().item()
    report("text_layers_xl_shape", tuple(got.shape) == (layers + 1, 1, length, h), str(tuple(got.shape)))
    report("text_layers_xl_values", err < 1e-5, f"max error {err:g}")
    ids = torch.tensor([[5, 7, 9, 2, 0, 0], [5, 2, 0, 0, 0, 0]])
    report("first_eos", export_sd.first_eos(ids, 2).tolist() == [3, 1], str(export_sd.first_eos(ids, 2)))


def check_embedding_conversion(tmp):
    conv = os.path.join(EXPORT, "embedding_to_safetensors.py")
    a1111, diffusers = torch.randn(3, 8), torch.randn(8)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": a1111}, "name": "grim", "step": 10},
               os.path.join(tmp, "grim.pt"))
    torch.save({"<fox>": diffusers}, os.path.join(tmp, "fox.bin"))
    out = os.path.join(tmp, "emb")
    r = subprocess.run([sys.executable, conv, os.path.join(tmp, "grim.pt"), os.path.join(tmp, "fox.bin"), "--out",
                        out], capture_output=True, text=True)
    report("embedding_convert_runs", r.returncode == 0, r.stderr[-300:])
    import embedding_to_safetensors as converter
    for name, want in (("grim", a1111), ("fox", diffusers.reshape(1, 8))):
        path = os.path.join(out, name + ".safetensors")
        try:
            got = converter.read_safetensors(path)
            ok = list(got) == ["emb_params"] and torch.equal(got["emb_params"], want)
            report(f"embedding_convert_{name}", ok, f"{ {k: tuple(v.shape) for k, v in got.items()} }")
        except Exception as e:      # noqa: BLE001 (a failed check, said)
            report(f"embedding_convert_{name}", False, str(e))
    marker = os.path.join(tmp, "marker-emb")
    torch.save({"string_to_param": {"*": torch.zeros(1, 8)}, "x": WritesAFile(marker)}, os.path.join(tmp, "evil.pt"))
    r = subprocess.run([sys.executable, conv, os.path.join(tmp, "evil.pt"), "--out", out], capture_output=True,
                       text=True)
    report("embedding_pickle_refused", r.returncode == 1 and "nothing in it was run" in r.stderr and
           not os.path.exists(marker), f"exit {r.returncode}: {r.stderr[-300:]}")


def check_scheduler_fields():
    sd15 = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "skip_prk_steps": True, "steps_offset": 1,
            "timestep_spacing": "leading", "trained_betas": None}
    got = bundle_yaml.scheduler_fields(sd15)
    want = {"scheduler": "PNDMScheduler", "timestep_spacing": "leading", "skip_prk_steps": True}
    report("scheduler fields (SD 1.5)", got == want, f"{got} != {want}")
    dpm = {"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++",
           "use_karras_sigmas": True, "timestep_spacing": "even"}
    got = bundle_yaml.scheduler_fields(dpm)
    want = {"scheduler": "DPMSolverMultistepScheduler", "use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"}
    report("scheduler fields (DPM++ SDE Karras, unknown spacing left out)", got == want, f"{got} != {want}")
    text = bundle_yaml.model_yaml("t", family="sd1", prediction="epsilon", dtype="float32", latent_channels=4,
                                  vae_scale=8, scaling_factor=0.18215, width=512, height=512,
                                  text=dict(token_length=77, hidden_size=768, bos_id=1, eos_id=2, pad_id=2),
                                  schedule=dict(train_steps=1000, **bundle_yaml.scheduler_fields(sd15)))
    report("scheduler in model.yaml", "  scheduler: PNDMScheduler\n  timestep_spacing: leading\n" in text and
           "  skip_prk_steps: true\n" in text, text)


def xl_configs(cfg, vocab_size, eos_id):
    """Tiny SDXL-shaped configs: two encoders (16 and 24 wide, the second
    projecting 24 -> 24), cross-attention over both (40), added conditioning
    of the pooled embedding and six time ids (30)."""
    import json
    os.makedirs(cfg, exist_ok=True)
    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                max_position_embeddings=77, vocab_size=vocab_size, eos_token_id=eos_id)
    docs = {"unet_config.json": dict(in_channels=4, sample_size=8, cross_attention_dim=40,
                                     addition_embed_type="text_time", projection_class_embeddings_input_dim=30),
            "vae_config.json": dict(block_out_channels=[8, 8, 8, 8], latent_channels=4, scaling_factor=0.13025,
                                    force_upcast=True),
            "text_encoder_config.json": text,
            "text_encoder_2_config.json": dict(text, hidden_size=24, projection_dim=24, num_attention_heads=3),
            "scheduler_config.json": dict(_class_name="EulerDiscreteScheduler", beta_start=0.00085, beta_end=0.012,
                                          beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1,
                                          set_alpha_to_one=False, prediction_type="epsilon",
                                          timestep_spacing="leading"),
            "model_index.json": dict(_class_name="StableDiffusionXLPipeline", force_zeros_for_empty_prompt=True)}
    for name, doc in docs.items():
        with open(os.path.join(cfg, name), "w") as f:
            json.dump(doc, f)


def export_stand_in(tmp, name, xl, extra=()):
    """export_sd.py --random-weights of tiny configs on the stand-ins (and
    extra arguments): (exit status, stderr, bundle folder, vocab)."""
    import json

    import clip_vocab
    tok, cfg, out = (os.path.join(tmp, f"{name}-{d}") for d in ("tok", "cfg", "bundle"))
    os.makedirs(tok, exist_ok=True)
    vocab, _ = clip_vocab.write_files(tok)
    # CLIP's table size: the exporter's check draws ids below 40000
    xl_configs(cfg, 49408, vocab[clip_vocab.EOS])
    if not xl:
        for f in ("text_encoder_2_config.json", "model_index.json"):
            os.remove(os.path.join(cfg, f))
        with open(os.path.join(cfg, "unet_config.json"), "w") as f:
            json.dump(dict(in_channels=4, sample_size=8, cross_attention_dim=16), f)
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "fixtures", "hf_stand_in"))
    r = subprocess.run([sys.executable, os.path.join(EXPORT, "export_sd.py"), "--random-weights", cfg, "--tokenizer",
                        tok, "--out", out, "--dtype", "float32", "--device", "cpu", *extra], env=env,
                       capture_output=True, text=True)
    return r.returncode, r.stderr, out, vocab


def check_sd_export(tmp):
    """The SD path of the same exporter writes what it did: one encoder, the plain UNet."""
    rc, err, out, _ = export_stand_in(tmp, "sd", False)
    report("sd_export_runs", rc == 0, err[-2500:])
    if rc:
        return
    yaml = open(os.path.join(out, "model.yaml")).read()
    report("sd_export_model_yaml", "family: sd1" in yaml and "text_2" not in yaml and "penultimate" not in yaml and
           "vae_dtype" not in yaml and "force_zeros" not in yaml and not
           os.path.exists(os.path.join(out, "text_encoder_2.pt")), yaml)


def check_sdxl_export(tmp):
    rc, err, out, vocab = export_stand_in(tmp, "xl", True)
    report("sdxl_export_runs", rc == 0, err[-2500:])
    if rc:
        return
    yaml = open(os.path.join(out, "model.yaml")).read()
    want = ["family: sdxl", "scaling_factor: 0.13025", "force_zeros_for_empty_prompt: true", "  penultimate: true",
            "text_2:\n  hidden_size: 24\n  pad_id: %d\n  layers: 3\n  pooled_size: 24\n" % vocab["!"],
            "  text_encoder_2: text_encoder_2.pt", "  token_embedding_2: token_embedding_2.safetensors",
            'exporter: "export_sd.py 4"']
    missing = [w for w in want if w not in yaml]
    report("sdxl_export_model_yaml", not missing and "vae_dtype" not in yaml, f"missing {missing}:\n{yaml}")
    report("sdxl_export_checked", "text_encoder_2 pooled: vs transformers" in err and
           "text_encoder penultimate layer" in err, err[-800:])
    sdmorph = os.environ.get("SDM_BIN")
    if not sdmorph or not os.access(sdmorph, os.X_OK):
        print("ok sdxl_export_render (skipped: no sdmorph built)")
        return
    recipe = os.path.join(tmp, "xl.yaml")
    with open(recipe, "w") as f:
        f.write("width: 64\nheight: 64\nsteps: 3\nguidance: 5\nframes: 2\nbatch: 2\noriginal_size: [512, 512]\n"
                "keyframes:\n  - a rainy city street at night\n  - a dense forest in the rain\n")
    rgb = os.path.join(tmp, "xl.rgb")
    r = subprocess.run([sdmorph, "render", recipe, "--model", out, "--device", "cpu", "-o", rgb, "-q"],
                       capture_output=True, text=True)
    size = os.path.getsize(rgb) if os.path.exists(rgb) else -1
    report("sdxl_export_render", r.returncode == 0 and size == 3 * 64 * 64 * 3, f"exit {r.returncode}, "
           f"{size} bytes: {r.stderr[-500:]}")
    r = subprocess.run([sdmorph, "info", out], capture_output=True, text=True)
    report("sdxl_export_info", r.returncode == 0 and "text 2:         24 wide" in r.stdout, r.stdout + r.stderr)


def _tree(spec, **config):
    """A module holding spec's {dotted path: module} at those paths (and a config)."""
    import types
    root = torch.nn.Module()
    for path, leaf in spec.items():
        node, parts = root, path.split(".")
        for p in parts[:-1]:
            if p not in node._modules:
                node.add_module(p, torch.nn.Module())
            node = node._modules[p]
        node.add_module(parts[-1], leaf)
    root.config = types.SimpleNamespace(**config)
    return root


# SDXL LoRA layers: (model, diffusers' path, kohya's SGM name, out, in, conv kernel or None, rank); in
# down, mid and up blocks, attentions, feed-forwards, resnets, a downsampler and an upsampler, and both
# text encoders at paths the other encoder also has (those must stay as they are)
XL_LAYERS = [
    ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
     "input_blocks_4_1_transformer_blocks_0_attn1_to_q", 8, 8, None, 2),
    ("unet", "down_blocks.2.attentions.1.proj_in", "input_blocks_8_1_proj_in", 8, 6, None, 3),
    ("unet", "down_blocks.1.resnets.1.conv1", "input_blocks_5_0_in_layers_2", 5, 4, 3, 2),
    ("unet", "down_blocks.0.downsamplers.0.conv", "input_blocks_3_0_op", 4, 4, 3, 1),
    ("unet", "mid_block.attentions.0.transformer_blocks.9.attn2.to_k",
     "middle_block_1_transformer_blocks_9_attn2_to_k", 8, 10, None, 2),
    ("unet", "mid_block.resnets.1.time_emb_proj", "middle_block_2_emb_layers_1", 6, 12, None, 2),
    ("unet", "up_blocks.0.attentions.2.transformer_blocks.0.ff.net.0.proj",
     "output_blocks_2_1_transformer_blocks_0_ff_net_0_proj", 16, 8, None, 4),
    ("unet", "up_blocks.1.attentions.0.transformer_blocks.1.attn1.to_out.0",
     "output_blocks_3_1_transformer_blocks_1_attn1_to_out_0", 8, 8, None, 2),
    ("unet", "up_blocks.0.upsamplers.0.conv", "output_blocks_2_2_conv", 4, 4, 3, 2),
    ("unet", "up_blocks.2.resnets.2.conv_shortcut", "output_blocks_8_0_skip_connection", 4, 6, 1, 2),
    ("text_encoder", "text_model.encoder.layers.0.self_attn.q_proj", None, 8, 8, None, 4),
    ("text_encoder_2", "text_model.encoder.layers.1.mlp.fc1", None, 32, 8, None, 2),
    ("text_encoder_2", "text_model.encoder.layers.0.self_attn.out_proj", None, 8, 8, None, 3),
]
XL_UNTOUCHED = [("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k", 8, 8),
                ("text_encoder", "text_model.encoder.layers.1.mlp.fc1", 32, 8),
                ("text_encoder_2", "text_model.encoder.layers.0.self_attn.q_proj", 8, 8)]


def xl_models():
    spec = {"unet": {}, "text_encoder": {}, "text_encoder_2": {}}
    for key, path, _, n_out, n_in, k, _ in XL_LAYERS:
        spec[key][path] = torch.nn.Conv2d(n_in, n_out, k) if k else torch.nn.Linear(n_in, n_out)
    for key, path, n_out, n_in in XL_UNTOUCHED:
        spec[key][path] = torch.nn.Linear(n_in, n_out)
    models = {key: _tree(s) for key, s in spec.items()}
    models["unet"].config.layers_per_block = 2
    return models


def _weights(models):
    return {(key, n): p.detach().double().clone() for key, m in models.items() for n, p in m.named_parameters()}


def make_xl_lora(models, layout, g):
    """A random SDXL LoRA over XL_LAYERS in `layout` (kohya-sgm: kohya's
    names of the original UNet; kohya: kohya's of diffusers' UNet; peft:
    diffusers'), and the expected change of each weight per unit scale."""
    sd, expect = {}, {}
    te = {"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
    for i, (key, path, sgm, n_out, n_in, k, r) in enumerate(XL_LAYERS):
        down = torch.randn(r, n_in, k, k, generator=g) if k else torch.randn(r, n_in, generator=g)
        up = torch.randn(n_out, r, 1, 1, generator=g) if k else torch.randn(n_out, r, generator=g)
        alpha = (i % 3 + 1) * r / 4.0 if layout != "peft" else float(r)
        if layout == "peft":
            sd[f"{key}.{path}.lora_A.weight"], sd[f"{key}.{path}.lora_B.weight"] = down, up
        else:
            name = sgm if layout == "kohya-sgm" and sgm else path.replace(".", "_")
            base = te.get(key, "lora_unet_") + name
            sd[base + ".lora_down.weight"], sd[base + ".lora_up.weight"] = down, up
            sd[base + ".alpha"] = torch.tensor(alpha)
        w = dict(models[key].named_modules())[path].weight
        expect[(key, path + ".weight")] = (alpha / r) * (up.reshape(n_out, r).double() @
                                                         down.reshape(r, -1).double()).reshape(w.shape)
    return sd, expect


def _fused_error(before, after, expect, scale):
    """The largest difference of after - before from scale * expect (0 where not expected)."""
    return max((after[k] - before[k] - scale * expect.get((k[0], k[1]), torch.zeros(()))).abs().max().item()
               for k in before)


def check_xl_lora(tmp):
    g = torch.Generator().manual_seed(4)
    for layout in ("kohya-sgm", "kohya", "peft"):
        models = xl_models()
        before = _weights(models)
        sd, expect = make_xl_lora(models, layout, g)
        path = os.path.join(tmp, f"xl-{layout}.pt")
        torch.save(sd, path)
        try:
            n = lora.fuse(path, 0.7, models["unet"], models["text_encoder"], models["text_encoder_2"])
        except checkpoint.CheckpointError as e:
            report(f"lora_xl_{layout}_fused", False, str(e))
            continue
        worst = _fused_error(before, _weights(models), expect, 0.7)
        report(f"lora_xl_{layout}_fused", n == len(XL_LAYERS) and worst < 1e-5, f"{n} layers, max error {worst:g}")
    check_xl_lora_refusals(tmp)


def check_xl_lora_refusals(tmp):
    z = torch.zeros
    q = "input_blocks_4_1_transformer_blocks_0_attn1_to_q"
    same = {f"lora_unet_{q}.lora_down.weight": z(1, 8), f"lora_unet_{q}.lora_up.weight": torch.ones(8, 1),
            "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": z(1, 8),
            "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight": z(8, 1)}
    same[f"lora_unet_{q}.lora_down.weight"][0, 0] = 1.0
    cases = (
        ("unknown_sgm", {"lora_unet_input_blocks_1_1_proj_in.lora_down.weight": z(1, 6),
                         "lora_unet_input_blocks_1_1_proj_in.lora_up.weight": z(8, 1)},
         "LoRA layer 'lora_unet_input_blocks_1_1_proj_in' (diffusers' down_blocks_0_attentions_0_proj_in) is not "
         "a layer of this model"),
        ("unknown_te2", {"lora_te2_text_model_encoder_layers_7_mlp_fc2.lora_down.weight": z(1, 32),
                         "lora_te2_text_model_encoder_layers_7_mlp_fc2.lora_up.weight": z(8, 1)},
         "LoRA layer 'lora_te2_text_model_encoder_layers_7_mlp_fc2' is not a layer of this model"),
        ("unknown_peft", {"text_encoder_2.text_model.encoder.layers.7.mlp.fc2.lora_A.weight": z(1, 32),
                          "text_encoder_2.text_model.encoder.layers.7.mlp.fc2.lora_B.weight": z(8, 1)},
         "LoRA layer 'text_encoder_2.text_model.encoder.layers.7.mlp.fc2' is not a layer of this model"),
        ("same_layer_twice", same, f"LoRA layers 'lora_unet_{q}' and 'lora_unet_down_blocks_1_attentions_0_"
         "transformer_blocks_0_attn1_to_q' are the same layer (unet.down_blocks.1.attentions.0.transformer_blocks"
         ".0.attn1.to_q)"),
        ("wrong_shape", {"text_encoder_2.text_model.encoder.layers.1.mlp.fc1.lora_A.weight": z(2, 9),
                         "text_encoder_2.text_model.encoder.layers.1.mlp.fc1.lora_B.weight": z(32, 2)},
         "LoRA layer 'text_encoder_2.text_model.encoder.layers.1.mlp.fc1' (up (32, 2), down (2, 9)) does not fit "
         "text_encoder_2.text_model.encoder.layers.1.mlp.fc1, a weight of (32, 8)"),
        ("dora", {f"lora_unet_{q}.lora_down.weight": z(1, 8), f"lora_unet_{q}.lora_up.weight": z(8, 1),
                  f"lora_unet_{q}.dora_scale": z(1, 8)},
         f"1 tensors are not LoRA layers read here (first: 'lora_unet_{q}.dora_scale'; DoRA"))
    for what, sd, want in cases:
        models = xl_models()
        before = _weights(models)
        path = os.path.join(tmp, f"xl-{what}.pt")
        torch.save(sd, path)
        try:
            lora.fuse(path, 1.0, models["unet"], models["text_encoder"], models["text_encoder_2"])
            report(f"lora_xl_refuses_{what}", False, "accepted")
        except checkpoint.CheckpointError as e:
            unchanged = all(torch.equal(before[k], v) for k, v in _weights(models).items())
            report(f"lora_xl_refuses_{what}", want in str(e) and unchanged, f"{e} (weights unchanged: {unchanged})")
    # an SDXL LoRA in diffusers' layout, for an SD 1.x model
    path = os.path.join(tmp, "xl-for-sd.pt")
    torch.save({"text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": z(1, 8),
                "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": z(8, 1)}, path)
    try:
        lora.fuse(path, 1.0, Unet(), Text())
        report("lora_refuses_sdxl_peft", False, "accepted")
    except checkpoint.CheckpointError as e:
        report("lora_refuses_sdxl_peft", "is an SDXL LoRA (it has text_encoder_2. layers)" in str(e), str(e))


# SDXL 1.0's UNet, as ../shared/reference/sdxl/unet_config.json has it
SDXL_UNET = {"layers_per_block": 2, "block_out_channels": [320, 640, 1280], "transformer_layers_per_block": [1, 2, 10],
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]}


def _transformer(prefix, depth, sep):
    """The linear layers of a transformer block stack (diffusers' and SGM's name them alike)."""
    names = [f"{prefix}{sep}proj_in", f"{prefix}{sep}proj_out"]
    for d in range(depth):
        tb = f"{prefix}{sep}transformer_blocks{sep}{d}{sep}"
        names += [f"{tb}{a}{sep}{p}" for a in ("attn1", "attn2") for p in ("to_q", "to_k", "to_v", f"to_out{sep}0")]
        names += [f"{tb}ff{sep}net{sep}0{sep}proj", f"{tb}ff{sep}net{sep}2"]
    return names


def sdxl_diffusers_layers(c):
    """diffusers' UNet2DConditionModel of config c: the module paths of its
    attention/ff/proj layers and of its resnets' and samplers' layers."""
    lpb, depth, levels = c["layers_per_block"], c["transformer_layers_per_block"], len(c["block_out_channels"])
    attn, other = [], []
    for lv in range(levels):
        for j in range(lpb):
            if c["down_block_types"][lv].startswith("CrossAttn"):
                attn += _transformer(f"down_blocks.{lv}.attentions.{j}", depth[lv], ".")
            other += [f"down_blocks.{lv}.resnets.{j}.{n}" for n in ("conv1", "time_emb_proj", "conv2")]
        if lv > 0:      # the channels change in a level's first resnet
            other.append(f"down_blocks.{lv}.resnets.0.conv_shortcut")
        if lv < levels - 1:
            other.append(f"down_blocks.{lv}.downsamplers.0.conv")
    attn += _transformer("mid_block.attentions.0", depth[-1], ".")
    other += [f"mid_block.resnets.{j}.{n}" for j in (0, 1) for n in ("conv1", "time_emb_proj", "conv2")]
    for lv in range(levels):
        for j in range(lpb + 1):
            if c["up_block_types"][lv].startswith("CrossAttn"):
                attn += _transformer(f"up_blocks.{lv}.attentions.{j}", depth[::-1][lv], ".")
            # each takes the skip connection's channels too: all have a shortcut
            other += [f"up_blocks.{lv}.resnets.{j}.{n}" for n in ("conv1", "time_emb_proj", "conv2", "conv_shortcut")]
        if lv < levels - 1:
            other.append(f"up_blocks.{lv}.upsamplers.0.conv")
    return attn, other


def sdxl_sgm_layers(c):
    """The original (SGM) UNet of config c, counted as it builds itself:
    kohya's names of the same layers as sdxl_diffusers_layers."""
    lpb, depth, levels = c["layers_per_block"], c["transformer_layers_per_block"], len(c["block_out_channels"])
    attn, other, i = [], [], 1
    for lv in range(levels):
        for j in range(lpb):
            if c["down_block_types"][lv].startswith("CrossAttn"):
                attn += _transformer(f"input_blocks_{i}_1", depth[lv], "_")
            other += [f"input_blocks_{i}_0_{n}" for n in ("in_layers_2", "emb_layers_1", "out_layers_3")]
            if lv > 0 and j == 0:
                other.append(f"input_blocks_{i}_0_skip_connection")
            i += 1
        if lv < levels - 1:
            other.append(f"input_blocks_{i}_0_op")
            i += 1
    attn += _transformer("middle_block_1", depth[-1], "_")
    other += [f"middle_block_{b}_{n}" for b in (0, 2) for n in ("in_layers_2", "emb_layers_1", "out_layers_3")]
    i = 0
    for lv in range(levels):
        cross = c["up_block_types"][lv].startswith("CrossAttn")
        for j in range(lpb + 1):
            if cross:
                attn += _transformer(f"output_blocks_{i}_1", depth[::-1][lv], "_")
            other += [f"output_blocks_{i}_0_{n}" for n in ("in_layers_2", "emb_layers_1", "out_layers_3",
                                                            "skip_connection")]
            if j == lpb and lv < levels - 1:
                other.append(f"output_blocks_{i}_{2 if cross else 1}_conv")
            i += 1
    return attn, other


def check_sgm_layout():
    """kohya's SGM names of every layer the real SDXL UNet has map one to one
    onto diffusers' module paths."""
    import json
    cfg_path = os.path.join(HERE, "..", "..", "shared", "reference", "sdxl", "unet_config.json")
    c = dict(SDXL_UNET)
    if os.path.isfile(cfg_path):
        with open(cfg_path) as f:
            real = json.load(f)
        differ = {k: real.get(k) for k in c if real.get(k) != c[k]}
        report("sgm_layout_config", not differ, f"{cfg_path} differs: {differ}")
        c = {k: real[k] for k in c}
    d_attn, d_other = sdxl_diffusers_layers(c)
    s_attn, s_other = sdxl_sgm_layers(c)
    # kohya's trainer says "create LoRA for U-Net: 722 modules" for SDXL
    report("sgm_layout_count", len(d_attn) == len(s_attn) == 722, f"{len(d_attn)} and {len(s_attn)} layers")
    up_attention = {lv for lv, t in enumerate(c["up_block_types"]) if t.startswith("CrossAttn")}
    for what, sgm, diffusers in (("attention", s_attn, d_attn), ("resnet_sampler", s_other, d_other)):
        paths = {p.replace(".", "_"): p for p in diffusers}
        mapped = {n: paths.get(lora.sgm_to_diffusers(n, c["layers_per_block"], up_attention) or "") for n in sgm}
        wrong = [f"{n} -> {lora.sgm_to_diffusers(n, c['layers_per_block'], up_attention)}"
                 for n, p in mapped.items() if p is None]
        onto = sorted(set(mapped.values()) - {None}) == sorted(diffusers)
        report(f"sgm_layout_{what}", not wrong and onto and len(set(sgm)) == len(sgm) == len(diffusers),
               f"{len(wrong)} of {len(sgm)} map to no layer (first: {wrong[:3]}); onto: {onto}")


def _export_sd():
    import importlib.util
    spec = importlib.util.spec_from_file_location("export_sd", os.path.join(EXPORT, "export_sd.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# On the stand-ins' layers: the UNet's context projection (kohya's diffusers naming), a layer of each encoder
XL_EXPORT_LORA = [("unet", "lora_unet_", "context", 4, 40),
                  ("text_encoder", "lora_te1_", "text_model.encoder.layers.0.self_attn.q_proj", 16, 16),
                  ("text_encoder_2", "lora_te2_", "text_model.encoder.layers.2.mlp.fc2", 24, 32)]


def check_sdxl_lora_export(tmp):
    """export_sd.py --lora on an SDXL bundle: the export runs and model.yaml
    records the LoRA; export_sd's own loading (on the stand-ins) puts it in
    the UNet and each encoder, exactly."""
    import contextlib
    import io
    import types
    g = torch.Generator().manual_seed(6)
    sd, expect = {}, {}
    for key, prefix, path, n_out, n_in in XL_EXPORT_LORA:
        down, up = torch.randn(2, n_in, generator=g), torch.randn(n_out, 2, generator=g)
        base = prefix + path.replace(".", "_")
        sd[base + ".lora_down.weight"], sd[base + ".lora_up.weight"] = down, up
        sd[base + ".alpha"] = torch.tensor(1.0)
        expect[(key, path + ".weight")] = 0.5 * (up.double() @ down.double())
    lora_path = os.path.join(tmp, "xl-export-lora.pt")
    torch.save(sd, lora_path)
    rc, err, out, _ = export_stand_in(tmp, "xl-lora", True, ["--lora", lora_path + ":0.6"])
    report("sdxl_lora_export_runs", rc == 0 and f"LoRA {lora_path} fused at scale 0.6 (3 layers)" in err, err[-2500:])
    if rc:
        return
    yaml = open(os.path.join(out, "model.yaml")).read()
    want = '  loras:\n    - file: "xl-export-lora.pt"\n      scale: 0.6\n      sha256: "%s"\n' % checkpoint.sha256_file(
        lora_path)
    report("sdxl_lora_export_recorded", want in yaml, yaml)
    # export_sd's loading in this process, on the stand-ins: the same seeded weights without and with the LoRA
    sys.path.insert(0, os.path.join(HERE, "fixtures", "hf_stand_in"))
    try:
        export_sd = _export_sd()
        cfg, tok = os.path.join(tmp, "xl-lora-cfg"), os.path.join(tmp, "xl-lora-tok")
        args = types.SimpleNamespace(checkpoint=None, random_weights=cfg, seed=0, device_name="cpu", image_size=None,
                                     tokenizer=tok, save_diffusers=None, vae=None, config=None, loras=[])
        got = []
        for loras in ([], [(lora_path, 0.6)]):
            args.loras = loras
            with contextlib.redirect_stderr(io.StringIO()):     # its "export_sd: LoRA ... fused" line
                unet, _, texts, *_ = export_sd.load_components(args, os.path.join(tmp, "xl-lora-load"))
            got.append(_weights({"unet": unet, "text_encoder": texts[0], "text_encoder_2": texts[1]}))
        worst = _fused_error(got[0], got[1], expect, 0.6)
        report("sdxl_lora_export_weights", worst < 1e-5, f"max error {worst:g}")
    finally:
        sys.path.remove(os.path.join(HERE, "fixtures", "hf_stand_in"))


def check_fp8(tmp):
    """--aoti-fp8 (an opt-in FP8 UNet package, CUDA only) is refused
    without --aoti and where FP8 products cannot run; model.yaml records its
    scales under aoti: (src/bundle.c reads aoti.fp8)."""
    import fp8_linear

    rc, err, _, _ = export_stand_in(tmp, "fp8", False, ("--aoti-fp8", "static"))
    report("fp8_needs_aoti", rc == 1 and "--aoti-fp8 changes the AOTInductor UNet: use it with --aoti" in err, err[-400:])
    why = fp8_linear.supported(torch.device("cpu"))
    report("fp8_refused_on_cpu", why is not None and ("torch" in why or "compute capability" in why), str(why))
    text = bundle_yaml.model_yaml("c", family="sd1", prediction="epsilon", dtype="float16", latent_channels=4,
                                  vae_scale=8, scaling_factor=0.18215, width=512, height=512,
                                  text=dict(token_length=77, hidden_size=768, bos_id=1, eos_id=2, pad_id=2),
                                  schedule=dict(train_steps=1000),
                                  aoti=dict(latent_height=64, latent_width=64, min_batch=16, max_batch=16, fp8="static"))
    report("fp8_model_yaml", "aoti:\n  latent_height: 64\n  latent_width: 64\n  min_batch: 16\n  max_batch: 16\n"
           "  fp8: static\n" in text, text)


def check_nest_text_model():
    """A single file whose CLIP keys lack `text_model.` (written with
    transformers >= 5.6) gets it back; one that has it is left alone."""
    z = torch.zeros(1)
    flat = {"cond_stage_model.transformer.embeddings.token_embedding.weight": z,
            "cond_stage_model.transformer.encoder.layers.0.mlp.fc1.bias": z,
            "cond_stage_model.transformer.final_layer_norm.weight": z,
            "conditioner.embedders.0.transformer.embeddings.position_embedding.weight": z,
            "conditioner.embedders.1.model.ln_final.weight": z, checkpoint.KEY_V1: z}
    moved = checkpoint.nest_text_model(flat)
    report("nest_text_model", moved == 4 and sorted(flat) == sorted([
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
        "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.bias",
        "cond_stage_model.transformer.text_model.final_layer_norm.weight",
        "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight",
        "conditioner.embedders.1.model.ln_final.weight", checkpoint.KEY_V1]), f"{moved}: {sorted(flat)}")
    nested = {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": z, checkpoint.KEY_V1: z}
    report("nest_text_model_kept", checkpoint.nest_text_model(dict(nested)) == 0)


# (latent_h, latent_w, bytes per value) -> frames per VAE call; tests/test_sdxl.c
# asserts the same table of sdmorph's rule (sdm_decode_chunk)
DECODE_CHUNKS = [(64, 64, 2, 8), (64, 64, 4, 4), (96, 96, 2, 3), (128, 128, 2, 2), (128, 128, 4, 1),
                 (32, 32, 4, 8), (256, 256, 4, 1)]


def check_decode_chunk():
    """The exporter compiles the AOTInductor VAE decoder for as many frames
    per call as sdmorph decodes at once."""
    got = [(h, w, b, _export_sd().decode_chunk(h, w, b)) for h, w, b, _ in DECODE_CHUNKS]
    report("decode_chunk", got == DECODE_CHUNKS, f"{got}")


def main():
    check_scheduler_fields()
    check_nest_text_model()
    check_decode_chunk()
    with tempfile.TemporaryDirectory() as tmp:
        check_pickle(tmp)
        check_plain_ckpt(tmp)
        check_lora(tmp)
        check_xl_lora(tmp)
        check_sgm_layout()
        check_text_layers()
        check_embedding_conversion(tmp)
        check_sd_export(tmp)
        check_sdxl_export(tmp)
        check_sdxl_lora_export(tmp)
        check_fp8(tmp)


if __name__ == "__main__":
    main()
