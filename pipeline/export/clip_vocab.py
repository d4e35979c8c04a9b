"""A small CLIP-format BPE vocabulary of the analytic bundle's own.

vocab.json and merges.txt are written exactly the way CLIP's are laid out
(the files transformers' CLIPTokenizer reads): vocab.json holds the 256
byte characters of bytes_to_unicode(), then the same with "</w>", then one
entry per merge result in merge order, then <|startoftext|> and
<|endoftext|>; merges.txt starts with "#version: 0.2" and has one "a b" line
per merge. The merges are learned here by a plain BPE loop over a built-in
corpus of prompt-like text, so every machine gets the same files.

Also a reference encoder (CLIP's bpe() over these files), for checks.
Needs only the standard library.
"""

import json
import os
import re

N_MERGES = 400
TOKEN_LENGTH = 77
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

# Prompt-like text: the words image prompts are made of. Frequencies matter
# (the most frequent pairs are merged first), so it reads like prompts.
CORPUS = """
a rainy city street at night, neon signs, cinematic lighting
a dense forest in the rain, moss, fog, volumetric light
a portrait of a technopriest, oil painting, highly detailed
an abandoned gas station in the desert at sunset, dramatic sky
a cozy cabin in the snowy mountains, warm light in the windows
a futuristic city skyline at dawn, flying cars, golden hour
a quiet lake at sunrise, mist over the water, reflections
an old lighthouse on a rocky coast during a storm, crashing waves
a field of sunflowers under a blue sky, summer afternoon
a cyberpunk alley with glowing neon lights and puddles
a medieval castle on a hill, autumn trees, clouds
a watercolor painting of a harbor with small boats
a bustling market street in the morning, colorful awnings
a spaceship drifting through a nebula, stars, deep space
a tropical beach with palm trees and turquoise water
a dark fantasy cathedral, candles, stained glass windows
a portrait of an old fisherman, dramatic lighting, photograph
a robot reading a book in a library, soft light, digital art
a waterfall in a lush jungle, ferns, sunbeams through the canopy
a snowy village at night, lanterns, falling snow
a desert canyon at golden hour, red rocks, long shadows
an underwater coral reef with fish, light rays, vibrant colors
a steampunk airship above the clouds, brass and copper
a japanese garden with a red bridge and cherry blossoms
a foggy train station, vintage, black and white photograph
a mountain range under the milky way, astrophotography
a wizard casting a spell in an ancient ruin, epic fantasy art
a bowl of fruit on a wooden table, still life, oil on canvas
a surreal dreamscape with floating islands and waterfalls
a portrait of a woman with flowers in her hair, renaissance style
a busy intersection in tokyo at night, rain, reflections, bokeh
a frozen lake with cracked ice, northern lights, aurora
a volcano erupting at night, lava rivers, smoke, ash
a lonely tree on a hill under a stormy sky, moody
a city park in autumn, orange leaves, people walking, warm tones
an astronaut standing on the moon, earth in the background
a neon lit diner at midnight, retro, synthwave colors
a forest path covered in fallen leaves, morning fog, sunlight
a glass greenhouse full of exotic plants, humid, soft light
a knight in shining armor, dragon, burning village, concept art
a minimalist landscape, pastel colors, soft gradients, calm
a close up of a cat with green eyes, studio lighting, sharp focus
a rainy window with droplets, blurred city lights behind
a peaceful river valley, green hills, farmhouses, spring
a gothic tower in the moonlight, bats, mysterious atmosphere
an ancient temple overgrown with vines, jungle, ruins, mist
a street food stall at night, steam, warm light, crowded
a sailing ship on a stormy ocean, huge waves, lightning
a portrait of a cyborg, chrome, circuits, glowing eyes, octane render
a mechanical heart made of gears, intricate, detailed, macro
a field of lavender at dusk, purple sky, warm breeze
a snowy forest with tall pine trees, blue hour, quiet
a techno priest chanting in a cathedral of machines, incense, red robes
a digital painting of a city of glass and light, utopia
an oil painting of a stormy sea, impressionism, thick brush strokes
a photograph of a rainy street in paris, umbrellas, film grain
a fantasy map with mountains, rivers and forests, parchment
the ruins of a city reclaimed by nature, trees through buildings
a highly detailed illustration, trending on artstation, unreal engine
beautiful, masterpiece, best quality, 4k, 8k, ultra realistic
matte painting, wide angle, depth of field, cinematic composition
by greg rutkowski and alphonse mucha, art nouveau, ornate
vaporwave sunset, palm trees, pink and purple, grid, retro
ink drawing, sketch, charcoal, pencil, line art, monochrome
anime style, studio ghibli, soft shading, clean lines
photorealistic, 35mm, kodak portra, natural light, shallow focus
dark, gloomy, eerie, horror, haunted house, abandoned hospital
bright, cheerful, colorful, whimsical, playful, cute creatures
"""

