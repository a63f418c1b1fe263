"""The package's imports run one way: every module imports only modules of its own package or of a
lower layer, counting imports inside functions (the CLI aside, which imports lazily for start-up time
but still only downwards). Checked twice: statically, over every import statement in the source; and
at run time, each module imported alone in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "halluscope"

# Bottom to top. Modules of one layer may not import each other across packages (world and metrics are
# independent leaves); a module may import any lower layer.
LAYERS: list[tuple[str, ...]] = [
    ("_version", "config", "images", "kv", "matplot", "progress", "seeds"),
    ("world", "metrics"),
    ("hallucinate",),
    ("models",),
    ("decoding",),
    ("steering",),
    ("training",),
    ("zoo",),
    ("integrations",),  # other harnesses' entry points (lmms-eval's --model halluscope): over zoo and decoding
    ("tasks",), ("benchmarks",),  # benchmarks: the deprecated alias package of tasks, which it imports
    ("runner",),
    ("compare",),
    ("diagnose",),  # the analyses of `halluscope diagnose`: over tasks (claim verdicts), below report
    ("correction",),  # post-hoc correction: over decoding adapters, world claims and tasks' claim metrics; reads runs
    ("causes",),  # cause studies: train arms (zoo), evaluate them (runner, tasks) with diagnose's analyses
    ("report",),
    ("cli",),
    ("__main__",),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(module_name(p) for p in ROOT.rglob("*.py"))


def top(module: str) -> str:
    """halluscope.decoding.vcd -> decoding; halluscope -> '' (the lazy root package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(module: str) -> list[tuple[int, str]]:
    """(line, absolute module) for every import statement in `module`, at any depth."""
    path = ROOT.parent / (module.replace(".", "/") + ".py")
    is_package = not path.exists()
    if is_package:
        path = ROOT.parent / module.replace(".", "/") / "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                # `from . import x` may name a submodule: count it as an import of that submodule
                sub = f"{base}.{alias.name}"
                is_module = (ROOT.parent / (sub.replace(".", "/") + ".py")).exists() or (
                    ROOT.parent / sub.replace(".", "/")).is_dir()
                found.append((node.lineno, sub if is_module else base))
    return [(line, name) for line, name in found if name == "halluscope" or name.startswith("halluscope.")]


def test_every_package_has_a_layer():
    missing = sorted({top(m) for m in MODULES if top(m)} - set(RANK))
    assert not missing, f"add these packages to LAYERS in {__file__}: {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_imports_point_down(module):
    here = top(module)
    if not here:
        return  # the root package resolves its attributes lazily, by name
    wrong = []
    for line, target in imports_of(module):
        there = top(target)
        if there == here:
            continue
        if there == "":
            if target == "halluscope" and here not in ("cli", "__main__"):
                wrong.append(f"line {line}: imports from the root package (import the module that owns the name)")
            continue
        if RANK[there] >= RANK[here]:
            wrong.append(f"line {line}: {target} (layer {RANK[there]}) from layer {RANK[here]}")
    assert not wrong, f"{module} imports upwards or sideways:\n" + "\n".join(wrong)


_PROBE = "import importlib, json, sys; importlib.import_module(sys.argv[1]); print(json.dumps(sorted(sys.modules)))"


def _loaded(module: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"`import {module}` alone fails:\n{out.stderr[-2000:]}"
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def loaded() -> dict[str, list[str]]:
    """What each module loads when imported alone in a fresh interpreter."""
    alone = [m for m in MODULES if m != "halluscope.__main__"]  # importing it runs the CLI
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(alone, pool.map(_loaded, alone)))


@pytest.mark.slow
def test_each_module_alone_loads_only_lower_layers(loaded):
    wrong = {}
    for module, modules in loaded.items():
        here = top(module)
        if not here:
            continue
        ours = [m for m in modules if m.startswith("halluscope.") and top(m) != "_version"]  # the root's own
        above = sorted(m for m in ours if top(m) != here and RANK[top(m)] >= RANK[here])
        if above:
            wrong[module] = above
    assert not wrong, f"modules that load their own layer's neighbours or higher layers: {wrong}"


def test_metrics_is_pure(loaded):
    modules = loaded["halluscope.metrics"]
    assert "torch" not in modules and not any(m.startswith("halluscope.models") for m in modules)


def test_losses_load_no_trainer(loaded):
    modules = loaded["halluscope.training.losses"]
    trainers = [m for m in modules if m.startswith("halluscope.training.") and m != "halluscope.training.losses"]
    assert not trainers, f"halluscope.training.losses loads {trainers}"


def test_world_and_hallucinate_need_no_torch(loaded):
    assert "torch" not in loaded["halluscope.world"]
    assert "torch" not in loaded["halluscope.hallucinate"]


def test_lazy_package_access():
    code = ("import halluscope; halluscope.decoding.vcd_scores; halluscope.steering.vti; halluscope.training.dpo_loss;"
            " halluscope.metrics.pope; halluscope.world.World; halluscope.World; halluscope.load_model")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_import_halluscope_is_light():
    out = subprocess.run([sys.executable, "-c", _PROBE, "halluscope"], capture_output=True, text=True, timeout=60)
    modules = json.loads(out.stdout)
    assert "torch" not in modules and [m for m in modules if m.startswith("halluscope")] == [
        "halluscope", "halluscope._version"]
