"""Tutorials under docs/ run as written, so they cannot rot."""

import re
from pathlib import Path

import pytest

DOCS = sorted((Path(__file__).resolve().parents[1] / "docs").glob("tutorial_*.md"))


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_tutorial_runs(doc, tmp_path, monkeypatch):
    """Every python block runs, in order, in a fresh directory on sys.path; a block whose first line is
    ``# file: NAME`` is written to that file instead (a user's module or test file)."""
    import sys

    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert blocks, f"{doc.name} has no runnable python blocks"
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = set(sys.modules)
    namespace: dict = {}
    try:
        for block in blocks:
            target = re.match(r"# file: ([A-Za-z0-9_.]+)\n", block)
            if target:
                (tmp_path / target.group(1)).write_text(block)
            else:
                exec(compile(block, str(doc), "exec"), namespace)  # our own documentation, not user input
    finally:
        from simtheory import models

        for name in set(sys.modules) - modules:  # the tutorial's own modules, and the models they added
            if getattr(sys.modules[name], "__file__", "") and str(tmp_path) in sys.modules[name].__file__:
                del sys.modules[name]
        for name in [n for n in models.names() if n.startswith("my-")]:
            models._REGISTRY.pop(name)


def test_template_is_not_registered():
    import derivations

    assert "my_result" not in derivations.names()
    assert "one_layer_weight_decay" in derivations.names()


def test_docs_changelog_is_the_changelog():
    root = Path(__file__).resolve().parents[1]
    assert (root / "docs" / "changelog.md").read_text() == (root / "CHANGELOG.md").read_text()
