#!/usr/bin/env python3
"""Checks the links of README.md and docs/*.md (`make lint`): every relative link names a file or
directory of the repository, and every `#anchor` (in the same file or in another Markdown file)
names a heading there, by GitHub's rules:

- the anchor of a heading is its rendered text, lower-cased, with every character that is not a
  letter, a digit, `_`, `-` or a space removed, and each space turned into `-`;
- inline markup is not text (`code` keeps its content, [text](url) keeps `text`, `*`/`**` go);
- a second heading with the same anchor gets `-1`, a third `-2`, ...;
- explicit `<a name="x">` / `<a id="x">` anchors count too.

Links inside fenced code blocks and inline code are not links. http(s)/mailto links are not
fetched (no network in CI): they are only listed with --external.

Usage: tests/lint/check_links.py [--root DIR] [--external] [FILE...]
Exit status 1 and one line per broken link (file:line: link: why) when any is broken.
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FENCE = re.compile(r"^\s{0,3}(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target "title") and ![alt](target); the target has no spaces unless in <...>.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
HTML_HREF = re.compile(r"<a\s+[^>]*href=\"([^\"]+)\"", re.IGNORECASE)
INLINE_CODE = re.compile(r"(`+)(.+?)\1")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading's Markdown source (github-slugger on the rendered text)."""
    out = []
    for ch in rendered(heading).strip().lower():
        cat = unicodedata.category(ch)
        if ch in "-_ " or cat[0] in "LN" or cat == "Mn":
            out.append("-" if ch == " " else ch)
    return "".join(out)


def rendered(markdown: str) -> str:
    """The text of inline Markdown: code spans keep their characters; `*`, `**`, `~~`, HTML tags
    and link syntax outside them go (a link keeps its text)."""
    parts, pos = [], 0
    for m in INLINE_CODE.finditer(markdown):
        parts.append(_plain(markdown[pos : m.start()]))
        parts.append(m.group(2))
        pos = m.end()
    parts.append(_plain(markdown[pos:]))
    return "".join(parts)


def _plain(text: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"(\*\*|\*|~~)", "", text)


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks."""
    out, fence = [], None
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif line.strip().startswith(fence):
                fence = None
            continue
        if fence is None:
            out.append((n, line))
    return out


def anchors(path: Path, cache: dict[Path, set[str]]) -> set[str]:
    if path not in cache:
        found: set[str] = set()
        seen: dict[str, int] = {}
        for _, line in prose_lines(path):
            m = HEADING.match(line)
            if m:
                base = slug(m.group(2))
                k = seen.get(base, 0)
                seen[base] = k + 1
                found.add(base if k == 0 else f"{base}-{k}")
            found.update(a.lower() for a in HTML_ANCHOR.findall(line))
        cache[path] = found
    return cache[path]


def links(path: Path) -> list[tuple[int, str]]:
    out = []
    for n, line in prose_lines(path):
        text = INLINE_CODE.sub("", line)
        for m in INLINE_LINK.finditer(text):
            out.append((n, m.group(1).strip("<>")))
        m = REFERENCE_DEF.match(text)
        if m:
            out.append((n, m.group(1).strip("<>")))
        out.extend((n, h) for h in HTML_HREF.findall(text))
    return out


def check(path: Path, root: Path, cache: dict[Path, set[str]], external: list[str]) -> list[str]:
    problems = []
    for n, link in links(path):
        where = f"{path.relative_to(root)}:{n}: {link}"
        if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.IGNORECASE):
            external.append(where)
            continue
        target, _, anchor = link.partition("#")
        target_path = (path.parent / target).resolve() if target else path
        if target and not target_path.exists():
            problems.append(f"{where}: no such file")
            continue
        try:
            target_path.relative_to(root)
        except ValueError:
            problems.append(f"{where}: outside the repository")
            continue
        if anchor:
            if target_path.is_dir() or target_path.suffix.lower() != ".md":
                # GitHub's #L10 line anchors in source files: the line must exist.
                m = re.fullmatch(r"L(\d+)(?:-L(\d+))?", anchor)
                lines = target_path.read_text(encoding="utf-8", errors="replace").count("\n") + 1
                if not m or int(m.group(2) or m.group(1)) > lines:
                    problems.append(f"{where}: no line anchor #{anchor} in that file")
            elif anchor.lower() not in anchors(target_path, cache):
                problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


def self_test() -> None:
    """Positive and negative controls on a scratch tree: each broken link is reported, each good
    one is not (run by `make lint` before the real check)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "docs").mkdir()
        (root / "src").mkdir()
        (root / "src" / "a.rs").write_text("1\n2\n3\n")
        (root / "docs" / "b.md").write_text(
            "# Deployment and operations (`test_ops.py`)\n## Top level\n## Top level\n"
            '## `issuers[].jwks`\n## Reuse & **coalescing**\n<a name="custom"></a>\n'
        )
        good = [
            "b.md#deployment-and-operations-test_opspy",
            "b.md#top-level",
            "b.md#top-level-1",
            "b.md#issuersjwks",
            "b.md#reuse--coalescing",
            "b.md#custom",
            "../src/a.rs",
            "../src/a.rs#L3",
            "../src",
            "#own",
            "https://example.invalid/x",
        ]
        bad = [
            "b.md#deployment-and-operations-testse2etest_opspy",
            "b.md#top-level-2",
            "b.md#nothing",
            "c.md",
            "../src/a.rs#L9",
            "#not-here",
        ]
        lines = ["# Own", "```", "[in a fence](nowhere.md)", "```", "`[in code](nowhere.md)`"]
        lines += [f"[x{i}]({link})" for i, link in enumerate(good + bad)]
        (root / "docs" / "a.md").write_text("\n".join(lines) + "\n")
        problems = check(root / "docs" / "a.md", root, {}, [])
        reported = {p.split(": ")[1] for p in problems}
        assert reported == set(bad), f"self-test: reported {sorted(reported)}, expected {sorted(bad)}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=REPO)
    p.add_argument("--external", action="store_true", help="also list the http(s)/mailto links (not checked)")
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument("--self-test", action="store_true", help="run the controls on a scratch tree first")
    args = p.parse_args(argv)
    if args.self_test:
        self_test()
    root = args.root.resolve()
    files = [f.resolve() for f in args.files] or [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    cache: dict[Path, set[str]] = {}
    external: list[str] = []
    problems = [problem for f in files for problem in check(f, root, cache, external)]
    for problem in problems:
        print(problem)
    if args.external:
        for where in external:
            print(f"{where}: external, not checked")
    checked = sum(len(links(f)) for f in files)
    print(f"check_links: {len(files)} files, {checked} links, {len(problems)} broken", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
