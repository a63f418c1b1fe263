"""Where a VLM keeps its parts (vision tower, projector, language model), by family: one lookup that
the adapter, steering and training share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

# The first path that exists wins; the paths cover LLaVA-style (`model.vision_tower`: LLaVA-1.5/NeXT/OneVision,
# PaliGemma, Gemma 3), Qwen2-VL-style (`model.visual`), Idefics3-style (`model.vision_model`, `model.connector`,
# `model.text_model`: SmolVLM too) and Mllama layouts, before and after transformers moved the parts under
# `.model`, and InstructBLIP's, which keeps them at the top with a whole causal LM as `language_model` (its
# decoder is `language_model.model`; its connector is the Q-Former, then a linear `language_projection`).
PART_PATHS: dict[str, tuple[str, ...]] = {
    "vision_tower": ("model.vision_tower", "model.visual", "model.vision_model", "vision_tower", "visual",
                     "vision_model"),
    "projector": ("model.multi_modal_projector", "model.visual.merger", "model.connector", "multi_modal_projector",
                  "qformer"),
    "language_model": ("model.language_model", "model.text_model", "language_model.model", "language_model"),
}


def visual_tokens(model: nn.Module, **vision: Any) -> list[Any]:
    """Each image's visual tokens as the language model receives them (after the projector), from the model's
    `get_image_features` (on the model or its inner `.model`), which returns an output object whose
    `pooler_output` holds them on current transformers and the tensors themselves on older releases."""
    inner = getattr(model, "model", None)
    base = inner if hasattr(inner, "get_image_features") else model
    features = base.get_image_features(**vision)
    return list(getattr(features, "pooler_output", features))


def get_path(root: nn.Module, path: str) -> Any:
    """`root.a.b.c` for path "a.b.c", or None where a link is missing."""
    obj: Any = root
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def find_module(root: nn.Module, paths: Sequence[str]) -> Any:
    """The module at the first of `paths` that exists under `root`, or None."""
    for path in paths:
        if (obj := get_path(root, path)) is not None:
            return obj
    return None


def find_part(model: nn.Module, part: str) -> Any:
    """The model's `part` (a key of PART_PATHS), or None where this family has none."""
    if part not in PART_PATHS:
        raise ValueError(f"unknown model part {part!r}; use one of {sorted(PART_PATHS)}")
    return find_module(model, PART_PATHS[part])


__all__ = ["PART_PATHS", "find_module", "find_part", "get_path", "visual_tokens"]
