"""Tasks: the world's (exact ground truth) and the published benchmarks on real images.

    make_task("world-pope:adversarial")                  # or "pope_adv", lmms-eval's name for "pope:adversarial"
    make_task("world-qa:relation")                       # yes/no questions of one kind, AMBER-style
    make_task("chair", images="val2014", data="annotations")

A task is named `family` or `family:subset`; `TASKS` maps each family to its subsets and the function
that builds it, `ALIASES` maps lmms-eval's names to ours. `base.py` says what a task is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..world import POPE_SPLITS, QA_KINDS, World
from .base import YES_NO_MODES, Request, Task, TaskBase, answer, generate, yes_no
from .real import AMBER, AMBER_QUERIES, CHAIR, MME, POPE, POPE_FILES
from .world import WorldCHAIR, WorldPOPE, WorldQA


@dataclass(frozen=True)
class TaskSpec:
    """A family of tasks. `build(subset, images=, data=, n_images=, pope_mode=, world=)` makes one;
    `subsets` are the names accepted after the colon (none: the family takes no subset), `default`
    the subset of the bare family name (None: a subset must be named)."""

    build: Callable[..., Task]
    subsets: tuple[str, ...] = ()
    default: str | None = None
    help: str = ""

    def names(self, family: str) -> list[str]:
        return [f"{family}:{s}" for s in self.subsets] if self.subsets else [family]

    def pattern(self, family: str) -> str:
        return f"{family}:{{{','.join(self.subsets)}}}" if self.subsets else family


TASKS: dict[str, TaskSpec] = {
    "world-pope": TaskSpec(
        lambda sub, *, world, n_images, pope_mode, **_: WorldPOPE(world or World(), sub, n_images=n_images,
                                                                  mode=pope_mode),
        POPE_SPLITS, help="POPE on the world's test images: 3 present and 3 absent objects per image"),
    "world-chair": TaskSpec(
        lambda sub, *, world, n_images, **_: WorldCHAIR(world or World(), n_images=n_images),
        help="CHAIR on captions of the world's test images, ordinary vs bias-breaking"),
    "world-qa": TaskSpec(
        lambda sub, *, world, n_images, pope_mode, **_: WorldQA(world or World(), sub, n_images=n_images,
                                                                mode=pope_mode),
        QA_KINDS, help="AMBER-style yes/no (and open colour and count) questions of one kind on the world's test "
                       "images, conforming vs bias-breaking items"),
    "pope": TaskSpec(
        lambda sub, *, images, data, pope_mode, **_: POPE(sub, images=images, questions=data, mode=pope_mode),
        tuple(POPE_FILES), help="POPE on COCO val2014 (--images; packaged questions, or --data FILE)"),
    "chair": TaskSpec(
        lambda sub, *, images, data, **_: CHAIR(gt=data, images=images),
        help="CHAIR on COCO captions (--images, --data ground truth)"),
    "amber": TaskSpec(
        lambda sub, *, images, data, pope_mode, **_: AMBER(sub, data=data, images=images, mode=pope_mode),
        ("all", *(k for k in AMBER_QUERIES if k != "all")), default="all",
        help="AMBER (--images, --data AMBER's data folder)"),
    "mme": TaskSpec(
        lambda sub, *, images, data, pope_mode, **_: MME(sub, data=data, images=images, mode=pope_mode),
        tuple(metrics.MME_HALLUCINATION_SUBTASKS), help="MME's hallucination subsets (--images, --data)"),
}

# lmms-eval's task names for the same questions.
ALIASES: dict[str, str] = {"pope_adv": "pope:adversarial", "pope_pop": "pope:popular", "pope_random": "pope:random"}


def task_names() -> list[str]:
    """Every full task name, e.g. 'world-pope:random', 'chair', 'amber:existence'."""
    return [name for family, spec in TASKS.items() for name in spec.names(family)]


def resolve(name: str) -> str:
    """The canonical name of `name` (an alias resolved, a bare family given its default subset);
    ValueError listing the valid names if it names no task."""
    name = ALIASES.get(name.strip(), name.strip())
    family, _, sub = name.partition(":")
    spec = TASKS.get(family)
    if spec is None:
        raise ValueError(f"unknown task {name!r}; use one of {', '.join(task_names())} (or {', '.join(ALIASES)})")
    sub = sub or spec.default or ""
    if spec.subsets and sub not in spec.subsets:
        what = f"{family!r} needs a subset" if not sub else f"unknown {family} subset {sub!r}"
        raise ValueError(f"{what}; use {family}:{{{','.join(spec.subsets)}}}")
    if not spec.subsets and sub:
        raise ValueError(f"task {family!r} takes no subset (got {sub!r}); use {family!r}")
    return f"{family}:{sub}" if sub else family


def make_task(name: str, *, images: str | None = None, data: str | None = None, n_images: int = 500,
              pope_mode: str = "score", world: World | None = None) -> Task:
    """The task named `name` (see `task_names()` and `ALIASES`). `images` is the folder of a real
    benchmark's images and `data` its question or ground-truth file; `n_images` sizes the world's;
    `pope_mode` is how yes/no questions are answered ('score' or 'generate')."""
    if pope_mode not in YES_NO_MODES:
        raise ValueError(f"unknown yes/no mode {pope_mode!r}; use one of {', '.join(YES_NO_MODES)}")
    family, _, sub = resolve(name).partition(":")
    return TASKS[family].build(sub or None, images=images, data=data, n_images=n_images, pope_mode=pope_mode,
                               world=world)


def _make_benchmark(spec: str, *, images: str | None = None, data: str | None = None, n_images: int = 500,
                    pope_mode: str = "score", world: Any = None) -> Task:
    return make_task(spec, images=images, data=data, n_images=n_images, pope_mode=pope_mode, world=world)


_DEPRECATED = {"make_benchmark": ("make_task", lambda: _make_benchmark),
               "BENCHMARKS": ("TASKS (or task_names())", lambda: tuple(s.pattern(f) for f, s in TASKS.items()))}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        new, get = _DEPRECATED[name]
        warnings.warn(f"halluscope.tasks.{name} is deprecated: use {new}", DeprecationWarning, stacklevel=2)
        return get()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ALIASES", "AMBER", "CHAIR", "MME", "POPE", "TASKS", "YES_NO_MODES", "Request", "Task", "TaskBase",
           "TaskSpec", "WorldCHAIR", "WorldPOPE",
           "WorldQA", "answer", "generate", "make_task", "resolve", "task_names", "yes_no"]
