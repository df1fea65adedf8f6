"""The import rule of docs/ARCHITECTURE.md, checked on the source: the CLI imports flows, flows
import tasks, and inside tasks every stage imports only the shared base (never another stage)."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BASE = {"core": {"core"}, "dicom": {"core", "dicom"}, "data": {"core", "data"}, "model": {"core", "data", "model"}}
STAGES = {
    "ingest": {"core", "dicom", "data", "ingest"},
    "train": {"core", "data", "model", "train"},
    "evaluate": {"core", "data", "model", "evaluate"},
    "serve": {"core", "dicom", "data", "model", "serve"},
}
ALLOWED = {**BASE, **STAGES}
MAX_LINES = 300


def imported(path: pathlib.Path) -> set[str]:
    """Every module ``path`` imports (at any depth: lazy imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules(folder: str) -> list[pathlib.Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", modules("tasks"), ids=lambda p: str(p.relative_to(ROOT)))
def test_tasks_import_only_their_layer(path):
    parts = path.relative_to(ROOT / "tasks").parts
    names = imported(path)
    assert not {n for n in names if n.split(".")[0] in ("flows", "medflow", "tests", "benchmarks")}, "tasks import upwards"
    if len(parts) == 1:  # tasks/__init__.py
        return
    allowed = ALLOWED[parts[0]]
    reached = {n.split(".")[1] for n in names if n.startswith("tasks.") and n.count(".") >= 1}
    assert reached <= allowed, f"{path.relative_to(ROOT)} imports tasks.{sorted(reached - allowed)}"


@pytest.mark.parametrize("path", modules("flows"), ids=lambda p: str(p.relative_to(ROOT)))
def test_flows_never_import_the_cli(path):
    assert not {n for n in imported(path) if n.split(".")[0] in ("medflow", "tests", "benchmarks")}


@pytest.mark.parametrize("path", modules("tasks") + modules("flows") + modules("medflow"), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_no_import_cycles_between_modules():
    graph = {}
    for folder in ("tasks", "flows", "medflow"):
        for path in modules(folder):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            graph[name] = imported(path)
    graph = {name: {d for d in deps if d in graph and d != name} for name, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join([*trail, node, dep])}"
            if dep not in state:
                visit(dep, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_the_data_commands_do_not_import_the_model_stack():
    """`medflow ingest` and `medflow dataset` start without torch, MONAI, scikit-learn or matplotlib
    (seconds of imports on every run: they were pulled in once through the CLI's printing module)."""
    import subprocess
    import sys

    code = ("import sys, medflow.cli, medflow.errors, medflow.commands, medflow.summaries; "
            "print(sorted(m for m in ('torch', 'monai', 'sklearn', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


# what a member's processes (its Ray task, its Ray Train workers) must not import: evaluation's
# ensemble fitting and calibration scoring (2-3 s of imports in every process that loads them)
NOT_IN_TRAINING = ("tasks.model.ensemble_fit", "sklearn.linear_model", "sklearn.model_selection", "torchmetrics")


def test_training_imports_monai_only_to_build_a_monai_network():
    """``import monai`` loads every MONAI module (about 3 s): the driver, each member's Ray task and a
    seed_cnn worker do without it; building a MONAI network imports it. Neither imports the ensemble's
    fitting (``tasks.model.ensemble_fit``) nor torchmetrics."""
    import subprocess
    import sys

    code = ("import sys, tasks.train.worker, tasks.train.members; from tasks.model.architectures import build_model; "
            f"print(sorted(m for m in {NOT_IN_TRAINING!r} if m in sys.modules)); "
            "build_model('seed_cnn', 2, 28, 3); print('monai' in sys.modules); "
            "build_model('resnet18_small', 2, 28); print('monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.split() == ["[]", "False", "True"]
