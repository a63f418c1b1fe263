"""Model adapters. `load_model("tiny")` gives the built-in model (trained on first use, then cached);
any other name is a local folder or a Hugging Face hub id of a VLM (LLaVA family, Qwen2-VL, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .adapter import VLMAdapter, load_image

# LLaVA-1.5's and lmms-eval's POPE prompt suffix for real models; the built-in model needs none.
YES_NO_SUFFIX = "\nAnswer the question using a single word or phrase."
MARKER = "halluscope.json"


def cache_dir() -> Path:
    """Where trained built-in models live: $HALLUSCOPE_CACHE, else ~/.cache/halluscope."""
    return Path(os.environ.get("HALLUSCOPE_CACHE", Path.home() / ".cache" / "halluscope"))


def tiny_recipe(world=None, train_config=None, tiny_config=None) -> dict[str, Any]:
    from ..training.sft import TrainConfig
    from ..world import World
    from .tiny import TinyConfig

    world = world or World()
    train = (train_config or TrainConfig()).to_dict()
    return {"world_seed": world.seed, "world": world.config.to_dict(),
            "model": (tiny_config or TinyConfig()).to_dict(), "train": train}


def tiny_path(recipe: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache_dir() / f"tiny-{key}"


def train_tiny(world=None, train_config=None, tiny_config=None, out: str | Path | None = None,
               progress: bool = True) -> Path:
    """Train the built-in model (resuming from a checkpoint in `out` if there is one) and save it
    with `save_pretrained`. Returns the folder. Stages: 0, vision tower and projector on per-patch
    labels (`sft.pretrain_vision`); optionally 1, connector alignment on captions
    (`TrainConfig.connector_steps`, run by HACL's trainer with contrastive weight 0, so that
    `halluscope train --hacl` differs from it in that weight only); then instruction tuning."""
    from ..training.sft import TrainConfig, train
    from ..world import World
    from .tiny import TinyConfig, build_model, build_processor

    world = world or World()
    train_config, tiny_config = train_config or TrainConfig(), tiny_config or TinyConfig()
    recipe = tiny_recipe(world, train_config, tiny_config)
    out = Path(out) if out is not None else tiny_path(recipe)
    if train_config.connector_steps:
        from ..training.hacl import HACLConfig, train_tiny_hacl

        connector = HACLConfig(steps=train_config.connector_steps, seed=train_config.seed, contrastive_weight=0.0)
        return train_tiny_hacl(world, train_config, tiny_config, connector, out, progress=progress)
    processor = build_processor(world)
    model = build_model(processor, tiny_config, seed=train_config.seed)
    log = train(model, processor, world, train_config, out, progress=progress)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "train_log.json").write_text(json.dumps(log))
    # The marker is written last: a folder without it is an unfinished run that will resume.
    (out / MARKER).write_text(json.dumps({"kind": "tiny", "recipe": recipe}, indent=1, default=str))
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    return out


def load_model(name_or_path: str = "tiny", device: str | None = None, dtype: Any = None,
               yes_no_suffix: str | None = None, retrain: bool = False, progress: bool = True,
               world=None, train_config=None, tiny_config=None, **from_pretrained_kwargs: Any) -> VLMAdapter:
    """An adapter over a VLM.

    "tiny" is the built-in model: trained on first use (12-23 minutes on 2 CPU cores, resumable) and
    cached in `cache_dir()`, keyed by its world, sizes and training recipe. Anything else is a local folder
    or a hub id loaded with `AutoModelForImageTextToText` and `AutoProcessor`.
    """
    import torch

    if name_or_path == "tiny":
        path = tiny_path(tiny_recipe(world, train_config, tiny_config))
        if retrain and path.exists():
            shutil.rmtree(path)
        if not (path / MARKER).exists():
            train_tiny(world, train_config, tiny_config, path, progress=progress)
        name_or_path = str(path)
    is_tiny = (Path(name_or_path) / MARKER).exists()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    from transformers import AutoModelForImageTextToText, AutoProcessor

    kwargs = {"dtype": dtype, **from_pretrained_kwargs}
    if is_tiny:
        kwargs.setdefault("attn_implementation", "eager")
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
    model.to(device)
    if yes_no_suffix is None:
        yes_no_suffix = "" if is_tiny else YES_NO_SUFFIX
    return VLMAdapter(model, processor, name=name_or_path, yes_no_suffix=yes_no_suffix)


__all__ = ["YES_NO_SUFFIX", "VLMAdapter", "cache_dir", "load_image", "load_model", "train_tiny"]
