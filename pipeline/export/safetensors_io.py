"""A .safetensors writer in plain Python (torch tensors in, no other package),
for files sdmorph reads in C (src/safetensors.c): the analytic bundle's and
export_sd.py's token table, converted textual-inversion embeddings. The
layout is the format's: an 8-byte little-endian header length, the JSON
header (padded with spaces to 8 bytes), the tensors' bytes end to end."""

import json
import struct

import torch

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}


def write(path, tensors, metadata=None):
    """tensors: {name: tensor}, written in name order, little-endian."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _DTYPES:
            raise ValueError(f"{name}: dtype {t.dtype} is not written")
        # bytes of the raw storage: view as uint8 (bfloat16 has no numpy type)
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
