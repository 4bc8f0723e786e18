#!/usr/bin/env python3
"""Import circles between the files of a crate's src/, and the floors they stand on.

    python3 scripts/module-cycles.py [--max N] [--show] [--domains SRC_DIR:ROOM,ROOM...] SRC_DIR...

An arrow A -> B is drawn when file A names a path into file B's module (`use crate::x::y`,
`crate::x::f(...)`, `super::x`, `self::x`). Code under `#[cfg(test)]` and comments are left out:
the rule is about the code that ships. A circle is a strongly connected set of files; the check
fails (exit 1) when one holds more than N files (2 by default: a file pair that uses each other
is tolerated, a circle through a third file is not). `--show` prints every file's arrows.
`--domains` names the rooms (a top-level module: a file or a folder of SRC_DIR) that stand side
by side on one floor: an arrow from one of them into another fails the check too.

Written here rather than taken from a crate: cargo-modules builds rust-analyzer (minutes of
compiling on CI for one check), and the project's module paths are plain enough to read as text.
"""

import os
import re
import sys


def strip(text):
    """Source without comments, string literals' contents, or `#[cfg(test)]` items."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"'(?:\\.|[^'\\])'", "''", text)
    text = re.sub(r'\br(#*)"(?:.|\n)*?"\1', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    out = []
    i = 0
    while True:
        j = text.find("#[cfg(test)]", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        # skip the item: up to its `;` or its balanced `{...}`
        k = j + len("#[cfg(test)]")
        depth = 0
        while k < len(text):
            c = text[k]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    k += 1
                    break
            elif c == ";" and depth == 0:
                k += 1
                break
            k += 1
        i = k
    return "".join(out)


def expand(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = tree.strip()
    m = re.match(r"^([\w:]*?)(::)?\{(.*)\}$", tree, re.S)
    if not m:
        return [tree.split(" as ")[0].strip()]
    prefix, inner = m.group(1), m.group(3)
    parts, depth, cur = [], 0, ""
    for c in inner:
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += c == "{"
        depth -= c == "}"
        cur += c
    parts.append(cur)
    out = []
    for p in parts:
        if not p.strip():
            continue
        for tail in expand(p):
            if tail == "self":
                out.append(prefix)
            else:
                out.append(f"{prefix}::{tail}" if prefix else tail)
    return out


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "main", "lib"):
        rel = rel[:-1]
    return tuple(rel)


def files_of(src):
    modules = {}
    for root, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(root, name)
                modules[module_of(src, path)] = os.path.relpath(path, src)
    return modules


def arrows(src):
    modules = files_of(src)
    edges = {f: set() for f in modules.values()}
    for module, file in modules.items():
        text = strip(open(os.path.join(src, file), encoding="utf-8").read())
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            paths.extend(expand(re.sub(r"\s+", " ", m.group(1))))
        paths.extend(re.findall(r"\b(?:crate|super|self)(?:::\w+)+", text))
        for p in paths:
            segs = [s for s in p.replace(" ", "").split("::") if s]
            if not segs:
                continue
            if segs[0] == "crate":
                base, rest = (), segs[1:]
            elif segs[0] in ("super", "self"):
                base = module
                while segs and segs[0] == "super":
                    base = base[:-1]
                    segs = segs[1:]
                if segs and segs[0] == "self":
                    segs = segs[1:]
                rest = segs
            else:
                continue
            target = None
            for n in range(len(rest), -1, -1):
                candidate = tuple(base) + tuple(rest[:n])
                if candidate in modules:
                    target = modules[candidate]
                    break
            if target and target != file:
                edges[file].add(target)
    return edges


def circles(edges):
    """Tarjan's strongly connected components, larger than one file."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main(argv):
    limit, show, dirs, domains = 2, False, [], {}
    it = iter(argv)
    for a in it:
        if a == "--max":
            limit = int(next(it))
        elif a == "--show":
            show = True
        elif a == "--domains":
            src, rooms = next(it).split(":", 1)
            domains[src.rstrip("/")] = set(rooms.split(","))
        else:
            dirs.append(a)
    if not dirs:
        print(__doc__)
        return 2
    failed = False
    for src in dirs:
        edges = arrows(src)
        if show:
            for f in sorted(edges):
                print(f"{src}/{f} -> {', '.join(sorted(edges[f])) or '-'}")
        rooms = domains.get(src.rstrip("/"), set())

        def room(f):
            return f.split("/")[0].removesuffix(".rs")

        for f in sorted(edges):
            for g in sorted(edges[f]):
                if room(f) in rooms and room(g) in rooms and room(f) != room(g):
                    failed = True
                    print(f"{src}: domain {room(f)} imports domain {room(g)}: {f} -> {g}")
        found = circles(edges)
        for comp in found:
            too_big = len(comp) > limit
            failed |= too_big
            mark = "TOO LARGE" if too_big else "tolerated"
            print(f"{src}: circle of {len(comp)} files ({mark}): {', '.join(comp)}")
        print(f"{src}: {len(edges)} files, {sum(map(len, edges.values()))} arrows, "
              f"{len(found)} circles, largest {max(map(len, found), default=0)} (limit {limit})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
