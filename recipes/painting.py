#!/usr/bin/env python3
"""Draws the example recipes' starting picture (painting.png): a small
landscape - a sky fading to the horizon, a low sun, two ranges of hills
and a lake - as an RGB PNG, with nothing but the standard library.

    python3 recipes/painting.py OUT.png [WIDTH HEIGHT]

The build makes it (make: recipes/painting.png); it is never committed."""

import math
import struct
import sys
import zlib


def pixel(x, y, w, h):
    u, v = x / (w - 1), y / (h - 1)
    horizon = 0.62
    hill_far = horizon - 0.10 * math.sin(3.1 * u + 0.4) - 0.05 * math.sin(7.3 * u)
    hill_near = 0.72 - 0.08 * math.sin(2.2 * u + 2.0) - 0.03 * math.sin(11.0 * u + 1.0)
    if v < hill_far:  # sky with a low sun
        t = v / hill_far
        r, g, b = 70 + 150 * t, 110 + 100 * t, 190 - 10 * t
        d = math.hypot(u - 0.68, v - 0.42)
        glow = max(0.0, 1.0 - d / 0.25) ** 2
        r, g, b = r + 120 * glow, g + 90 * glow, b + 20 * glow
        if d < 0.06:
            r, g, b = 255, 236, 170
    elif v < hill_near:  # far hills, hazy
        t = (v - hill_far) / max(hill_near - hill_far, 1e-6)
        r, g, b = 90 - 20 * t, 120 - 10 * t, 130 - 30 * t
    elif v < 0.84:  # near hills
        t = (v - hill_near) / (0.84 - hill_near)
        r, g, b = 50 + 20 * t, 100 + 30 * t, 50 + 10 * t
    else:  # the lake, the sky mirrored and darker
        t = (v - 0.84) / 0.16
        ripple = 12 * math.sin(60 * v + 4 * math.sin(9 * u))
        r, g, b = 60 + 40 * (1 - t) + ripple, 90 + 40 * (1 - t) + ripple, 140 + 30 * (1 - t) + ripple
    return bytes(max(0, min(255, int(c))) for c in (r, g, b))


def png(w, h):
    rows = b"".join(b"\0" + b"".join(pixel(x, y, w, h) for x in range(w)) for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def main():
    if len(sys.argv) not in (2, 4):
        sys.exit(__doc__)
    w, h = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) == 4 else (320, 256)
    with open(sys.argv[1] + ".tmp", "wb") as f:
        f.write(png(w, h))
    import os
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])


if __name__ == "__main__":
    main()
