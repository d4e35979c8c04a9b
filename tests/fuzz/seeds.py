#!/usr/bin/env python3
"""Writes a fuzzing seed corpus into OUT: whole files (--file), the C
string literals of test sources (--literals; adjacent literals joined, as
the compiler does) that contain --contains, and the string values of a
--key in JSON files (--json). One seed a file, named by its hash, so
rerunning adds nothing twice."""
import argparse
import codecs
import hashlib
import json
import pathlib
import re

TOKEN = re.compile(r"""'(?:[^'\\\n]|\\.)*'|"((?:[^"\\\n]|\\.)*)"|//[^\n]*|/\*.*?\*/|\s+|.""", re.S)


def literals(source):
    """Each run of adjacent string literals, decoded to bytes."""
    run = None
    for m in TOKEN.finditer(source):
        text = m.group(0)
        if text.startswith('"'):
            part = codecs.escape_decode(m.group(1).encode("utf-8"))[0]
            run = part if run is None else run + part
        elif text.isspace() or text.startswith(("//", "/*")):
            continue
        elif run is not None:
            yield run
            run = None
    if run is not None:
        yield run


def json_strings(node, key):
    """Every string value of `key`, anywhere in a JSON document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                yield v.encode("utf-8")
            else:
                yield from json_strings(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from json_strings(v, key)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--file", nargs="*", default=[], help="files copied whole")
    ap.add_argument("--literals", nargs="*", default=[], help="C sources whose string literals are seeds")
    ap.add_argument("--contains", default="", help="keep only literals containing this")
    ap.add_argument("--min-len", type=int, default=1)
    ap.add_argument("--json", nargs="*", default=[], help="JSON files whose --key strings are seeds")
    ap.add_argument("--key", default="prompt")
    args = ap.parse_args()

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [pathlib.Path(f).read_bytes() for f in args.file]
    want = args.contains.encode("utf-8")
    for src in args.literals:
        for lit in literals(pathlib.Path(src).read_text(encoding="utf-8")):
            if len(lit) >= args.min_len and want in lit:
                seeds.append(lit)
    for path in args.json:
        seeds.extend(json_strings(json.loads(pathlib.Path(path).read_text(encoding="utf-8")), args.key))
    for s in seeds:
        (out / hashlib.sha1(s).hexdigest()).write_bytes(s)
    print(f"{out}: {len(set(seeds))} seeds")


if __name__ == "__main__":
    main()