# More words typical of prompts, once each.
WORDS = """
abstract aerial alien amber ancient angel angular apocalyptic arch architecture
arctic armor atmospheric autumn avenue balcony baroque beach bioluminescent birds
blizzard blossom blue bridge bronze buildings butterfly candlelight canyon car
carnival cave ceramic chandelier character city clockwork cloud coast cobblestone
concrete copper cosmic crimson crystal dawn desert detailed dragon dream dune dusk
dystopian electric emerald empire evening fairy feathers festival fire fireflies
flame floral flower forest fountain fractal galaxy garden geometric giant glacier
glow gold golden gothic graffiti green harbor haze highway hologram horizon
illuminated industrial infinite island ivory jade kingdom labyrinth lagoon lamp
landscape lantern laser lighthouse lights magic marble meadow metal metropolis
midnight mirror mist monastery monument moon moss mountain mural mushroom mystic
night nebula neon ocean orchid palace panorama paper pastel peaks pier pixel planet
portal portrait prism purple pyramid quartz railway rain rainbow rainy reflection
river road rooftop rose ruins rust sakura sand scenery sculpture shadow shore
silhouette silver sky skyscraper smoke snow space spire stars statue steam stone
storm street subway sun sunlight sunset swamp symmetrical technopriest temple
texture thunder tower town tree twilight underwater urban valley velvet village
vintage violet volcano warrior water wave wet wild willow wind window winter wood
""".split()


def bytes_to_unicode():
    """CLIP's (and GPT-2's) map of the 256 bytes to printable characters,
    in CLIP's order: printable Latin-1 first, then the rest from U+0100."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


# CLIP's pre-tokenizer: 's 't ..., runs of letters, single digits, runs of
# other non-space characters (\p{L} as [^\W\d_], \p{N} as \d).
_PAT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+", re.IGNORECASE)


def pretokenize(text):
    text = re.sub(r"\s+", " ", text).strip().lower()
    return _PAT.findall(text)


def _word_symbols(word, byte_map):
    chars = [byte_map[b] for b in word.encode("utf-8")]
    return tuple(chars[:-1]) + (chars[-1] + "</w>",)


def learn_merges(n_merges=N_MERGES):
    """Plain BPE: merge the most frequent adjacent pair, n_merges times.
    Ties go to the pair that sorts first, so the result is the same
    everywhere. A pair whose result is already a symbol is passed over,
    so vocab.json has no duplicate keys."""
    byte_map = bytes_to_unicode()
    freq = {}
    for w in pretokenize(CORPUS) + WORDS:
        sym = _word_symbols(w, byte_map)
        freq[sym] = freq.get(sym, 0) + 1
    words = sorted(freq.items())
    known = set(byte_map.values()) | {c + "</w>" for c in byte_map.values()}
    merges = []
    while len(merges) < n_merges:
        pairs = {}
        for sym, f in words:
            for a, b in zip(sym, sym[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + f
        best = None
        for pair, count in sorted(pairs.items()):
            if pair[0] + pair[1] in known:
                continue
            if best is None or count > best[1]:
                best = (pair, count)
        if best is None:
            break
        (a, b), _ = best
        merges.append((a, b))
        known.add(a + b)
        words = [(_merge(sym, a, b), f) for sym, f in words]
    return merges


def _merge(sym, a, b):
    out = []
    i = 0
    while i < len(sym):
        if i + 1 < len(sym) and sym[i] == a and sym[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(sym[i])
            i += 1
    return tuple(out)


def build_vocab(merges):
    chars = list(bytes_to_unicode().values())
    entries = chars + [c + "</w>" for c in chars] + [a + b for a, b in merges] + [BOS, EOS]
    vocab = {e: i for i, e in enumerate(entries)}
    if len(vocab) != len(entries):
        raise ValueError("duplicate vocabulary entries")
    return vocab


def write_files(out_dir, n_merges=N_MERGES):
    """Writes vocab.json and merges.txt; returns (vocab, merges)."""
    merges = learn_merges(n_merges)
    vocab = build_vocab(merges)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(vocab))
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(a + " " + b + "\n")
    return vocab, merges


def bpe(word, ranks, byte_map):
    """CLIP's bpe(): merges the lowest-ranked pair until none is left."""
    sym = _word_symbols(word, byte_map)
    while len(sym) > 1:
        pairs = set(zip(sym, sym[1:]))
        pair = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if pair not in ranks:
            break
        sym = _merge(sym, pair[0], pair[1])
    return sym


def encode(text, vocab, merges, token_length=TOKEN_LENGTH, pad_id=None):
    """ids of a prompt: bos, tokens (cut so eos stays), eos, padding."""
    byte_map = bytes_to_unicode()
    ranks = {m: i for i, m in enumerate(merges)}
    ids = []
    for w in pretokenize(text):
        ids.extend(vocab[s] for s in bpe(w, ranks, byte_map))
    bos, eos = vocab[BOS], vocab[EOS]
    pad = eos if pad_id is None else pad_id
    ids = [bos] + ids[:token_length - 2] + [eos]
    return ids + [pad] * (token_length - len(ids))


if __name__ == "__main__":
    import sys
    m = learn_merges()
    v = build_vocab(m)
    print(len(m), "merges,", len(v), "entries")
    for text in sys.argv[1:]:
        ids = encode(text, v, m)
        inv = {i: e for e, i in v.items()}
        n = ids.index(v[EOS])
        print(text, "->", [inv[i] for i in ids[1:n]])
