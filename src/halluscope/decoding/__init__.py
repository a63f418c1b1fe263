"""Decoding methods, one config dataclass + one implementation each, in one registry.

A method turns prepared model inputs into new token ids. `greedy` and `sample` go through
transformers' `generate`; contrastive methods add branches of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch


@dataclass
class GreedyConfig:
    """Greedy decoding: the argmax token at every step."""


@dataclass
class SampleConfig:
    """Multinomial sampling (temperature 1, no truncation by default, as in VCD's baseline)."""

    temperature: float = field(default=1.0, metadata={"help": "softmax temperature (> 0)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus mass in (0, 1]"})
    top_k: int = field(default=0, metadata={"help": "keep the k best tokens; 0 keeps all"})
    seed: int | None = field(default=None, metadata={"help": "torch seed set before sampling"})

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"sample: temperature={self.temperature} must be > 0; use method='greedy' for 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sample: top_p={self.top_p} must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError(f"sample: top_k={self.top_k} must be >= 0")


class HFGenerate:
    """Greedy or sampling through `model.generate` (KV cache, left padding, EOS stopping)."""

    def __init__(self, config: GreedyConfig | SampleConfig) -> None:
        self.config = config

    def generate(self, adapter, inputs: dict[str, torch.Tensor], max_new_tokens: int) -> torch.Tensor:
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": adapter.tokenizer.pad_token_id}
        if isinstance(self.config, SampleConfig):
            if self.config.seed is not None:
                torch.manual_seed(self.config.seed)
            kwargs.update(do_sample=True, temperature=self.config.temperature, top_p=self.config.top_p,
                          top_k=self.config.top_k)
        else:
            kwargs.update(do_sample=False, num_beams=1)
        out = adapter.model.generate(**inputs, **kwargs)
        return out[:, inputs["input_ids"].shape[1]:]


METHODS: dict[str, tuple[type, type]] = {
    "greedy": (GreedyConfig, HFGenerate),
    "sample": (SampleConfig, HFGenerate),
}


def get_method(name: str, **args: Any):
    """The decoder for method `name`, configured by `args` (checked by its config dataclass)."""
    if name not in METHODS:
        raise ValueError(f"unknown decoding method {name!r}; registered methods: {sorted(METHODS)}")
    config_cls, impl = METHODS[name]
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError(f"method {name!r} has no argument(s) {unknown}; it takes {sorted(known) or 'none'}")
    return impl(config_cls(**args))


__all__ = ["METHODS", "GreedyConfig", "SampleConfig", "get_method"]
