"""No module of src/ depends on itself through others (make lint).

Reads every `crate::a::b::...` path in src/**/*.rs outside comments, resolves it to the module
file that defines it (the longest path that is a module), and fails on any cycle of modules: two
that import each other, or a longer ring. Test-only code counts too (a cycle is a cycle); a test
module in its own file is its own module. A parent module's `mod` lines are not uses. Paths are
read as `crate::`; `super::` is allowed only as `use super::*` of an inline test module, which
the check enforces so that no dependency hides from it.

`--self-test` runs the checker on small made-up trees with and without a cycle, so a checker
that finds nothing cannot pass.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PATH = re.compile(r"\bcrate((?:::[a-z_][a-z0-9_]*)+)")
GROUP = re.compile(r"\bcrate::((?:[a-z_][a-z0-9_]*::)*)\{([^}]*)\}")
SUPER = re.compile(r"\bsuper::")


def module_of(src: Path, file: Path) -> str:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return "::".join(parts)


def code_lines(text: str) -> str:
    """The text without line and doc comments (the code has no /* */ blocks; a string
    such as "s3:/*" must not be taken for one)."""
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def uses(code: str, modules: set[str]) -> set[str]:
    paths = [m.group(1).lstrip(":").split("::") for m in PATH.finditer(code)]
    for prefix, items in GROUP.findall(code):
        for item in items.split(","):
            item = item.strip().split(" as ")[0].strip()
            if item:
                paths.append([*prefix.strip(":").split("::"), *item.split("::")])
    out = set()
    for parts in paths:
        parts = [p for p in parts if p and p != "self"]
        for n in range(len(parts), 0, -1):
            name = "::".join(parts[:n])
            if name in modules:
                out.add(name)
                break
    return out


def hidden_super(code: str) -> list[str]:
    """`super::` paths other than an inline test module's `use super::*;` (the file's own module)."""
    return [line.strip() for line in code.splitlines() if SUPER.search(line) and line != "    use super::*;"]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in graph:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def check(src: Path) -> list[str]:
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f) for f in files}
    graph = {}
    errors = []
    for f in files:
        code = code_lines(f.read_text())
        graph[module_of(src, f)] = uses(code, modules) - {module_of(src, f)}
        errors += [f"{f.relative_to(src)}: write `crate::` paths, not `{line}`" for line in hidden_super(code)]
    for comp in cycles(graph):
        ring = " -> ".join(comp)
        pairs = [f"{a} -> {b}" for a in comp for b in sorted(graph[a]) if b in comp]
        errors.append(f"these modules depend on each other: {ring} ({'; '.join(pairs)})")
    return errors


def self_test() -> None:
    cases = {
        "pair": ({"a.rs": "use crate::b::X;", "b.rs": "use crate::a::Y;"}, True),
        "ring": (
            {"a.rs": "use crate::b::X;", "b.rs": "use crate::c::{Y, Z};", "c.rs": "fn f() { crate::a::g() }"},
            True,
        ),
        "test code": ({"a.rs": "use crate::b::X;", "b.rs": "#[cfg(test)]\nmod tests {\n    use crate::a::Y;\n}"}, True),
        "hidden super": ({"a/mod.rs": "mod b;", "a/b.rs": "use super::Y;"}, True),
        "chain": ({"a.rs": "use crate::b::X;", "b.rs": "use crate::c::Y;", "c.rs": "// use crate::a::Z;"}, False),
        "test glob": ({"a.rs": "mod tests {\n    use super::*;\n}"}, False),
        "file glob": ({"a/mod.rs": "mod tests;", "a/tests.rs": "use super::*;"}, True),
    }
    for name, (tree, bad) in cases.items():
        with tempfile.TemporaryDirectory() as d:
            for rel, text in tree.items():
                path = Path(d) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            got = bool(check(Path(d)))
            assert got == bad, f"self-test {name!r}: found a problem = {got}, expected {bad}"


def main() -> int:
    self_test()
    errors = check(SRC)
    for e in errors:
        print(f"module_cycles: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"module_cycles: {len(list(SRC.rglob('*.rs')))} modules, no cycle (self-test passed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
