#!/usr/bin/env python3
"""Import-graph check of a Rust crate's modules (default: optimist-core).

Every `crate::a::...` / `$crate::a::...` path (also inside `use crate::{a,
b::c}` groups) in a file of top-level module `x` is an edge x -> a. Comments
are ignored. The check fails when

* the graph of top-level modules has a cycle (printed), or
* more than one edge goes from a lower layer to a higher one (layers below),
  or a module is missing from the layer table, or
* a layer compiled only with a cargo feature (the harness) is not declared
  behind `#[cfg(feature = "...")]` in lib.rs, or a module outside it
  imports it (the crate would not build without the feature).

A module is a top-level file `x.rs` or directory `x/` (all its files).

Usage: check_layers.py [SRC_DIR] [--layers FILE] [--graph]
    --graph   print every edge
A layers FILE has one layer per line, lowest first: `name: mod1 mod2 ...`,
or `name@feature: mod1 ...` for a layer behind a cargo feature.
"""

import os
import re
import sys

# Lowest first. A module may import from its own layer or lower ones.
# Directories: exec/ (threads, dispatch, elementwise, compressed, layout,
# cautious), schedule/ (one file per family), stages/, wrappers/, optim/,
# quant/, gemm/.
DEFAULT_LAYERS = [
    ("base", "error cpu rng sqsum math validate"),
    ("data", "tensor quant gemm linalg state"),
    ("rule", "rule optimizer"),
    ("exec", "exec"),
    ("engine", "engine"),
    ("stages", "transform stages groups schedule checkpoint curvature"),
    ("rules", "optim"),
    ("wrappers", "wrappers presets"),
    ("front", "registry spec"),
    ("harness@harness", "problems replay stream"),
]

COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
PATH = re.compile(r"\$?\bcrate::(\{|[A-Za-z_][A-Za-z0-9_]*)")


def strip(text):
    # Drop comments but keep string literals' contents harmless: a `//`
    # inside a string literal would cut the line, which only loses edges
    # from that line's remainder (never adds any).
    return COMMENT.sub("", text)


def group_heads(text, start):
    """Top-level names inside the brace group opening at text[start] == '{'."""
    depth, i, heads, tok = 0, start, [], ""
    expect = True
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
            expect = depth == 1
            tok = ""
        elif c == "}":
            depth -= 1
            if depth == 0:
                if tok:
                    heads.append(tok)
                return heads
        elif depth == 1:
            if c == ",":
                if tok:
                    heads.append(tok)
                tok, expect = "", True
            elif expect and (c.isalnum() or c == "_"):
                tok += c
            elif tok and not (c.isalnum() or c == "_"):
                heads.append(tok)
                tok, expect = "", False
        i += 1
    return heads


def module_of(src, path):
    rel = os.path.relpath(path, src)
    head = rel.split(os.sep)[0]
    return head[:-3] if head.endswith(".rs") else head


def root_names(src):
    """Names usable as `crate::NAME` that are not modules: exported macros
    (`macro_rules!` with `#[macro_export]`) and `pub use` re-exports in
    lib.rs, mapped to the module that defines them."""
    names = {}
    for root, _, files in os.walk(src):
        for f in files:
            if f.endswith(".rs"):
                path = os.path.join(root, f)
                with open(path, encoding="utf-8") as fh:
                    text = strip(fh.read())
                for m in re.finditer(r"#\[macro_export\]\s*macro_rules!\s*([A-Za-z_][A-Za-z0-9_]*)", text):
                    names[m.group(1)] = module_of(src, path)
    lib = os.path.join(src, "lib.rs")
    if os.path.exists(lib):
        with open(lib, encoding="utf-8") as fh:
            text = strip(fh.read())
        for m in re.finditer(r"pub use\s+([A-Za-z_][A-Za-z0-9_]*)::(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)\s*;", text):
            mod, items = m.group(1), m.group(2).strip("{}")
            for item in items.split(","):
                item = item.strip().split(" as ")[-1].strip()
                if item:
                    names[item] = mod
    return names


