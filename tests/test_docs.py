"""Tutorials under docs/ run as written, so they cannot rot."""

import re
from pathlib import Path

import pytest

DOCS = sorted((Path(__file__).resolve().parents[1] / "docs").glob("tutorial_*.md"))


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_tutorial_runs(doc, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert blocks, f"{doc.name} has no runnable python blocks"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)  # our own documentation, not user input


def test_template_is_not_registered():
    import derivations

    assert "my_result" not in derivations.names()
    assert "one_layer_weight_decay" in derivations.names()


def test_docs_changelog_is_the_changelog():
    root = Path(__file__).resolve().parents[1]
    assert (root / "docs" / "changelog.md").read_text() == (root / "CHANGELOG.md").read_text()
