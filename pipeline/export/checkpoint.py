"""Single-file Stable Diffusion checkpoints (.safetensors, .ckpt), read safely.

A .ckpt is a pickle, and unpickling runs whatever code the file names.
load_state_dict() reads one with torch.load(weights_only=True) alone:
torch's restricted unpickler, which rebuilds tensors and plain containers
and refuses every other global. A file that needs more is refused with a
message (nothing in it has run). .safetensors files are data by design.

The family (SD 1.x, 2.x) is read from the weights' own keys and shapes,
and the component configs that diffusers' from_single_file needs are
written from the published values below into a diffusers-layout folder,
so the conversion runs offline (--config DIR gives another folder).
"""

import hashlib
import inspect
import json
import os
import pickle
import re

import torch


class CheckpointError(Exception):
    """A checkpoint that cannot be read as one, with the reason for a user."""


# What identifies a family, as diffusers' single_file_utils reads it.
KEY_V1 = "model.diffusion_model.output_blocks.11.0.skip_connection.weight"
KEY_V2 = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
KEY_XL = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"
KEY_IN = "model.diffusion_model.input_blocks.0.0.weight"


def sha256_file(path, chunk=1 << 24):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _torch_load_weights_only(path):
    if "weights_only" not in inspect.signature(torch.load).parameters:
        raise CheckpointError(f"{path}: this torch ({torch.__version__}) has no torch.load(weights_only=True), "
                              "the only way .ckpt files are read here (a pickle can run code): use torch >= 1.13, "
                              "or the checkpoint's .safetensors version")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch 1.13: "Unsupported class io.open"; 2.x: "Unsupported global: GLOBAL builtins.open was not ..."
        m = re.search(r"Unsupported (?:class|global:?)\s+(?:GLOBAL\s+)?([\w.]+)", str(e))
        what = f"it calls {m.group(1)}" if m else "it needs more than tensors and plain containers"
        raise CheckpointError(
            f"{path} holds Python objects beyond tensors ({what}); refused: unpickling it could run code, so "
            "nothing in it was run. Use the checkpoint's .safetensors version, or convert it yourself on a "
            "machine where you trust the file") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path}: cannot be read as a .ckpt ({str(e).splitlines()[0]})") from None


def _tensors_only(obj, path, where="the file"):
    """The state dict inside: nested "state_dict"s unwrapped; every value a tensor."""
    while isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: {where} is a {type(obj).__name__}, not a dictionary of tensors")
    out = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor) and isinstance(k, str):
            out[k] = v
    if not out:
        raise CheckpointError(f"{path}: no tensors found")
    return out


