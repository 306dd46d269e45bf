"""The dependency order points one way: simtheory (library) <- derivations <- validation (application)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The packages a module imports: top-level names, and the layers installed inside simtheory
    (``simtheory.validation``, ``simtheory.derivations``, or ``.validation`` from inside simtheory/) by
    their own name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()

    def layer(module: str) -> str:
        parts = module.split(".")
        return (
            parts[1]
            if parts[0] == "simtheory" and parts[1:2] in (["validation"], ["derivations"])
            else parts[0]
        )

    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {layer(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(layer(node.module))
            if node.module == "simtheory":
                out |= {a.name for a in node.names if a.name in ("validation", "derivations")}
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and path.parent.name == "simtheory":
            out |= {layer(f"simtheory.{node.module}")} if node.module else {a.name for a in node.names}
    return out


@pytest.mark.parametrize(
    "package, forbidden", [("simtheory", {"validation"}), ("derivations", {"validation"})]
)
def test_lower_layers_never_import_higher_ones(package, forbidden):
    """No library module imports the application; the one exception is the command line's ``reproduce``, which
    reaches ``validation.report`` inside its function (the CLI is the entry point of both layers)."""

    def imports(p):
        if p == ROOT / "simtheory" / "cli.py":
            return imported_packages(p, top_level_only=True)
        return imported_packages(p)

    offenders = {
        str(p.relative_to(ROOT)): sorted(imports(p) & forbidden)
        for p in (ROOT / package).rglob("*.py")
        if imports(p) & forbidden
    }
    assert not offenders, f"{package}/ imports the application layer: {offenders}"


def test_validation_modules_do_not_import_each_other():
    """Shared measurements live in simtheory (measures, simulate); a validation module stands alone. The
    report, the suite (all modules as one sweep) and the shared report type are the exceptions: they are the
    application layer's own plumbing."""
    allowed = {"_report", "report", "__init__"}
    offenders = {}
    for p in (ROOT / "validation").glob("*.py"):
        tree = ast.parse(p.read_text())
        rel = {
            n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module
        }
        rel |= {
            a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.level == 1 and not n.module
            for a in n.names
        }
        bad = (
            sorted(m for m in rel if m.split(".")[0] not in allowed)
            if p.stem not in ("report", "suite")
            else []
        )
        if bad:
            offenders[p.name] = bad
    assert not offenders, f"validation modules import each other: {offenders}"
