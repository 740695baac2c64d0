"""No two modules of src/ import each other (make lint).

Reads every `crate::a::b::...` path in src/**/*.rs outside comments, resolves it to the module
file that defines it (the longest path that is a module), and fails if module A uses module B
while B uses A. Test-only modules count too: a cycle is a cycle. A parent module's `mod` lines
are not uses.

`KNOWN` lists the pairs that still import each other (issue 21: moving `Claims` and the rule and
tenant types to where both sides can use them downward). The check fails on any other pair, and
on a known pair that no longer imports itself (so the list only shrinks).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
KNOWN = {
    ("config", "policy::authorize"),
    ("config", "policy::scope"),
    ("crypto::ec_sig", "token::jwks"),
    ("crypto::rsa_sig", "token::jwks"),
    ("crypto::rsa_sig", "token::verify"),
}
PATH = re.compile(r"\bcrate((?:::[a-z_][a-z0-9_]*)+)")
GROUP = re.compile(r"\bcrate::((?:[a-z_][a-z0-9_]*::)*)\{([^}]*)\}")


def module_of(file: Path) -> str:
    rel = file.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return "::".join(parts)


def code_lines(text: str) -> str:
    """The text without line and doc comments (the code has no /* */ blocks; a string
    such as "s3:/*" must not be taken for one)."""
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def uses(file: Path, modules: set[str]) -> set[str]:
    code = code_lines(file.read_text())
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


def main() -> int:
    files = sorted(SRC.rglob("*.rs"))
    modules = {module_of(f) for f in files}
    graph = {module_of(f): uses(f, modules) - {module_of(f)} for f in files}
    cycles = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, set())})
    new = [c for c in cycles if c not in KNOWN]
    gone = sorted(KNOWN - set(cycles))
    for a, b in new:
        print(f"module_cycles: {a} and {b} import each other", file=sys.stderr)
    for a, b in gone:
        print(f"module_cycles: {a} and {b} no longer import each other: remove them from KNOWN", file=sys.stderr)
    if new or gone:
        return 1
    print(f"module_cycles: {len(modules)} modules, no new pair importing each other ({len(KNOWN)} known)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
