"""Stable Diffusion components of the published shapes with seeded random
weights, from a folder of config files (../shared/reference/sd15 or sdxl):
unet_config.json, vae_config.json, text_encoder_config.json (and, for
SDXL, text_encoder_2_config.json), scheduler_config.json.

export_sd.py --random-weights makes its bundles from them, and the GPU
checks' reference scripts make the same weights again (the same seed, the
same order of construction, on the same device) instead of saving and
loading gigabytes. SDXL's are built directly on the device (its UNet has
2.6 billion weights: a CPU's initialisation takes minutes); SD 1.5's on the
CPU, as they always were (their --save-diffusers copies stay the same).
"""
import contextlib
import json
import os

import torch


def is_xl(cfg_dir):
    return os.path.isfile(os.path.join(cfg_dir, "text_encoder_2_config.json"))


def _read(cfg_dir, name):
    with open(os.path.join(cfg_dir, name)) as f:
        return json.load(f)


def _on(device):
    """Modules made inside are made on `device` (torch >= 2.0); else on the CPU."""
    if device is not None and hasattr(torch.device(device), "__enter__"):
        return torch.device(device)
    return contextlib.nullcontext()


def build(cfg_dir, seed, device=None):
    """(unet, vae, [text_encoder(, text_encoder_2)], scheduler config dict),
    float32, in eval mode. device: where SDXL's are made (SD's: the CPU)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    xl = is_xl(cfg_dir)
    torch.manual_seed(seed)
    with _on(device if xl else None):
        unet = UNet2DConditionModel(**_read(cfg_dir, "unet_config.json"))
        vae = AutoencoderKL(**_read(cfg_dir, "vae_config.json"))
        texts = [CLIPTextModel(CLIPTextConfig(**_read(cfg_dir, "text_encoder_config.json")))]
        if xl:
            from transformers import CLIPTextModelWithProjection

            texts.append(CLIPTextModelWithProjection(CLIPTextConfig(**_read(cfg_dir, "text_encoder_2_config.json"))))
    # a config without its class is SD 1.5's: PNDM with skip_prk_steps, as that checkpoint ships it
    sched = dict({"_class_name": "PNDMScheduler", "skip_prk_steps": True}, **_read(cfg_dir, "scheduler_config.json"))
    return unet.eval(), vae.eval(), [t.eval() for t in texts], sched


def force_zeros_for_empty_prompt(cfg_dir):
    """model_index.json's flag (SDXL: true), where the folder has one."""
    path = os.path.join(cfg_dir, "model_index.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get("force_zeros_for_empty_prompt")
