"""The contrast that VCD and ICD share: clean logits against those of a distorted input, within the
clean logits' plausibility set.

    s = (1 + alpha) * l_clean - alpha * l_contrast,   -inf where p_clean < beta * max p_clean
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .protocol import SamplingConfig


def plausible(logits_clean: torch.Tensor, beta: float) -> torch.Tensor:
    """The adaptive plausibility constraint (Li et al., 2023; VCD eq. 4): True where the clean
    probability is at least beta times the largest one. In logit space, as VCD's code does it:
    l_k >= log(beta) + max_j l_j (the softmax normaliser cancels)."""
    if beta <= 0:
        return torch.ones_like(logits_clean, dtype=torch.bool)
    return logits_clean >= math.log(beta) + logits_clean.max(-1, keepdim=True).values


def contrast_scores(logits_clean: torch.Tensor, logits_contrast: torch.Tensor, alpha: float,
                    beta: float) -> torch.Tensor:
    """(1 + alpha) * clean - alpha * contrast, -inf outside the plausibility set of the clean logits."""
    # Written as clean + alpha * (clean - contrast): fewer passes over the vocabulary at every step, and
    # exactly `clean` when alpha = 0.
    diff = torch.add(logits_clean, logits_clean - logits_contrast, alpha=alpha) if alpha else logits_clean.clone()
    return diff.masked_fill_(~plausible(logits_clean, beta), -math.inf)


@dataclass
class ContrastConfig(SamplingConfig):
    """The contrast strength and the plausibility cut-off of VCD and ICD (both papers: 1 and 0.1)."""

    alpha: float = field(default=1.0, metadata={"help": "contrast strength; 0 gives the plain model's scores"})
    beta: float = field(default=0.1, metadata={
        "help": "plausibility: keep tokens with clean probability >= beta * max (0 keeps all, 1 only the argmax)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_range("alpha", 0, math.inf, "use 0 (no contrast) or more; the paper uses 1")
        self.check_range("beta", 0, 1, "the paper uses 0.1; 1 keeps only the clean argmax")


__all__ = ["ContrastConfig", "contrast_scores", "plausible"]
