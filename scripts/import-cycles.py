#!/usr/bin/env python3
"""Report cycles in the file-level import graph of the workspace's two crates.

Run `python3 scripts/import-cycles.py` from anywhere (or `--root DIR`, where DIR is a
workspace root holding `src/` and optionally `jobs/src/`, or a crate source directory
holding `lib.rs`/`main.rs` itself). Each `.rs` file gets its module path by Rust's rules
(`lib.rs`/`main.rs` are the crate root, `a/mod.rs` and `a.rs` are `a`, `a/b.rs` is `a::b`).
The file is lexed with comments, strings and char literals removed, and items marked
`#[cfg(test)]` are dropped, along with any file that such a `mod x;` declares. Then every
path that starts with `crate::`, `self::` or `super::` is collected, whether it sits in a
`use` tree (nested braces included) or in code (`crate::queue::job::now_ms()`). Each path
resolves to the longest module prefix that is a file, which gives an edge
file -> file. Self-edges are dropped. So are `mod x;` declarations and `pub use` re-exports
that reach into the file's own child modules: a parent exposing its children does not
import them. Paths through `switchboard::`/`switchboard_jobs::` are cross-crate and are
left out of the cycle check. Tarjan's algorithm then finds the strongly connected
components. If any has more than one file, the script prints a cycle through each of its
files, with the paths behind every edge, and exits 1. Otherwise it prints one summary line
and exits 0. `--edges` also lists every edge.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

CRATE_NAMES = {"switchboard": "src", "switchboard_jobs": "jobs/src"}
RELATIVE_HEADS = {"crate", "self", "super"}
PATH_HEADS = RELATIVE_HEADS | set(CRATE_NAMES)
# Keywords that start an item; a `#[cfg(test)]` on one of these ends at `;` or `}` only.
ITEM_KEYWORDS = {
    "pub", "fn", "mod", "impl", "struct", "enum", "union", "trait", "type", "use",
    "const", "static", "async", "unsafe", "extern", "macro_rules",
}
OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {")", "]", "}"}


# --------------------------------------------------------------------------- lexing


@dataclass
class Tok:
    text: str
    line: int
    kind: str  # "id", "p" (punctuation), "lit" (string/char/number), "life"


def lex(src: str) -> list[Tok]:
    """Rust tokens without comments; string, char and number literals become `lit`."""
    toks: list[Tok] = []
    i, n, line = 0, len(src), 1

    def is_id_start(c: str) -> bool:
        return c == "_" or c.isalpha()

    def is_id_char(c: str) -> bool:
        return c == "_" or c.isalnum()

    def skip_quoted(j: int) -> int:
        """j at the opening quote of a "..." string; returns the index after the close."""
        nonlocal line
        j += 1
        while j < n and src[j] != '"':
            if src[j] == "\\":
                j += 1
            if j < n and src[j] == "\n":
                line += 1
            j += 1
        return j + 1

    def skip_raw(j: int) -> int:
        """j at the first `#` or `"` after r/br/cr; returns the index after the close."""
        nonlocal line
        hashes = 0
        while j < n and src[j] == "#":
            hashes += 1
            j += 1
        j += 1  # opening quote
        close = '"' + "#" * hashes
        end = src.find(close, j)
        end = n if end < 0 else end
        line += src.count("\n", j, end)
        return end + len(close)

    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif src.startswith("//", i):
            end = src.find("\n", i)
            i = n if end < 0 else end
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    line += src[i] == "\n"
                    i += 1
        elif c == '"':
            start_line = line
            i = skip_quoted(i)
            toks.append(Tok('""', start_line, "lit"))
        elif c == "'":
            if i + 1 < n and src[i + 1] == "\\":  # '\n', '\'', '\u{..}'
                end = src.find("'", i + 3)
                i = n if end < 0 else end + 1
                toks.append(Tok("''", line, "lit"))
            elif i + 2 < n and src[i + 2] == "'":  # 'x'
                i += 3
                toks.append(Tok("''", line, "lit"))
            else:  # lifetime or label
                j = i + 1
                while j < n and is_id_char(src[j]):
                    j += 1
                toks.append(Tok(src[i:j], line, "life"))
                i = j
        elif is_id_start(c):
            j = i
            while j < n and is_id_char(src[j]):
                j += 1
            word = src[i:j]
            nxt = src[j] if j < n else ""
            if word in ("r", "br", "cr") and (
                nxt == '"' or (nxt == "#" and j + 1 < n and src[j + 1] in '#"')
            ):
                start_line = line
                i = skip_raw(j)
                toks.append(Tok('""', start_line, "lit"))
            elif word in ("b", "c") and nxt == '"':
                start_line = line
                i = skip_quoted(j)
                toks.append(Tok('""', start_line, "lit"))
            elif word == "b" and nxt == "'":
                if j + 1 < n and src[j + 1] == "\\":
                    end = src.find("'", j + 3)
                else:
                    end = j + 2
                i = n if end < 0 else end + 1
                toks.append(Tok("''", line, "lit"))
            elif word == "r" and nxt == "#" and j + 1 < n and is_id_start(src[j + 1]):
                k = j + 1  # raw identifier r#type
                while k < n and is_id_char(src[k]):
                    k += 1
                toks.append(Tok(src[j + 1 : k], line, "id"))
                i = k
            else:
                toks.append(Tok(word, line, "id"))
                i = j
        elif c.isdigit():
            j = i
            while j < n and is_id_char(src[j]):
                j += 1
            toks.append(Tok(src[i:j], line, "lit"))
            i = j
        elif src.startswith("::", i):
            toks.append(Tok("::", line, "p"))
            i += 2
        else:
            toks.append(Tok(c, line, "p"))
            i += 1
    return toks


# ------------------------------------------------------------------ test-code removal


def is_cfg_test(toks: list[Tok], i: int) -> int:
    """If toks[i:] is `#[cfg(test)]` or `#![cfg(test)]`, the index after it, else 0."""
    want = ["#", "[", "cfg", "(", "test", ")", "]"]
    j = i
    if j + 1 < len(toks) and toks[j].text == "#" and toks[j + 1].text == "!":
        want = ["#", "!", "[", "cfg", "(", "test", ")", "]"]
    if [t.text for t in toks[j : j + len(want)]] == want:
        return j + len(want)
    return 0


def skip_attrs(toks: list[Tok], i: int) -> int:
    """Skip any outer attributes `#[...]` starting at i."""
    while i + 1 < len(toks) and toks[i].text == "#" and toks[i + 1].text == "[":
        depth, i = 0, i + 1
        while i < len(toks):
            t = toks[i].text
            if t in OPENERS:
                depth += 1
            elif t in CLOSERS:
                depth -= 1
                if depth == 0:
                    i += 1
                    break
            i += 1
    return i


def item_end(toks: list[Tok], i: int) -> int:
    """Index after the item, statement, field or arm that starts at i."""
    is_item = i < len(toks) and toks[i].text in ITEM_KEYWORDS
    depth = 0
    while i < len(toks):
        t = toks[i].text
        if t in OPENERS:
            depth += 1
        elif t in CLOSERS:
            if depth == 0:
                return i  # the enclosing block closes: stop before it
            depth -= 1
            if depth == 0 and t == "}":
                return i + 1
        elif depth == 0 and (t == ";" or (t == "," and not is_item)):
            return i + 1
        i += 1
    return i


def drop_test_code(toks: list[Tok]) -> tuple[list[Tok], list[str], bool]:
    """Remove `#[cfg(test)]` items. Returns the tokens left, the names of `mod x;`
    declarations that were test-only, and whether the whole file is `#![cfg(test)]`."""
    out: list[Tok] = []
    test_mods: list[str] = []
    i = 0
    while i < len(toks):
        after = is_cfg_test(toks, i)
        if not after:
            out.append(toks[i])
            i += 1
            continue
        if toks[i + 1].text == "!":
            return [], [], True
        start = skip_attrs(toks, after)
        end = item_end(toks, start)
        words = [t.text for t in toks[start:end]]
        if "mod" in words:
            k = words.index("mod")
            if k + 2 < len(words) and words[k + 2] == ";":
                test_mods.append(words[k + 1])
        i = end
    return out, test_mods, False


# ---------------------------------------------------------------------- path scanning


@dataclass
class Ref:
    segs: list[str]  # as written, e.g. ["super", "state", "Shared"]
    module: tuple[str, ...]  # module the path is written in (inline modules included)
    line: int
    pub_use: bool


def parse_use_tree(toks, i, prefix, out):
    """Parse one use tree at toks[i]; append full paths to out; return index after it."""
    segs = list(prefix)
    if i < len(toks) and toks[i].text == "::":  # `use ::foo` (extern path)
        i += 1
    while i < len(toks):
        t = toks[i]
        if t.text == "{":
            i += 1
            while i < len(toks) and toks[i].text != "}":
                i = parse_use_tree(toks, i, segs, out)
                if i < len(toks) and toks[i].text == ",":
                    i += 1
            return i + 1
        if t.text == "*":
            out.append((segs, t.line))
            return i + 1
        if t.kind == "id":
            # `self` inside braces names the prefix itself
            if not (t.text == "self" and prefix and segs == list(prefix)):
                segs = segs + [t.text]
            line = t.line
            i += 1
            if i < len(toks) and toks[i].text == "::":
                i += 1
                continue
            if i < len(toks) and toks[i].text == "as":
                i += 2
            out.append((segs, line))
            return i
        if t.text == "$" and i + 1 < len(toks) and toks[i + 1].text == "crate":
            i += 1  # `$crate` in a macro body
            continue
        return i  # something unexpected: stop this tree
    return i


def scan_paths(toks: list[Tok], file_module: tuple[str, ...]) -> list[Ref]:
    refs: list[Ref] = []
    mod_stack: list[tuple[str, int]] = []  # inline `mod x {` with the brace depth inside
    depth = 0
    i = 0
    n = len(toks)

    def module() -> tuple[str, ...]:
        return file_module + tuple(name for name, _ in mod_stack)

    def visibility_is_pub(k: int) -> bool:
        """Is the `use` at toks[k] preceded by `pub` or `pub(...)`?"""
        k -= 1
        if k >= 0 and toks[k].text == ")":
            d = 0
            while k >= 0:
                if toks[k].text == ")":
                    d += 1
                elif toks[k].text == "(":
                    d -= 1
                    if d == 0:
                        break
                k -= 1
            k -= 1
        return k >= 0 and toks[k].text == "pub"

    while i < n:
        t = toks[i]
        if t.text == "{":
            depth += 1
        elif t.text == "}":
            if mod_stack and mod_stack[-1][1] == depth:
                mod_stack.pop()
            depth -= 1
        elif (
            t.text == "mod"
            and i + 2 < n
            and toks[i + 1].kind == "id"
            and toks[i + 2].text == "{"
        ):
            mod_stack.append((toks[i + 1].text, depth + 1))
            depth += 1
            i += 3
            continue
        elif t.text == "use" and not (i + 1 < n and toks[i + 1].text == "<"):
            pub = visibility_is_pub(i)
            paths: list[tuple[list[str], int]] = []
            j = parse_use_tree(toks, i + 1, [], paths)
            for segs, line in paths:
                if segs and segs[0] in PATH_HEADS:
                    refs.append(Ref(segs, module(), line, pub))
            # skip to the end of the declaration
            while j < n and toks[j].text != ";":
                j += 1
            i = j + 1
            continue
        elif (
            t.kind == "id"
            and t.text in PATH_HEADS
            and i + 1 < n
            and toks[i + 1].text == "::"
            and not (i > 0 and toks[i - 1].text in ("::", "."))
        ) or (t.text == "$" and i + 2 < n and toks[i + 1].text == "crate"
              and toks[i + 2].text == "::"):
            if t.text == "$":
                i += 1
            segs = [toks[i].text]
            line = toks[i].line
            j = i + 1
            while j + 1 < n and toks[j].text == "::" and toks[j + 1].kind == "id":
                segs.append(toks[j + 1].text)
                j += 2
            refs.append(Ref(segs, module(), line, False))
            i = j
            continue
        i += 1
    return refs


# ------------------------------------------------------------------------ the graph


def module_of(rel: Path) -> tuple[str, ...]:
    parts = list(rel.with_suffix("").parts)
    if len(parts) == 1 and parts[0] in ("lib", "main"):
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


@dataclass
class Crate:
    label: str
    root: Path
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)  # rel -> module
    modules: dict[tuple[str, ...], str] = field(default_factory=dict)  # module -> rel
    refs: dict[str, list[Ref]] = field(default_factory=dict)
    # (src, dst) -> {path text: [lines]}
    edges: dict[tuple[str, str], dict[str, list[int]]] = field(default_factory=dict)
    cross: int = 0
    test_files: list[str] = field(default_factory=list)


def load_crate(label: str, root: Path) -> Crate:
    crate = Crate(label, root)
    test_modules: set[tuple[str, ...]] = set()
    for path in sorted(root.rglob("*.rs")):
        rel = path.relative_to(root).as_posix()
        mod = module_of(path.relative_to(root))
        toks, test_mods, whole_file_test = drop_test_code(
            lex(path.read_text(encoding="utf-8"))
        )
        if whole_file_test:
            test_modules.add(mod)
            continue
        test_modules.update(mod + (m,) for m in test_mods)
        crate.files[rel] = mod
        crate.refs[rel] = scan_paths(toks, mod)
    for rel, mod in list(crate.files.items()):
        if any(mod[: len(t)] == t for t in test_modules):
            del crate.files[rel]
            del crate.refs[rel]
            crate.test_files.append(rel)
    for rel, mod in crate.files.items():
        # lib.rs wins over main.rs as the owner of the root module
        if mod not in crate.modules or rel == "lib.rs":
            crate.modules[mod] = rel
    return crate


def absolute(ref: Ref) -> tuple[str, ...] | None:
    """The path's segments from the crate root, or None if it leaves the crate."""
    segs = ref.segs
    if segs[0] == "crate":
        return tuple(segs[1:])
    base = list(ref.module)
    k = 0
    if segs[0] == "self":
        k = 1
    while k < len(segs) and segs[k] == "super":
        if not base:
            return None
        base.pop()
        k += 1
    return tuple(base) + tuple(segs[k:])


