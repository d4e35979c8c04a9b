#!/usr/bin/env python3
"""Convert a textual-inversion embedding to the .safetensors sdmorph reads.

    embedding_to_safetensors.py EMBEDDING.pt|.bin [...] --out DIR

sdmorph loads embeddings at render time from a folder (the recipe's
`embeddings:` or the bundle's embeddings/), reading .safetensors files in C;
a prompt uses one by its file name, as A1111 does. Pickled formats are
converted here, once:
- A1111's .pt ({"string_to_param": {"*": [n, H]}, "name", "step", ...});
- diffusers' learned_embeds.bin ({"<token>": [H] or [n, H]});
- a .safetensors with one tensor, or "emb_params" (copied as it is).
Pickles are read with torch.load(weights_only=True) alone: one that holds
more than tensors and plain values is refused, nothing in it run. The
output is DIR/NAME.safetensors with one tensor, "emb_params" [n, H]; NAME
is the input's file name without its extension (--name for one input).
SDXL embeddings (clip_l and clip_g) are refused: sdmorph has no SDXL yet.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkpoint as ckpt  # noqa: E402
import safetensors_io  # noqa: E402


def die(msg):
    print(f"embedding_to_safetensors: {msg}", file=sys.stderr)
    sys.exit(1)


def read_safetensors(path):
    import json
    import struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        if h["dtype"] not in dtypes:
            raise ValueError(f"{path}: tensor {name} is {h['dtype']}")
        a, b = h["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=torch.uint8) if b > a else torch.empty(0, dtype=torch.uint8)
        out[name] = t.view(dtypes[h["dtype"]]).reshape(h["shape"])
    return out


def vectors(path):
    """The embedding's vectors [n, H] (float32)."""
    if path.endswith(".safetensors"):
        data = read_safetensors(path)
    else:
        try:
            data = ckpt._torch_load_weights_only(path)
        except ckpt.CheckpointError as e:
            die(str(e))
    if not isinstance(data, dict):
        die(f"{path}: holds a {type(data).__name__}, not an embedding")
    if "clip_l" in data or "clip_g" in data:
        die(f"{path}: an SDXL embedding (clip_l/clip_g); sdmorph has no SDXL models yet")
    if "string_to_param" in data:                       # A1111
        params = data["string_to_param"]
        if not isinstance(params, dict) or len(params) != 1:
            die(f"{path}: string_to_param holds {len(params) if isinstance(params, dict) else 0} entries; expected 1")
        t = next(iter(params.values()))
    elif "emb_params" in data:                          # kohya's trainer
        t = data["emb_params"]
    else:                                               # diffusers: {token: tensor}
        tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
        if len(tensors) != 1:
            die(f"{path}: {len(tensors)} tensors and no string_to_param or emb_params; not an embedding")
        t = tensors[0]
    if not isinstance(t, torch.Tensor) or t.dim() not in (1, 2):
        die(f"{path}: the embedding is not a [vectors, width] tensor")
    return t.detach().float().reshape(-1, t.shape[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", metavar="EMBEDDING")
    ap.add_argument("--out", required=True, help="folder to write NAME.safetensors into")
    ap.add_argument("--name", help="with one input: the name prompts use (default: its file name)")
    args = ap.parse_args()
    if args.name and len(args.inputs) != 1:
        die("--name takes one input")
    os.makedirs(args.out, exist_ok=True)
    for path in args.inputs:
        if not os.path.isfile(path):
            die(f"{path}: no such file")
        name = args.name or os.path.splitext(os.path.basename(path))[0]
        v = vectors(path)
        out = os.path.join(args.out, name + ".safetensors")
        safetensors_io.write(out, {"emb_params": v}, metadata={"source": os.path.basename(path)})
        print(f"embedding_to_safetensors: {out}: {v.shape[0]} vector{'s' if v.shape[0] != 1 else ''} "
              f"of {v.shape[1]}", file=sys.stderr)


if __name__ == "__main__":
    main()
