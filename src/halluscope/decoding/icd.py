"""ICD: instruction contrastive decoding.

Xintong Wang, Jingheng Pan, Liang Ding, Chris Biemann. "Mitigating Hallucinations in Large
Vision-Language Models with Instruction Contrastive Decoding". Findings of ACL 2024.
arXiv:2403.18715. Code: github.com/p1k0pan/ICD.

    s = (1 + alpha) * logit(y | v, x) - alpha * logit(y | v, d + x),   -inf where p(y | v, x) < beta * max p

d is a disturbance instruction, a role prompt that makes the model look vaguely; the contrast
removes what the model would say anyway under that confusion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .contrast import ContrastConfig, contrast_scores
from .engine import Branch, BranchMethod

# The paper's disturbance that its results use (one of the five role prompts it compares;
# the code spells it "objects detector").
DISTURBANCE = "You are a confused object detector to provide a fuzzy overview or impression of the image."


@dataclass
class ICDConfig(ContrastConfig):
    """Instruction contrastive decoding (Wang et al., Findings of ACL 2024): contrast the logits
    for the instruction with those for the instruction prefixed by a disturbing role prompt.

    Defaults: alpha = 1, beta = 0.1 and the "confused object detector" disturbance, as in the code's runs
    (`--cd_alpha 1 --cd_beta 0.1`). For LLaVA the code puts the disturbance in the system prompt;
    here it prefixes the user instruction, which works with any chat template."""

    _paper = {
        "title": "Mitigating Hallucinations in Large Vision-Language Models with Instruction Contrastive Decoding",
        "authors": "Xintong Wang, Jingheng Pan, Liang Ding, Chris Biemann",
        "venue": "Findings of ACL 2024",
        "url": "https://arxiv.org/abs/2403.18715",
    }

    disturbance: str = field(default=DISTURBANCE, metadata={"help": "role prompt put before the instruction"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.disturbance, str) or not self.disturbance.strip():
            self.fail("disturbance", f"use a non-empty role prompt, e.g. the paper's {DISTURBANCE!r}")


class ICD(BranchMethod):
    """Branches: the instruction, and the disturbance + instruction, both on the clean image."""

    name = "icd"
    config_cls = ICDConfig

    def branches(self, adapter, images, prompts):
        disturbed = [f"{self.config.disturbance} {p}" for p in prompts]
        return [Branch(prompts, images), Branch(disturbed, images)]

    def scores(self, logits: torch.Tensor, step: int, samples: torch.Tensor | None = None) -> torch.Tensor:
        return contrast_scores(logits[0], logits[1], self.config.alpha, self.config.beta)