def resolve(modules: dict[tuple[str, ...], str], segs: tuple[str, ...]) -> str | None:
    for k in range(len(segs), -1, -1):
        if segs[:k] in modules:
            return modules[segs[:k]]
    return None


def build_edges(crate: Crate) -> None:
    for rel, refs in crate.refs.items():
        own = crate.files[rel]
        for ref in refs:
            if ref.segs[0] in CRATE_NAMES:
                crate.cross += 1
                continue
            segs = absolute(ref)
            if segs is None:
                continue
            dst = resolve(crate.modules, segs)
            if dst is None or dst == rel:
                continue
            dst_mod = crate.files[dst]
            if (
                ref.pub_use
                and len(dst_mod) > len(own)
                and dst_mod[: len(own)] == own
            ):
                continue  # a parent re-exporting from its own children
            names = crate.edges.setdefault((rel, dst), {})
            names.setdefault("::".join(ref.segs), []).append(ref.line)


def tarjan(nodes: list[str], succ: dict[str, list[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    sccs: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        # iterative DFS: (node, iterator over successors)
        work = [(root, iter(succ.get(root, [])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(succ.get(w, []))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                sccs.append(sorted(comp))
    return sccs


def shortest_cycle(start: str, members: set[str], succ: dict[str, list[str]]) -> list[str]:
    """Shortest cycle through start inside one component (BFS back to start)."""
    prev: dict[str, str] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        v = queue.popleft()
        for w in succ.get(v, []):
            if w not in members:
                continue
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w not in seen:
                seen.add(w)
                prev[w] = v
                queue.append(w)
    return [start]


def canonical(cycle: list[str]) -> tuple[str, ...]:
    body = cycle[:-1]
    k = body.index(min(body))
    return tuple(body[k:] + body[:k])


def describe(names: dict[str, list[int]]) -> str:
    parts = []
    for text, lines in sorted(names.items(), key=lambda kv: min(kv[1])):
        uniq = sorted(set(lines))
        where = ", ".join(str(x) for x in uniq)
        parts.append(f"{text} (line{'s' if len(uniq) > 1 else ''} {where})")
    return "; ".join(parts)


def report(crates: list[Crate], show_edges: bool) -> int:
    summary = []
    found = 0
    for crate in crates:
        succ: dict[str, list[str]] = {}
        for a, b in sorted(crate.edges):
            succ.setdefault(a, []).append(b)
        nodes = sorted(crate.files)
        sccs = [c for c in tarjan(nodes, succ) if len(c) > 1]
        summary.append(f"{crate.label}: {len(nodes)} files, {len(crate.edges)} edges")
        if show_edges:
            print(f"{crate.label}: edges")
            for (a, b), names in sorted(crate.edges.items()):
                print(f"  {a} -> {b}: {describe(names)}")
        for comp in sorted(sccs):
            found += 1
            members = set(comp)
            print(f"{crate.label}: import cycle among {len(comp)} files: {', '.join(comp)}")
            cycles: set[tuple[str, ...]] = set()
            for start in comp:  # a shortest cycle through each file of the component
                cycles.add(canonical(shortest_cycle(start, members, succ)))
            used: set[tuple[str, str]] = set()
            for key in sorted(cycles, key=lambda c: (len(c), c)):
                cycle = list(key) + [key[0]]
                print(f"  {' -> '.join(cycle)}")
                used.update(zip(cycle, cycle[1:]))
            print("  the edges of these cycles, with the paths that make them:")
            for a, b in sorted(used):
                print(f"    {a} -> {b}: {describe(crate.edges[(a, b)])}")
    if found:
        print(f"import cycles: {found} found ({'; '.join(summary)})")
        return 1
    print(f"import cycles: none ({'; '.join(summary)})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="workspace root (with src/, jobs/src/) or one crate's source dir "
        "(default: this script's workspace)",
    )
    parser.add_argument("--edges", action="store_true", help="also list every edge")
    args = parser.parse_args()
    root: Path = args.root
    if (root / "lib.rs").is_file() or (root / "main.rs").is_file():
        dirs = [(str(args.root), root)]
    else:
        dirs = [(label, root / label) for label in CRATE_NAMES.values()]
        dirs = [(label, d) for label, d in dirs if d.is_dir()]
    if not dirs:
        print(f"import-cycles: no crate sources under {root}", file=sys.stderr)
        return 2
    crates = [load_crate(label, d) for label, d in dirs]
    for crate in crates:
        build_edges(crate)
    return report(crates, args.edges)


if __name__ == "__main__":
    sys.exit(main())
