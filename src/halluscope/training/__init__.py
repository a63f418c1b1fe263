"""Training: the built-in model's recipe stages and training-based mitigation, in one loop.

- `loop`: the `Trainer` every method subclasses (accelerate, AdamW, schedule, checkpoints, resume);
- `losses`: HACL's contrastive loss, DPO, RLHF-V's dense DPO (token weights from a diff), pure;
- `sft`: the built-in model's stage 0 and instruction tuning (`TrainConfig`);
- `hacl`: HACL's heads and connector-alignment stage (`HACLConfig`, `HACLTrainer`, `hacl_align`);
- `preference`: DPO / DDPO / a supervised control on preference pairs, the world's built from the
  model's own captions (`DPOConfig`, `DDPOConfig`, `PairSFTConfig`, `train_preference`);
- `data`: the training inputs of any VLM (`encode`, `caption_tensors`).

Modules load on first use (PEP 562): `import halluscope.training.losses` loads no trainer.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "Trainer": "loop", "cosine_lr": "loop",
    "ddpo_logps": "losses", "ddpo_weights": "losses", "dpo_loss": "losses", "hacl_loss": "losses",
    "token_logps": "losses",
    "TrainConfig": "sft", "InstructionTrainer": "sft", "VisionPretrainer": "sft",
    "HACLConfig": "hacl", "HACLModel": "hacl", "HACLTrainer": "hacl", "hacl_align": "hacl",
    "DPOConfig": "preference", "DDPOConfig": "preference", "PairSFTConfig": "preference",
    "PreferenceConfig": "preference", "PreferenceTrainer": "preference", "train_preference": "preference",
    "world_preference_pairs": "preference",
    "encode": "data", "caption_tensors": "data",
    "AlignConfig": "align",  # deprecated
    "train_tiny_hacl": "hacl",  # deprecated
}
_MODULES = ("align", "data", "hacl", "loop", "losses", "preference", "sft")


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES, *_MODULES])


__all__ = sorted(k for k in _NAMES if k not in ("AlignConfig", "train_tiny_hacl"))
