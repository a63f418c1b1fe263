"""Models by name: `load_model("tiny")` is the built-in model (trained on first use by its recipe in
`zoo.tiny`, then cached); any other name is a local folder or a Hugging Face hub id of a VLM (LLaVA
family, Qwen2-VL, ...), loaded by `models.load_pretrained`. This sits above both the adapter and the
recipe, so that neither has to reach up to the other.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..models import YES_NO_SUFFIX, is_builtin, load_pretrained
from ..decoding.adapter import VLMAdapter


def load_model(name_or_path: str = "tiny", device: str | None = None, dtype: Any = None,
               yes_no_suffix: str | None = None, retrain: bool = False, progress: bool = True,
               world=None, train_config=None, tiny_config=None, **from_pretrained_kwargs: Any) -> VLMAdapter:
    """An adapter over a VLM: "tiny" (the built-in model of `world`, `train_config` and `tiny_config`,
    trained first if it is not cached; `retrain` trains it again), a local folder, or a hub id.

    `device` defaults to CUDA where there is one, `dtype` to bf16 there and fp32 on CPU. The built-in
    model is asked plain questions; other models get LLaVA-1.5's yes/no suffix unless `yes_no_suffix`
    says otherwise. Loading options (`device_map`, `attn_implementation`, `revision`, `trust_remote_code`,
    `load_in_4bit`, any other `from_pretrained` argument) go to `models.load_pretrained`; the adapter's
    `load_args` records them with the dtype and device they resolved to."""
    if name_or_path == "tiny":
        from .tiny import tiny_model_path

        name_or_path = str(tiny_model_path(world, train_config, tiny_config, retrain=retrain, progress=progress))
    model, processor = load_pretrained(name_or_path, device=device, dtype=dtype, **from_pretrained_kwargs)
    if yes_no_suffix is None:
        yes_no_suffix = "" if is_builtin(name_or_path) else YES_NO_SUFFIX
    adapter = VLMAdapter(model, processor, name=name_or_path, yes_no_suffix=yes_no_suffix)
    # How it was loaded, for a results file: the options asked for, and what they resolved to.
    adapter.load_args = {
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."), "device": str(adapter.device),
        **{k: v if isinstance(v, str | bool | int | float | type(None)) else str(v)
           for k, v in from_pretrained_kwargs.items()},
        "trust_remote_code": bool(from_pretrained_kwargs.get("trust_remote_code", False)),
    }
    return adapter


def __getattr__(name: str) -> Any:
    if name in ("cache_dir", "tiny_path", "tiny_recipe", "train_tiny", "tiny"):
        tiny = importlib.import_module(".tiny", __name__)
        return tiny if name == "tiny" else getattr(tiny, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["cache_dir", "load_model", "tiny_path", "tiny_recipe", "train_tiny"]
