"""What a decoding method is: a config (`MethodConfig`) and one implementation (`DecodingMethod`).

    decoder = get_method("vcd", alpha=1.0)                 # the registry builds both
    inputs = adapter.decode_inputs(decoder, images, prompts)
    new_tokens = decoder.generate(adapter, inputs, max_new_tokens=64)
    scores = decoder.first_token_scores(adapter, inputs)   # (B, V): POPE's score mode

Every method takes the same arguments and returns the same shapes, so the adapter, the tasks and VTI
(which wraps another method) call any of them the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from ..config import Config


@dataclass
class MethodConfig(Config):
    """The base of every method's config: fields with `metadata={"help": ...}` and the paper's defaults,
    checked in `__post_init__` (with `self.fail` / `self.check_range`), cited in `_paper`."""

    @classmethod
    def from_args(cls, **args: Any) -> MethodConfig:
        """The config from flat keyword arguments (`generate(..., **args)`, `--method-args k=v,...`)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"{cls.__name__} has no argument(s) {unknown}; it takes {sorted(known) or 'none'}")
        return cls(**args)


@dataclass
class SamplingConfig(MethodConfig):
    """How a method picks each token from its scores: the argmax (default) or a draw. Every method's config
    extends it; the papers sample with temperature 1 and no truncation."""

    sample: bool = field(default=False, metadata={
        "help": "draw tokens from softmax(scores / temperature) instead of taking the argmax"})
    temperature: float = field(default=1.0, metadata={"help": "softmax temperature when sampling (> 0)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus mass when sampling, in (0, 1]; 1 keeps all"})
    top_k: int = field(default=0, metadata={"help": "keep the k best tokens when sampling; 0 keeps all"})
    seed: int | None = field(default=None, metadata={"help": "torch seed set before sampling"})

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            self.fail("temperature", "must be > 0; for greedy decoding use sample=False")
        if not 0 < self.top_p <= 1:
            self.fail("top_p", "must be in (0, 1]; 1 turns nucleus filtering off")
        if self.top_k < 0:
            self.fail("top_k", "must be >= 0; 0 turns top-k filtering off")

    def generate_kwargs(self) -> dict[str, Any]:
        """The matching arguments of transformers' `generate`: it then builds the same temperature, top-k
        and top-p warpers for every method, after the model's own processors."""
        if not self.sample:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}


class DecodingMethod(ABC):
    """One decoding method. Subclasses set `config_cls` and implement `generate` and `first_token_scores`.

    `inputs` is what `adapter.decode_inputs(decoder, images, prompts)` returns: a `DecodeInputs`, the model
    tensors of the clean prompts plus the images and prompts they came from. A method that builds all of
    its inputs itself (its branches, in one processor call) sets `builds_own_inputs`, and then gets the
    images and prompts without tensors."""

    config_cls: ClassVar[type[MethodConfig]]
    builds_own_inputs: ClassVar[bool] = False

    def __init__(self, config: MethodConfig) -> None:
        self.config = config

    @abstractmethod
    def generate(self, adapter, inputs: dict[str, torch.Tensor], max_new_tokens: int,
                 min_new_tokens: int = 0) -> torch.Tensor:
        """(B, T) new token ids, T <= max_new_tokens, padding after a sample's EOS; EOS is excluded before
        `min_new_tokens`. The model's `generation_config` applies (repetition penalty, EOS ids, ...)."""

    @abstractmethod
    def first_token_scores(self, adapter, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, V) the method's scores for the first new token, before any logits processor: score mode
        (POPE's yes vs no) compares two of them, so the method's contrast decides there too."""


__all__ = ["DecodingMethod", "MethodConfig", "SamplingConfig"]
