"""Deprecated: preference alignment moved to `halluscope.training.preference` (one config per method:
`DPOConfig`, `DDPOConfig`, `PairSFTConfig`; `train_preference(adapter, config, output_dir)`) and the
input builders to `halluscope.training.data`. The old names keep working here, with a warning.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import Config
from ..world import CAPTION_PROMPTS
from . import data, preference

METHODS = tuple(preference.METHODS)
# What None meant in AlignConfig's beta and average_logps: the defaults of DPOConfig, DDPOConfig, PairSFTConfig.
PAPER_DEFAULTS = {"dpo": {"beta": 0.1, "average_logps": False}, "ddpo": {"beta": 0.5, "average_logps": True},
                  "sft": {"beta": 0.1, "average_logps": True}}


@dataclass
class AlignConfig(Config):
    """Deprecated: one config for three methods, with None meaning "the method's own default". Use
    `DPOConfig`, `DDPOConfig` or `PairSFTConfig` (`for_method(method)` builds the one a method needs)."""

    beta: float | None = None
    gamma: float = 5.0
    min_match: int = 3
    average_logps: bool | None = None
    steps: int = 200
    batch_size: int = 8
    lr: float = 5e-7
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    sft_weight: float = 0.0
    train_projector: bool = True
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = preference.LORA_TARGETS
    merge_lora: bool = True
    n_pairs: int = 512
    pair_split: str = "train"
    pair_start: int = 150_000
    prompt: str = field(default=CAPTION_PROMPTS["detailed"])
    max_new_tokens: int = 64
    generation_batch_size: int = 32
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 10

    def __post_init__(self) -> None:
        warnings.warn("AlignConfig is deprecated; use halluscope.training.preference.DPOConfig, DDPOConfig or "
                      "PairSFTConfig", DeprecationWarning, stacklevel=3)
        self.lora_targets = tuple(self.lora_targets)
        self.for_method("ddpo")  # checks every field DDPO reads
        if self.beta is not None and self.beta <= 0:
            self.fail("beta", "use a positive beta")

    def for_method(self, method: str) -> preference.PreferenceConfig:
        """The new config of `method` with this one's values (None: the method's default)."""
        if method not in preference.METHODS:
            raise ValueError(f"unknown alignment method {method!r}; use one of {METHODS}")
        cls = preference.METHODS[method]
        names = {f.name for f in fields(cls)}
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name in names}
        return cls(**{k: v for k, v in values.items() if v is not None})

    def resolved(self, method: str) -> preference.PreferenceConfig:
        return self.for_method(method)


def align(model, method: str = "ddpo", config: AlignConfig | preference.PreferenceConfig | None = None,
          output_dir: str | Path = "aligned", world=None, pairs=None, progress: bool = True) -> Path:
    """Deprecated: `train_preference(adapter, config, output_dir, world, pairs)`, whose config's class
    names the method. `model` may still be a name or a folder here."""
    warnings.warn("halluscope.training.align.align is deprecated; use halluscope.training.preference."
                  "train_preference(halluscope.load_model(...), DDPOConfig(...), output_dir)", DeprecationWarning,
                  stacklevel=2)
    if config is None:
        config = preference.preference_config(method)
    elif isinstance(config, AlignConfig):
        config = config.for_method(method)
    elif config.method != method:
        raise ValueError(f"method {method!r} with a {type(config).__name__}: pass the config of {method!r}")
    if isinstance(model, str | os.PathLike):
        # The loader sits above training (it may train the built-in model); this deprecated entry point
        # alone reaches it, by name.
        model = importlib.import_module("halluscope.zoo").load_model(str(model))
    return preference.train_preference(model, config, output_dir, world, pairs, progress)


_MOVED = {"encode": data, "prompt_text": data, "pair_batch": preference, "response_weights": preference,
          "world_preference_pairs": preference, "LORA_TARGETS": preference}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        module = _MOVED[name]
        warnings.warn(f"halluscope.training.align.{name} moved to {module.__name__}.{name}", DeprecationWarning,
                      stacklevel=2)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "PAPER_DEFAULTS", "AlignConfig", "align"]