def load_state_dict(path):
    """name -> tensor of a .safetensors, .ckpt/.pt/.bin or .pth file, on the CPU."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(f"{path}: reading .safetensors needs the safetensors package "
                                  "(pip install safetensors; diffusers depends on it)") from None
        try:
            return load_file(path, device="cpu")
        except Exception as e:
            raise CheckpointError(f"{path}: not a valid .safetensors file ({e})") from None
    return _tensors_only(_torch_load_weights_only(path), path)


def detect_family(sd, path):
    """'sd1', 'sd2' or 'sdxl' from the keys (diffusers' tests); other models are refused by name."""
    if KEY_IN in sd and sd[KEY_IN].shape[1] != 4:
        raise CheckpointError(f"{path} is an inpainting (or other {sd[KEY_IN].shape[1]}-channel) checkpoint; "
                              "only text-to-image SD 1.x and 2.x are exported")
    if KEY_XL in sd:
        return "sdxl"
    if KEY_V2 in sd and sd[KEY_V2].shape[-1] == 1024:
        return "sd2"
    if KEY_V1 in sd:
        return "sd1"
    raise CheckpointError(f"{path} does not hold a Stable Diffusion 1.x/2.x or SDXL UNet (no {KEY_V1})")


# Where a single file keeps its CLIP ViT-L text encoder in transformers'
# layout (SD 1.x; SDXL's first). Files written with transformers >= 5.6
# (diffusers' convert script among them) lack the `text_model.` level that
# CLIPTextModel had before, and that diffusers' from_single_file looks for.
CLIP_PREFIXES = ("cond_stage_model.transformer.", "conditioner.embedders.0.transformer.")
CLIP_PARTS = ("embeddings.", "encoder.", "final_layer_norm.")


def nest_text_model(sd):
    """Puts a flattened CLIP text encoder's keys back under `text_model.`,
    in place; returns how many keys moved (0: the file is as diffusers
    reads it)."""
    moved = 0
    for prefix in CLIP_PREFIXES:
        if any(k.startswith(prefix + "text_model.") for k in sd):
            continue
        for k in [k for k in sd if k.startswith(tuple(prefix + p for p in CLIP_PARTS))]:
            sd[prefix + "text_model." + k[len(prefix):]] = sd.pop(k)
            moved += 1
    return moved


# The published diffusers configs of SD 1.5 (../shared/reference/sd15) and
# SD 2.1 (the same shapes, with OpenCLIP-H's 23 used layers, linear
# projections and 5-64 head sizes).
SD1 = {
    "unet": {"_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 4, "out_channels": 4,
             "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                  "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
             "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "cross_attention_dim": 768,
             "attention_head_dim": 8, "norm_num_groups": 32},
    "vae": {"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
            "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4,
            "sample_size": 512, "scaling_factor": 0.18215},
    "text_encoder": {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "vocab_size": 49408,
                     "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                     "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                     "projection_dim": 768, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1},
    "scheduler": {"_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
                  "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "epsilon",
                  "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1},
    "pad_token": "<|endoftext|>",
}

SD2 = {
    "unet": dict(SD1["unet"], sample_size=96, cross_attention_dim=1024, attention_head_dim=[5, 10, 20, 20],
                 use_linear_projection=True),
    "vae": dict(SD1["vae"], sample_size=768),
    "text_encoder": dict(SD1["text_encoder"], hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                         num_attention_heads=16, hidden_act="gelu", projection_dim=512),
    "scheduler": dict(SD1["scheduler"], prediction_type="v_prediction"),
    "pad_token": "!",
}


# SDXL 1.0 base (../shared/reference/sdxl): three levels, transformer depth
# 1/2/10, cross-attention 2048, added conditioning of the pooled embedding
# and six time ids; two text encoders (CLIP ViT-L, OpenCLIP ViT-bigG with
# projection), the second tokenizer padding with "!"; Euler, leading spacing.
SDXL = {
    "unet": {"_class_name": "UNet2DConditionModel", "sample_size": 128, "in_channels": 4, "out_channels": 4,
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
             "block_out_channels": [320, 640, 1280], "layers_per_block": 2, "cross_attention_dim": 2048,
             "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10],
             "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
             "projection_class_embeddings_input_dim": 2816, "norm_num_groups": 32},
    "vae": dict(SD1["vae"], sample_size=1024, scaling_factor=0.13025, force_upcast=True),
    "text_encoder": dict(SD1["text_encoder"], eos_token_id=2, bos_token_id=0),
    "text_encoder_2": {"architectures": ["CLIPTextModelWithProjection"], "model_type": "clip_text_model",
                       "vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
                       "num_attention_heads": 20, "max_position_embeddings": 77, "hidden_act": "gelu",
                       "projection_dim": 1280, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1},
    "scheduler": {"_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
                  "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "epsilon",
                  "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "leading",
                  "interpolation_type": "linear", "use_karras_sigmas": False},
    "pad_token": "<|endoftext|>",
    "pad_token_2": "!",
}


def _tokenizer_files(pad):
    return {"special_tokens_map.json": {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                                        "unk_token": "<|endoftext|>", "pad_token": pad},
            "tokenizer_config.json": {"model_max_length": 77, "bos_token": "<|startoftext|>",
                                      "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": pad}}


def write_config_dir(out, family, tokenizer_dir, prediction=None, image_size=None):
    """A diffusers-layout folder of configs (no weights) for from_single_file(config=out)."""
    if family == "sdxl":
        return _write_xl_config_dir(out, tokenizer_dir, prediction, image_size)
    cfg = json.loads(json.dumps(SD1 if family == "sd1" else SD2))
    if prediction:
        cfg["scheduler"]["prediction_type"] = prediction
    if image_size:
        cfg["unet"]["sample_size"] = image_size // 8
        cfg["vae"]["sample_size"] = image_size
    index = {"_class_name": "StableDiffusionPipeline", "feature_extractor": [None, None],
             "safety_checker": [None, None], "requires_safety_checker": False,
             "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    files = {"model_index.json": index, "unet/config.json": cfg["unet"], "vae/config.json": cfg["vae"],
             "text_encoder/config.json": cfg["text_encoder"], "scheduler/scheduler_config.json": cfg["scheduler"],
             "tokenizer/special_tokens_map.json": {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                                                   "unk_token": "<|endoftext|>", "pad_token": cfg["pad_token"]},
             "tokenizer/tokenizer_config.json": {"model_max_length": 77, "bos_token": "<|startoftext|>",
                                                 "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                                                 "pad_token": cfg["pad_token"]}}
    for name, doc in files.items():
        os.makedirs(os.path.dirname(os.path.join(out, name)) or out, exist_ok=True)
        with open(os.path.join(out, name), "w") as f:
            json.dump(doc, f, indent=1)
    for name in ("vocab.json", "merges.txt"):
        src = os.path.join(tokenizer_dir, name)
        if not os.path.isfile(src):
            raise CheckpointError(f"tokenizer file missing: {src}")
        with open(src, "rb") as a, open(os.path.join(out, "tokenizer", name), "wb") as b:
            b.write(a.read())
    return out


def find_tokenizer(explicit, config_dir):
    """CLIP's vocab.json/merges.txt: --tokenizer, the --config folder's, or
    transformers' cache of openai/clip-vit-large-patch14 (offline)."""
    for d in (explicit, config_dir and os.path.join(config_dir, "tokenizer")):
        if d and os.path.isfile(os.path.join(d, "vocab.json")):
            return d
    try:
        from huggingface_hub import hf_hub_download
        vocab = hf_hub_download("openai/clip-vit-large-patch14", "vocab.json", local_files_only=True)
        hf_hub_download("openai/clip-vit-large-patch14", "merges.txt", local_files_only=True)
        return os.path.dirname(vocab)
    except Exception:
        pass
    raise CheckpointError("no CLIP tokenizer files: give --tokenizer DIR (a folder with CLIP's vocab.json and "
                          "merges.txt, e.g. a diffusers checkpoint's tokenizer/)")


def _write_xl_config_dir(out, tokenizer_dir, prediction=None, image_size=None):
    cfg = json.loads(json.dumps(SDXL))
    if prediction:
        cfg["scheduler"]["prediction_type"] = prediction
    if image_size:
        cfg["unet"]["sample_size"] = image_size // 8
        cfg["vae"]["sample_size"] = image_size
    index = {"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": True,
             "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    files = {"model_index.json": index, "unet/config.json": cfg["unet"], "vae/config.json": cfg["vae"],
             "text_encoder/config.json": cfg["text_encoder"], "text_encoder_2/config.json": cfg["text_encoder_2"],
             "scheduler/scheduler_config.json": cfg["scheduler"]}
    for sub, pad in (("tokenizer", cfg["pad_token"]), ("tokenizer_2", cfg["pad_token_2"])):
        for name, doc in _tokenizer_files(pad).items():
            files[f"{sub}/{name}"] = doc
    for name, doc in files.items():
        os.makedirs(os.path.dirname(os.path.join(out, name)) or out, exist_ok=True)
        with open(os.path.join(out, name), "w") as f:
            json.dump(doc, f, indent=1)
    for sub in ("tokenizer", "tokenizer_2"):
        for name in ("vocab.json", "merges.txt"):
            src = os.path.join(tokenizer_dir, name)
            if not os.path.isfile(src):
                raise CheckpointError(f"tokenizer file missing: {src}")
            with open(src, "rb") as a, open(os.path.join(out, sub, name), "wb") as b:
                b.write(a.read())
    return out
