"""Deprecated: the benchmarks package is now `halluscope.tasks`; this alias keeps old imports working.

`halluscope.benchmarks.world`, `.real` and `.answers` are the very module objects of `halluscope.tasks`
(registered in `sys.modules`), so classes, isinstance checks and monkeypatches agree across both names.
"""

from __future__ import annotations

import importlib
import sys
import warnings

from ..tasks import *  # noqa: F403
from ..tasks import TASKS, __all__ as _tasks_all
from ..tasks import _make_benchmark as make_benchmark

warnings.warn("halluscope.benchmarks is deprecated: import halluscope.tasks instead (make_benchmark is "
              "make_task, BENCHMARKS is task_names())", DeprecationWarning, stacklevel=2)

BENCHMARKS = tuple(spec.pattern(family) for family, spec in TASKS.items())

for _name in ("answers", "base", "real", "world"):
    globals()[_name] = sys.modules[f"{__name__}.{_name}"] = importlib.import_module(f"..tasks.{_name}", __name__)

__all__ = ["BENCHMARKS", "make_benchmark", *_tasks_all]
