"""Plain decoding, greedy or sampling, through transformers' own `generate`: the reference the other
methods reduce to (VCD with alpha = 0, M3ID with lambda = 0)."""

from __future__ import annotations

import torch

from .engine import first_step_logits, generation_config
from .protocol import DecodingMethod, SamplingConfig


class HFGenerate(DecodingMethod):
    """Greedy or sampling through `model.generate` (KV cache, left padding, the model's generation config).

    Registered twice: "greedy" is `SamplingConfig()`, "sample" is `SamplingConfig(sample=True)`
    (temperature 1, no truncation, as in VCD's sampling baseline)."""

    config_cls = SamplingConfig

    def generate(self, adapter, inputs: dict[str, torch.Tensor], max_new_tokens: int,
                 min_new_tokens: int = 0) -> torch.Tensor:
        if self.config.sample and self.config.seed is not None:
            torch.manual_seed(self.config.seed)
        extra = {"min_new_tokens": min_new_tokens} if min_new_tokens else {}
        out = adapter.model.generate(**inputs, generation_config=generation_config(
            adapter, max_new_tokens=max_new_tokens, num_beams=1, pad_token_id=adapter.tokenizer.pad_token_id,
            **self.config.generate_kwargs(), **extra))
        return out[:, inputs["input_ids"].shape[1]:]

    def first_token_scores(self, adapter, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's own first-step logits (temperature and truncation do not change which of
        two tokens is likelier, so sampling scores like greedy)."""
        return first_step_logits(adapter, inputs, 1)[0]


__all__ = ["HFGenerate"]
