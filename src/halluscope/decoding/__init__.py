"""Decoding methods, one config dataclass + one implementation each, in one registry.

    adapter.generate(images, prompts, method="vcd", alpha=1.0, sample=True, seed=0)
    halluscope eval --method vcd --method-args alpha=1,beta=0.1

`greedy` and `sample` go through transformers' `generate`. The contrastive methods (vcd, icd,
m3id, vdgd) run their branches stacked on the batch axis of one forward pass with one KV cache
(see `engine.py`), under greedy (default) or sampling (`sample=True`, `temperature`, `top_p`,
`top_k`, `seed`), with the logits processors and stopping criteria of the model's generation
config. Every method also gives its scores for the first new token, so POPE's score mode applies
the method's contrast to the yes/no decision. The contract of a method is `protocol.py`; `vti`
(in `halluscope.steering`) registers itself.
"""

from __future__ import annotations

import warnings
from typing import Any

from .adapter import VLMAdapter
from .contrast import ContrastConfig, contrast_scores, plausible
from .engine import Branch, BranchMethod, DecodeInputs, build_branches, decode, first_step_logits
from .icd import ICD, ICDConfig
from .m3id import M3ID, M3IDConfig, m3id_scores
from .plain import HFGenerate
from .protocol import DecodingMethod, MethodConfig, SamplingConfig
from .registry import METHODS, PLUGINS, get_method, method_help, register_method
from .vcd import VCD, VCDConfig, add_diffusion_noise, alphas_cumprod, vcd_scores
from .vdgd import VDGD, VDGDConfig, description_logprobs, vdgd_scores


def _sample_config(**args: Any) -> SamplingConfig:
    return SamplingConfig(sample=True, **args)


def _scores_first_token(name: str) -> bool:
    if name not in METHODS:
        raise ValueError(f"unknown decoding method {name!r}; registered methods: {sorted(METHODS)}")
    return True  # the protocol: every method gives first-token scores


# Old names: {name: (the object it gives now, what to use instead)}.
_DEPRECATED = {
    "GreedyConfig": (SamplingConfig, "SamplingConfig()"),
    "SampleConfig": (_sample_config, "SamplingConfig(sample=True, ...)"),
    "scores_first_token": (_scores_first_token, "nothing: every method gives first-token scores"),
}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        new, use = _DEPRECATED[name]
        warnings.warn(f"halluscope.decoding.{name} is deprecated; use {use}", DeprecationWarning, stacklevel=2)
        return new
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ICD",
    "M3ID",
    "METHODS",
    "PLUGINS",
    "VCD",
    "VDGD",
    "Branch",
    "BranchMethod",
    "ContrastConfig",
    "DecodeInputs",
    "DecodingMethod",
    "HFGenerate",
    "ICDConfig",
    "M3IDConfig",
    "MethodConfig",
    "SamplingConfig",
    "VCDConfig",
    "VDGDConfig",
    "VLMAdapter",
    "add_diffusion_noise",
    "alphas_cumprod",
    "build_branches",
    "contrast_scores",
    "decode",
    "description_logprobs",
    "first_step_logits",
    "get_method",
    "m3id_scores",
    "method_help",
    "plausible",
    "register_method",
    "vcd_scores",
    "vdgd_scores",
]
