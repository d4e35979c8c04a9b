#!/usr/bin/env python3
"""Two checks of the C tree's shape, no build needed:

  includes   no include cycle between files, nor between modules: x.c and
             x.h are one module, and an `#include "y.h"` in either is an
             edge x -> y. A header with no .c of its own that includes
             module x's header and is included by x is x's internal header
             (encoders/format.h, the sink's; pipeline/render_hooks.h, the
             render's) and part of x. Headers are found where the
             Makefile's -I finds them.
  lengths    no C function in pipeline/, src/, encoders/ or cli/ longer
             than 80 lines (the lines of its body between the braces in
             column 0).

Exits 1 and names the cycle or the functions where a check fails."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRS = ["src", "pipeline", "encoders", "cli", "tests", "tests/fuzz", "bench"]
INCLUDE_PATH = ["src", "pipeline", "encoders", "cli", "tests"]
MAX_LINES = 80
# Where the length rule holds (tests/ and bench/ are left free).
LENGTH_DIRS = ("pipeline/", "src/", "encoders/", "cli/")


def sources():
    for d in DIRS:
        full = os.path.join(ROOT, d)
        for name in sorted(os.listdir(full)) if os.path.isdir(full) else []:
            if name.endswith((".c", ".h", ".cpp")):
                yield os.path.join(d, name)


def module_of(path):
    return os.path.splitext(path)[0]


def resolve(including, name):
    """The file an #include "name" in `including` reads, or None (a system header)."""
    for d in [os.path.dirname(including)] + INCLUDE_PATH:
        cand = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(os.path.join(ROOT, cand)):
            return cand
    return None


def file_graph():
    """file -> the files it includes (ours only)."""
    graph = {}
    for path in sources():
        text = open(os.path.join(ROOT, path), encoding="utf-8").read()
        names = re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.M)
        graph[path] = {t for t in (resolve(path, n) for n in names) if t}
    return graph


def internal_headers(files):
    """header-only module -> the module it is internal to (see the top)."""
    modules = {module_of(f) for f in files}
    coded = {module_of(f) for f in files if not f.endswith(".h")}
    owner = {}
    for h in sorted(modules - coded):
        hfile = h + ".h"
        xs = [module_of(t) for t in files.get(hfile, ())
              if module_of(t) in coded and any(hfile in files[f] for f in files if module_of(f) == module_of(t))]
        if len(xs) == 1:
            owner[h] = xs[0]
    return owner


def include_graph(files, owner):
    graph = {}
    for path, targets in files.items():
        mod = owner.get(module_of(path), module_of(path))
        graph.setdefault(mod, set())
        for t in targets:
            tm = owner.get(module_of(t), module_of(t))
            if tm != mod:
                graph[mod].add(tm)
    return graph


def find_cycle(graph):
    """One cycle as a list of modules, or None (depth-first, three colours)."""
    colour, stack = {}, []

    def visit(node):
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if not colour.get(nxt):
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if not colour.get(node):
            found = visit(node)
            if found:
                return found
    return None


def long_functions(path):
    """(name, first line, body lines) of each function whose body is longer than MAX_LINES."""
    lines = open(os.path.join(ROOT, path), encoding="utf-8").read().split("\n")
    out, start, name = [], None, None
    for i, line in enumerate(lines):
        if line.startswith("{") and start is None:
            start = i
            head = " ".join(lines[max(0, i - 3):i])
            m = re.findall(r"(\w+)\s*\(", head)
            name = m[0] if m else "?"
        elif line.startswith("}") and start is not None:
            body = i - start - 1
            if body > MAX_LINES and not re.match(r"\s*(typedef|struct|enum|static const|const)\b", name or ""):
                out.append((name, start + 1, body))
            start = None
    return out


def main():
    files = file_graph()
    owner = internal_headers(files)
    ok = True
    cycle = find_cycle(files)
    if cycle:
        print("includes: file cycle " + " -> ".join(cycle))
        ok = False
    graph = include_graph(files, owner)
    cycle = find_cycle(graph)
    if cycle:
        print("includes: module cycle " + " -> ".join(cycle))
        ok = False
    if ok:
        print(f"includes: {len(files)} files, {len(graph)} modules, "
              f"{sum(len(v) for v in graph.values())} module-to-module includes, no cycle "
              f"(internal headers: {', '.join(f'{h}.h of {x}' for h, x in sorted(owner.items())) or 'none'})")
    too_long = 0
    for path in sources():
        if path.startswith(LENGTH_DIRS) and path.endswith(".c"):
            for name, line, body in long_functions(path):
                print(f"lengths: {path}:{line}: {name} is {body} lines (at most {MAX_LINES})")
                too_long += 1
    if not too_long:
        print(f"lengths: every function in {', '.join(LENGTH_DIRS)} is at most {MAX_LINES} lines")
    failed = (0 if ok else 1) + (1 if too_long else 0)
    # The test runner's closing line: two checks, includes and lengths.
    print(f"{2 - failed} passed, {failed} failed")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
