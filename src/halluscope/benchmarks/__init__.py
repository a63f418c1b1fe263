"""Deprecated: the benchmarks package is now `halluscope.tasks`; this alias keeps old imports working.

`halluscope.benchmarks.world`, `.real` and `.answers` are the very module objects of `halluscope.tasks`
(registered in `sys.modules`), so classes, isinstance checks and monkeypatches agree across both names.
"""

from __future__ import annotations

import importlib
import sys
import warnings

from ..tasks import *  # noqa: F403
from ..tasks import __all__  # noqa: F401

warnings.warn("halluscope.benchmarks is deprecated: import halluscope.tasks instead", DeprecationWarning, stacklevel=2)

for _name in ("answers", "real", "world"):
    globals()[_name] = sys.modules[f"{__name__}.{_name}"] = importlib.import_module(f"..tasks.{_name}", __name__)
