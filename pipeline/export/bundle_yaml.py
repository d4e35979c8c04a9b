"""model.yaml of an sdmorph bundle: the one writer that analytic.py and
export_sd.py share, so the two cannot drift apart (src/bundle.c reads it)."""

import json
import os


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# A checkpoint's scheduler config keys that sdmorph's samplers read
# (src/bundle.c): `sampler: auto` is its class, the rest its options.
SCHEDULER_KEYS = ("timestep_spacing", "use_karras_sigmas", "algorithm_type", "skip_prk_steps",
                  "original_inference_steps", "timestep_scaling")
SPACINGS = ("leading", "trailing", "linspace")


def scheduler_fields(sched):
    """model.yaml's schedule: keys from a diffusers scheduler config (dict):
    its class as `scheduler`, then the keys of SCHEDULER_KEYS it sets."""
    out = {}
    if sched.get("_class_name"):
        out["scheduler"] = sched["_class_name"]
    for k in SCHEDULER_KEYS:
        v = sched.get(k)
        if v is None or (k == "timestep_spacing" and v not in SPACINGS):
            continue
        out[k] = v
    return out


def model_yaml(comment, *, family, prediction, dtype, latent_channels, vae_scale, scaling_factor, width, height,
               text, schedule, aoti=None, aoti_vae=None, source=None, text_2=None, force_zeros_for_empty_prompt=None,
               vae_dtype=None, vae_encoder=False):
    """The text of model.yaml. text: token_length, hidden_size, bos_id,
    eos_id, pad_id, and layers where the text encoder takes token embeddings
    and gives every layer (token_embedding.safetensors beside it); schedule: the scheduler's keys, in order; aoti (an
    AOTInductor UNet, unet.pt2) and aoti_vae (an AOTInductor VAE decoder,
    vae_decoder.pt2): latent_height, latent_width, min_batch, max_batch
    (and the UNet's fp8: its FP8 products' scales, export_sd.py --aoti-fp8);
    vae_encoder: the bundle has vae_encoder.pt (image [B,3,H,W] -> the
    latent distribution's moments [B,2C,h,w], mean then logvar);
    source: what the bundle was exported from (exporter, checkpoint,
    checkpoint_sha256, vae, vae_sha256, loras: [{file, scale, sha256}]).
    SDXL: text's penultimate (both encoders read the layer before the
    last); text_2: the second encoder's hidden_size, pad_id, layers,
    pooled_size (text_encoder_2.pt and token_embedding_2.safetensors);
    force_zeros_for_empty_prompt; vae_dtype where the VAE decoder computes
    in another dtype than the rest (float32: SDXL's overflows in float16)."""
    lines = ["# " + line if line else "#" for line in comment.splitlines()]
    top = (("format", 1), ("family", family), ("prediction", prediction), ("dtype", dtype),
           ("latent_channels", latent_channels), ("vae_scale", vae_scale), ("scaling_factor", scaling_factor),
           ("width", width), ("height", height))
    lines += [f"{k}: {_value(v)}" for k, v in top]
    if vae_dtype:
        lines.append(f"vae_dtype: {vae_dtype}")
    if force_zeros_for_empty_prompt is not None:
        lines.append(f"force_zeros_for_empty_prompt: {_value(bool(force_zeros_for_empty_prompt))}")
    text_keys = ("token_length", "hidden_size", "bos_id", "eos_id", "pad_id") + \
        tuple(k for k in ("layers", "penultimate") if k in text)
    sections = [("text", text_keys, text)]
    if text_2:
        sections.append(("text_2", ("hidden_size", "pad_id", "layers", "pooled_size"), text_2))
    sections.append(("schedule", tuple(schedule), schedule))
    for section, keys, values in sections:
        lines.append(f"{section}:")
        lines += [f"  {k}: {_value(values[k])}" for k in keys]
    files = [("text_encoder", "text_encoder.pt"), ("unet", "unet.pt"), ("vae_decoder", "vae_decoder.pt"),
             ("vocab", "vocab.json"), ("merges", "merges.txt")]
    if vae_encoder:
        files.insert(files.index(("vae_decoder", "vae_decoder.pt")) + 1, ("vae_encoder", "vae_encoder.pt"))
    if "layers" in text:
        # the encoder takes token embeddings: sdmorph looks them up in this table
        files.insert(1, ("token_embedding", "token_embedding.safetensors"))
    if text_2:
        files[2:2] = [("text_encoder_2", "text_encoder_2.pt"), ("token_embedding_2", "token_embedding_2.safetensors")]
    builds = [(section, key, name, shapes) for section, key, name, shapes in
              (("aoti", "unet_aoti", "unet.pt2", aoti), ("aoti_vae", "vae_decoder_aoti", "vae_decoder.pt2", aoti_vae))
              if shapes]
    files += [(key, name) for _, key, name, _ in builds]
    lines.append("files:")
    lines += [f"  {k}: {v}" for k, v in files]
    for section, _, _, shapes in builds:
        lines.append(f"{section}:")
        lines += [f"  {k}: {int(shapes[k])}" for k in ("latent_height", "latent_width", "min_batch", "max_batch")]
        if shapes.get("fp8"):
            lines.append(f"  fp8: {shapes['fp8']}")
    if source:
        lines += _source_lines(source)
    return "\n".join(lines) + "\n"


def _source_lines(source):
    # strings as JSON strings: valid YAML, whatever a file name holds
    lines = ["source:"]
    for k in ("exporter", "checkpoint", "checkpoint_sha256", "vae", "vae_sha256"):
        if source.get(k):
            lines.append(f"  {k}: {json.dumps(str(source[k]))}")
    if source.get("loras"):
        lines.append("  loras:")
        for lora in source["loras"]:
            lines.append(f"    - file: {json.dumps(lora['file'])}")
            lines.append(f"      scale: {float(lora['scale'])!r}")
            lines.append(f"      sha256: {json.dumps(lora['sha256'])}")
    return lines


def write_model_yaml(directory, content):
    """Writes directory/model.yaml whole or not at all (a reader never sees
    half a file; the Makefile remakes a bundle whose model.yaml is missing)."""
    tmp = os.path.join(directory, "model.yaml.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(content)
    os.replace(tmp, os.path.join(directory, "model.yaml"))