def edges(src):
    out = {}
    alias = root_names(src)
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            mod = module_of(src, path)
            if mod in ("lib", "main"):
                continue
            with open(path, encoding="utf-8") as fh:
                text = strip(fh.read())
            deps = out.setdefault(mod, {})
            for m in PATH.finditer(text):
                heads = group_heads(text, m.start(1)) if m.group(1) == "{" else [m.group(1)]
                for h in heads:
                    if h in ("self", "super", "crate"):
                        continue
                    h = alias.get(h, h)
                    if h != mod:
                        deps.setdefault(h, set()).add(os.path.relpath(path, src))
    return out


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, comps, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def gated_modules(layers):
    """{module: feature} of the layers written `name@feature`."""
    out = {}
    for name, mods in layers:
        if "@" in name:
            feature = name.split("@", 1)[1].strip()
            for m in mods.split():
                out[m] = feature
    return out


def ungated_declarations(src, gated):
    """Modules of `gated` that lib.rs declares without their feature's cfg."""
    lib = os.path.join(src, "lib.rs")
    if not os.path.exists(lib):
        return []
    with open(lib, encoding="utf-8") as fh:
        text = strip(fh.read())
    bad = []
    for m, feature in sorted(gated.items()):
        decl = re.search(r"((?:#\[[^\]]*\]\s*)*)pub\s+mod\s+" + re.escape(m) + r"\s*;", text)
        if decl and f'feature = "{feature}"' not in decl.group(1):
            bad.append((m, feature))
    return bad


def read_layers(path):
    layers = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.split("#")[0].strip()
            if line:
                name, mods = line.split(":", 1)
                layers.append((name.strip(), mods))
    return layers


def layer_name(layers, m, level):
    return layers[level[m]][0].split("@")[0]


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    here = os.path.dirname(os.path.abspath(__file__))
    src = args[0] if args else os.path.join(here, "..", "crates", "optimist-core", "src")
    layers = DEFAULT_LAYERS
    if "--layers" in argv:
        layers = read_layers(argv[argv.index("--layers") + 1])
        args = [a for a in args if a != argv[argv.index("--layers") + 1]]
        src = args[0] if args else src
    level = {}
    for i, (_, mods) in enumerate(layers):
        for m in mods.split():
            level[m] = i
    dep = edges(src)
    graph = {m: set(d) for m, d in dep.items()}
    ok = True
    if "--graph" in argv:
        for m in sorted(dep):
            for d in sorted(dep[m]):
                print(f"{m} -> {d}   ({', '.join(sorted(dep[m][d]))})")
    comps = cycles(graph)
    for c in comps:
        ok = False
        print(f"CYCLE among modules: {' '.join(c)}")
    gated = gated_modules(layers)
    for m, feature in ungated_declarations(src, gated):
        ok = False
        print(f"module {m} is declared in lib.rs without #[cfg(feature = \"{feature}\")]")
    for m in sorted(dep):
        for d in sorted(dep[m]):
            if d in gated and gated.get(m) != gated[d]:
                ok = False
                print(
                    f"{m} imports {d}, which is compiled only with feature"
                    f" '{gated[d]}' (in {', '.join(sorted(dep[m][d]))})"
                )
    missing = sorted(m for m in graph if m not in level)
    if missing:
        ok = False
        print(f"modules missing from the layer table: {' '.join(missing)}")
    upward = []
    for m in sorted(dep):
        for d in sorted(dep[m]):
            if m in level and d in level and level[d] > level[m]:
                upward.append((m, d, sorted(dep[m][d])))
    for m, d, files in upward:
        print(
            f"upward import: {m} ({layer_name(layers, m, level)}) -> {d} ({layer_name(layers, d, level)})"
            f" in {', '.join(files)}"
        )
    if len(upward) > 1:
        ok = False
        print(f"{len(upward)} imports from a lower layer to a higher one (at most 1 allowed)")
    nmods = len(graph)
    nedges = sum(len(v) for v in graph.values())
    print(f"{nmods} modules, {nedges} edges, {len(comps)} cycles, {len(upward)} upward: "
          + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
