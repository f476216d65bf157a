"""The task pages' code runs: every ```python block of a page, in order, in one namespace.

A page that stops working (a renamed function, a changed signature, a wrong claim checked by
an ``assert`` in the page) fails here, so the docs cannot drift from the code.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parents[2] / "docs"
TASK_PAGES = sorted((DOCS / "tasks").glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def test_every_user_task_has_a_page_with_code() -> None:
    names = {page.stem for page in TASK_PAGES}
    assert {"prune-with-harp", "certify-your-model", "prune-for-certified-robustness", "compare-criteria"} <= names
    for page in TASK_PAGES:
        assert python_blocks(page), f"{page.name} has no Python example"


@pytest.mark.slow
@pytest.mark.parametrize("page", TASK_PAGES, ids=[page.stem for page in TASK_PAGES])
def test_task_page_code_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files a page writes land in a scratch folder
    torch.manual_seed(0)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for index, block in enumerate(python_blocks(page)):
        code = compile(block, f"{page.name} (python block {index + 1})", "exec")
        exec(code, namespace)  # noqa: S102 - the repository's own documentation
