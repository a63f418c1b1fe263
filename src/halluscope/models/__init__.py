"""Model adapters, and loading of Hugging Face VLMs from a local folder or a hub id
(`load_pretrained`). Nothing here trains: the built-in model's recipe is `halluscope.zoo.tiny`, and
`halluscope.load_model("tiny")` (in `halluscope.zoo`) answers for both.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

from ..images import load_image
from .adapter import VLMBase

# LLaVA-1.5's and lmms-eval's POPE prompt suffix for real models; the built-in model needs none.
YES_NO_SUFFIX = "\nAnswer the question using a single word or phrase."
# In a model folder, the file that marks it as the built-in model (written last, when training ends).
MARKER = "halluscope.json"


def is_builtin(path: str | Path) -> bool:
    """Whether `path` is a folder of the built-in model (or of one trained from it)."""
    return (Path(path) / MARKER).exists()


def load_pretrained(name_or_path: str, device: str | None = None, dtype: Any = None,
                    **from_pretrained_kwargs: Any) -> tuple[Any, Any]:
    """(model, processor) of a VLM in a local folder or on the hub, with `AutoModelForImageTextToText`
    and `AutoProcessor`, on `device` (default: CUDA where there is one) in `dtype` (default: bf16 on
    CUDA, fp32 on CPU). Errors say whether the folder or the hub failed, and what to do."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    kwargs = {"dtype": dtype, **from_pretrained_kwargs}
    if is_builtin(name_or_path):
        kwargs.setdefault("attn_implementation", "eager")  # faster than SDPA at its size on CPU
    try:
        processor = AutoProcessor.from_pretrained(name_or_path)
        model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError, AttributeError) as e:
        from transformers.utils import is_torchvision_available

        hint = "" if is_torchvision_available() else (
            " Some processors (Qwen2-VL's, for its video part) need torchvision: install the build that matches "
            "your torch.")
        if Path(name_or_path).exists():
            raise OSError(f"could not load a VLM from the folder {name_or_path!r}: {e}.{hint}") from e
        if not isinstance(e, OSError):
            raise
        raise OSError(
            f"could not load {name_or_path!r} from the Hugging Face hub ({type(e).__name__}); this machine may "
            "be offline or the id may be wrong. Download the model where there is network "
            f"(`huggingface-cli download {name_or_path} --local-dir DIR`) and pass the local folder DIR instead."
        ) from e
    return model.to(device), processor


# Names that moved up: the adapter with generation to halluscope.decoding (it dispatches on method
# names), the built-in model's loading and recipe to halluscope.zoo (it trains). They resolve there, by
# name and with a warning, so that importing models loads neither.
_MOVED = {"VLMAdapter": ("halluscope.decoding.adapter", "halluscope.decoding.VLMAdapter"),
          "load_model": ("halluscope.zoo", "halluscope.load_model"),
          "train_tiny": ("halluscope.zoo.tiny", "halluscope.zoo.tiny.train_tiny"),
          "cache_dir": ("halluscope.zoo.tiny", "halluscope.zoo.tiny.cache_dir"),
          "tiny_recipe": ("halluscope.zoo.tiny", "halluscope.zoo.tiny.tiny_recipe"),
          "tiny_path": ("halluscope.zoo.tiny", "halluscope.zoo.tiny.tiny_path")}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        module, new = _MOVED[name]
        warnings.warn(f"halluscope.models.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MARKER", "YES_NO_SUFFIX", "VLMBase", "is_builtin", "load_image", "load_pretrained"]
