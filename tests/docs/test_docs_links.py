"""The documentation is self-contained: no path points outside the repository, and every
relative link of every Markdown page leads to a file that exists in it."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".git", ".venv", "runs", "build", "dist", ".hypothesis", ".pytest_cache", "__pycache__"}
TEXT = {".md", ".py", ".toml", ".txt", ".cfg", ".yaml", ".yml", ".sh"}
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def repository_files() -> list[Path]:
    return [
        path for path in ROOT.rglob("*")
        if path.is_file() and not SKIP & set(path.relative_to(ROOT).parts[:-1])
        and (path.suffix in TEXT or path.name == "Makefile")
    ]


def test_no_file_points_outside_the_repository() -> None:
    outside = re.compile("|".join(re.escape(part) for part in (".." + "/shared", "/work" + "/")))  # split: not a hit itself
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in repository_files()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if outside.search(line)
    ]
    assert not offenders, f"paths outside the repository: {offenders}"


def test_every_relative_markdown_link_resolves_inside_the_repository() -> None:
    broken = []
    for page in (path for path in repository_files() if path.suffix == ".md"):
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            resolved = (page.parent / target).resolve()
            if not resolved.exists() or ROOT not in resolved.parents:
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
