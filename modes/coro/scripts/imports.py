#!/usr/bin/env python3
"""Import graph of the coroutine engine, and a check that it has no circle.

Usage: modes/coro/scripts/imports.py [SRC_DIR]   (default: zmaster-coro's src/)
Exit status 1 on an import circle, or (with the layer map) an import pointing up.

Per file, the engine files it names through `use` statements or inline `super::` /
`crate::` paths (test modules and comments skipped; a `pub use` re-export of a child module
is a facade, not an edge). Items re-exported by the root (lib.rs, or mod.rs for a module
folder) resolve to the file defining them. Prints the edges, the strongly connected
components (import circles) and, for the default tree, imports pointing up a layer."""
import os, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))
root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "src")
# The layers of zmaster-coro (see its lib.rs notes), checked when no LAYERS is given.
DEFAULT_LAYERS = "overflow.rs=0,runq.rs=0,stack.rs=0,state.rs=0,timer.rs=0,context.rs=1,task.rs=2,sys.rs=3,reactor.rs=4,reactor/=4,blocking.rs=5,coros.rs=5,sched.rs=5,worker.rs=5,net/=6,sync/=6,server.rs=7,lib.rs=7"
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith(".rs"):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)[:-3].split(os.sep)
            mod = rel[:-1] if rel[-1] in ("mod", "lib") and len(rel) == 1 or rel[-1] == "mod" else rel
            files[tuple(mod)] = os.path.relpath(p, root)

def code(path):
    out = []
    for line in open(path):
        if line.strip().startswith("#[cfg(test)]"):
            break
        out.append(re.sub(r"//.*", "", line))
    return "".join(out)

def expand(s):
    """`a::{b, c::{d}}` -> [a::b, a::c::d]"""
    s = re.sub(r"\s+as\s+\w+", "", s)
    s = s.replace(" ", "").replace("\n", "")
    i = s.find("{")
    if i < 0:
        return [s]
    depth, parts, cur = 0, [], ""
    for ch in s[i + 1 : s.rindex("}")]:
        if ch == "," and depth == 0:
            parts.append(cur); cur = ""; continue
        depth += ch == "{"; depth -= ch == "}"; cur += ch
    parts.append(cur)
    return [p2 for p in parts if p for p2 in expand(s[:i] + p)]

# The root: a crate's lib.rs (`crate::x`) or the module's mod.rs (`crate::coroutine::x`).
is_crate = os.path.exists(os.path.join(root, "lib.rs"))
root_file = os.path.join(root, "lib.rs" if is_crate else "mod.rs")
# root re-exports: item -> defining module
reexp = {}
for m in re.finditer(r"pub use ([^;]+);", code(root_file)):
    for p in expand(m.group(1)):
        segs = [x for x in re.split(r"::", p.split(" as ")[0]) if x]
        if segs and segs[0] != "crate":
            reexp[segs[-1].replace("self", segs[-2] if len(segs) > 1 else "")] = (segs[0],)

def resolve(mod, path):
    segs = path.split("::")
    if segs[0] in ("crate", "$crate"):
        if is_crate:
            cur, segs = [], segs[1:]
        elif len(segs) < 2 or segs[1] != "coroutine":
            return None
        else:
            cur, segs = [], segs[2:]
    else:
        cur = list(mod)
        if segs and segs[0] == "self":
            segs = segs[1:]
        while segs and segs[0] == "super":
            cur = cur[:-1]; segs = segs[1:]
    while segs and tuple(cur + [segs[0]]) in files:
        cur.append(segs[0]); segs = segs[1:]
    if not cur and segs and segs[0] in reexp:
        cur = list(reexp[segs[0]])
    return tuple(cur)

edges = {}
for mod, rel in files.items():
    src = code(os.path.join(root, rel))
    paths = []
    for m in re.finditer(r"(pub(?:\([\w]+\))?\s+)?\buse\s+([^;]+);", src):
        for p in expand(m.group(2)):
            head = p.split("::")[0]
            if tuple(list(mod) + [head]) in files:
                if m.group(1):
                    continue  # re-export of a child module: facade, not a dependency
                p = "self::" + p
            paths.append(p)
    # inline paths into child modules (`epoll::register(..)`)
    body = re.sub(r"\buse\s+[^;]+;", "", src)
    for m in re.finditer(r"(?<![\w:])(\w+)::\w+", body):
        if tuple(list(mod) + [m.group(1)]) in files:
            paths.append("self::" + m.group(0))
    paths += re.findall(r"(?<![\w:])((?:\$?crate|super)(?:::\w+)+)", body)
    for p in paths:
        if not (p.startswith(("super", "self")) or "crate::" in p):
            continue
        t = resolve(mod, p)
        if t is not None and t != mod and t in files:
            edges.setdefault(rel, set()).add(files[t])

for f in sorted(files.values()):
    print(f"{f:24} -> {', '.join(sorted(edges.get(f, ()))) or '-'}")

# Tarjan SCC
idx, low, st, on, sccs, n = {}, {}, [], set(), [], [0]
def visit(v):
    idx[v] = low[v] = n[0]; n[0] += 1; st.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in idx:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        c = []
        while True:
            w = st.pop(); on.discard(w); c.append(w)
            if w == v: break
        if len(c) > 1: sccs.append(sorted(c))
sys.setrecursionlimit(10000)
for v in sorted(files.values()):
    if v not in idx: visit(v)
print("import circles:", len(sccs))
for c in sccs:
    print("  circle:", " <-> ".join(c))
bad = bool(sccs)
# Optional layer check: LAYERS env "file=N,file=N"; prefix "dir/" covers a folder.
spec = os.environ.get("LAYERS", DEFAULT_LAYERS if len(sys.argv) < 2 else "")
if spec:
    layer = {}
    for kv in spec.split(","):
        k, v = kv.split("=")
        layer[k] = int(v)
    def lv(f):
        if f in layer: return layer[f]
        for k, v in layer.items():
            if k.endswith("/") and f.startswith(k): return v
        return None
    up = [(a, b) for a, bs in edges.items() for b in bs if lv(a) is not None and lv(b) is not None and lv(b) > lv(a)]
    missing = [f for f in files.values() if lv(f) is None]
    print("files without a layer:", missing or "none")
    print("imports pointing up:", len(up))
    for a, b in sorted(up): print(f"  {a} (layer {lv(a)}) -> {b} (layer {lv(b)})")
    bad = bad or bool(up) or bool(missing)
sys.exit(1 if bad else 0)
