"""The package's layering (docs/architecture.md): a module imports from its own layer or the
ones before it, never from a later one, so the math stays free of Ray and process groups."""

import re

import pytest

from tests.helpers import REPO

LAYERS = {
    "math": [
        "triton_support", "scoring", "selection", "selection_triton", "schedules", "lr_schedule", "metrics",
        "emphasis", "samplers", "models",
    ],  # fmt: skip
    "data": ["signal", "sources", "ingest", "outputs"],
    "configuration": ["config", "plan", "devices"],
    "orchestration": [
        "comm", "shard", "faststep", "steptimer", "checkpoint", "runlog", "monitor", "training", "worker"
    ],  # fmt: skip
    "surface": ["launch", "cluster", "console", "cli", "api", "render", "generate", "bench"],
}
SHARED = {"errors", "__init__", "__version__"}
"""Used by every layer."""
RANK = {module: i for i, names in enumerate(LAYERS.values()) for module in names}
PACKAGE = REPO / "nint_dist"


def imported(source: str) -> set[str]:
    """Top-level nint_dist modules that ``source`` imports (at module level or inside functions)."""
    found = set(re.findall(r"(?:from|import) nint_dist\.(\w+)", source))
    for grouped, single in re.findall(r"from nint_dist import (?:\(([^)]*)\)|([\w, ]+))", source):
        found.update(n.strip() for n in (grouped or single).split(",") if n.strip())
    return found - SHARED


def test_every_module_has_a_layer():
    modules = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or
               (p.is_dir() and (p / "__init__.py").exists())} - SHARED  # fmt: skip
    assert modules == set(RANK), "add the new module to docs/architecture.md's table and to LAYERS"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_later_layer(path):
    module = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if module in SHARED:
        return
    later = {m for m in imported(path.read_text()) if RANK[m] > RANK[module]}
    assert not later, f"{module} ({list(LAYERS)[RANK[module]]}) imports {sorted(later)} from a later layer"


def test_the_check_sees_an_upward_import():
    assert imported("def f():\n    from nint_dist.launch import fit\n") == {"launch"}
    assert imported("from nint_dist import checkpoint, scoring\n") == {"checkpoint", "scoring"}
