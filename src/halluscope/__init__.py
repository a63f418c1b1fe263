"""halluscope: diagnose, measure and reduce hallucination in vision-language models.

Subpackages load on first use (PEP 562), so `import halluscope` stays light and
`halluscope.metrics` never pulls in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .zoo import load_model
    from .world import World

_SUBPACKAGES = ("decoding", "hallucinate", "images", "metrics", "models", "report", "runner",
                "steering", "tasks", "training", "world", "zoo")
_NAMES = {"World": "world", "load_model": "zoo"}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'halluscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES, *_SUBPACKAGES])


__all__ = ["World", "load_model", "metrics", "__version__"]
