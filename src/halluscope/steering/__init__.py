"""Steering: VTI (visual and textual intervention, Liu et al., ICLR 2025) through forward hooks.

    from halluscope.steering import FitConfig, fit_directions, vti

    directions = fit_directions(adapter, FitConfig(n_images=50))      # or Directions.load(path)
    directions.save("directions.safetensors")
    with vti(adapter, directions, alpha=0.9, beta=0.9):
        adapter.generate(images, prompts, method="greedy")           # any decoding method

Importing this package registers VTI as the decoding method "vti" (`method="vti"`, `--method vti`);
the decoding registry names this package as the plugin that provides it, so `get_method("vti")` works
after `import halluscope.decoding` alone. The other names load on first use (PEP 562): fitting
directions pulls in the world and the hallucinated-caption engine.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..decoding import register_method
from .method import VTI, VTIConfig

register_method("vti", VTIConfig, VTI)

# submodule: the public names it gives this package
_LAZY = {
    "directions": ("REDUCTIONS", "Directions", "principal_direction"),
    "fit": ("Demo", "FitConfig", "fit_directions", "fit_text", "fit_vision", "masked_copies", "world_demos"),
    "demos": ("DEMO_KINDS", "HALLUCINATION_TYPES", "WorldHallucinator", "hallucinated_caption"),
    "hooks": ("record", "steer", "text_layers", "vision_layers", "vti"),
}
_OWNER = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _OWNER:
        return getattr(importlib.import_module(f".{_OWNER[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_OWNER])


__all__ = ["VTI", "VTIConfig", *sorted(_OWNER)]
