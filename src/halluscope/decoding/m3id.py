"""M3ID: multi-modal mutual-information decoding.

Alessandro Favero, Luca Zancato, Matthew Trager, Siddharth Choudhary, Pramuditha Perera,
Alessandro Achille, Ashwin Swaminathan, Stefano Soatto. "Multi-Modal Hallucination Control by
Visual Information Grounding". CVPR 2024. arXiv:2403.14003.

With l_c = log p(y | image, x, y<t) and l_u = log p(y | x, y<t) (the same prompt without the image):

    l*_t = l_c + (1 - gamma_t) / gamma_t * (l_c - l_u),   gamma_t = exp(-lambda * t)

i.e. p* ∝ p_c^(1/gamma_t) / p_u^((1-gamma_t)/gamma_t): tokens the image makes likelier than the
language prior alone are amplified, more and more as the answer grows (the paper shows the
image's influence fading with t). t counts the generated tokens from 1.

The scores are computed on the logits, not the log-probabilities: the two differ by a constant per
row, which p* (softmax, argmax, top-k, top-p) does not see. On logits, lambda = 0 gives exactly the
model's own scores, so the logits processors of the model's generation config (a repetition penalty
scales positive and negative scores differently) act as they do under plain greedy decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from PIL import Image

from ..images import load_image
from .engine import Branch, BranchMethod
from .protocol import SamplingConfig

NO_IMAGE = ("drop", "black")


def m3id_weight(t: int, lam: float = 0.02) -> float:
    """(1 - gamma_t) / gamma_t with gamma_t = exp(-lam * t)."""
    return math.expm1(lam * t)  # (1 - e^{-x}) / e^{-x} = e^x - 1


def m3id_scores(logits_cond: torch.Tensor, logits_uncond: torch.Tensor, t: int, lam: float = 0.02) -> torch.Tensor:
    """M3ID's next-token scores at step t (1 for the first new token): l_c + w_t (l_c - l_u) on the logits,
    which softmax turns into p* (see the module docstring); exactly `logits_cond` when lam = 0."""
    lc, lu = logits_cond.float(), logits_uncond.float()
    weight = m3id_weight(t, lam)
    return torch.add(lc, lc - lu, alpha=weight) if weight else lc.clone()


@dataclass
class M3IDConfig(SamplingConfig):
    """Multi-modal mutual-information decoding (Favero et al., CVPR 2024): amplify the image's
    pointwise mutual information with the next token, increasingly with the token's position.

    Default: lambda = 0.02 (gamma_t = exp(-0.02 t)), the paper's."""

    _paper = {
        "title": "Multi-Modal Hallucination Control by Visual Information Grounding",
        "authors": "Alessandro Favero, Luca Zancato, Matthew Trager, Siddharth Choudhary, Pramuditha Perera, "
                   "Alessandro Achille, Ashwin Swaminathan, Stefano Soatto",
        "venue": "CVPR 2024",
        "url": "https://arxiv.org/abs/2403.14003",
    }

    lam: float = field(default=0.02, metadata={
        "help": "lambda of gamma_t = exp(-lambda t); 0 gives the plain model, larger amplifies sooner"})
    no_image: str = field(default="drop", metadata={
        "help": "the unconditioned branch: 'drop' the image from the prompt, or a 'black' image for models "
                "that need one"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_range("lam", 0, 1, "the paper uses 0.02; 0 turns the correction off")
        if self.no_image not in NO_IMAGE:
            self.fail("no_image", f"use one of {NO_IMAGE}; 'black' is for models whose prompts must hold an image")


class M3ID(BranchMethod):
    """Branches: the prompt with the image, and the prompt without it (or with a black image)."""

    name = "m3id"
    config_cls = M3IDConfig

    def branches(self, adapter, images, prompts):
        if self.config.no_image == "drop":
            family = adapter.family
            if not family.text_only_rows:
                raise ValueError(
                    f"M3ID with no_image='drop' needs the prompt without its image, but {family.name}'s processor "
                    "puts image tokens in every prompt; use no_image='black' (the prompt on a black image)")
            return [Branch(prompts, images), Branch(prompts, None)]

        black = [Image.new("RGB", load_image(im).size) for im in images]
        return [Branch(prompts, images), Branch(prompts, black)]

    def scores(self, logits: torch.Tensor, step: int, samples: torch.Tensor | None = None) -> torch.Tensor:
        return m3id_scores(logits[0], logits[1], step + 1, self.config.lam)
