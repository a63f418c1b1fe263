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


def quantization_config(load_in_4bit: bool, dtype: Any):
    """bitsandbytes' 4-bit NF4 config (compute in `dtype`), or None; a one-line error where bitsandbytes is
    missing."""
    if not load_in_4bit:
        return None
    from transformers.utils import is_bitsandbytes_available

    if not is_bitsandbytes_available():
        raise ImportError("load_in_4bit=True needs bitsandbytes and a CUDA GPU: pip install bitsandbytes "
                          "(or load in bfloat16 / float16 without it)")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)


def load_pretrained(name_or_path: str, device: str | None = None, dtype: Any = None, *, device_map: Any = None,
                    attn_implementation: str | None = None, revision: str | None = None,
                    trust_remote_code: bool = False, load_in_4bit: bool = False,
                    **from_pretrained_kwargs: Any) -> tuple[Any, Any]:
    """(model, processor) of a VLM in a local folder or on the hub, with `AutoModelForImageTextToText`
    and `AutoProcessor`, on `device` (default: CUDA where there is one) in `dtype` (default: bf16 on
    CUDA, fp32 on CPU; "auto": the checkpoint's). Errors say whether the folder or the hub failed, and what to do.

    `device_map` ("auto": across every GPU, then CPU) places the model with accelerate instead of on `device`,
    for a model larger than one GPU; `load_in_4bit` loads it quantized with bitsandbytes (on the GPU, so also
    without a move); `revision` picks a hub branch, tag or commit; `trust_remote_code` (off unless asked) runs
    the checkpoint's own modelling code; `attn_implementation` is transformers' ("eager", "sdpa", ...)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") or device_map is not None else torch.float32
    kwargs = {"dtype": dtype, **from_pretrained_kwargs}
    shared = {"trust_remote_code": trust_remote_code, **({"revision": revision} if revision else {})}
    if is_builtin(name_or_path):
        kwargs.setdefault("attn_implementation", "eager")  # faster than SDPA at its size on CPU
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if device_map is not None:
        kwargs["device_map"] = device_map
    quantization = quantization_config(load_in_4bit, torch.bfloat16 if dtype == "auto" else dtype)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs.setdefault("device_map", {"": device})
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, **shared)
        model = None
        if is_builtin(name_or_path):  # a built-in model with a linear or query connector: built from its config
            from .tiny import load_custom_connector

            model = load_custom_connector(name_or_path, **shared, **kwargs)
        if model is None:
            model = AutoModelForImageTextToText.from_pretrained(name_or_path, **shared, **kwargs)
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
    if "device_map" in kwargs:  # placed by accelerate (or bitsandbytes): moving it would undo that
        return model, processor
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


__all__ = ["MARKER", "YES_NO_SUFFIX", "VLMBase", "is_builtin", "load_image", "load_pretrained", "quantization_config"]
