"""VDGD: visual description grounded decoding.

Sreyan Ghosh, Chandra Kiran Reddy Evuru, Sonal Kumar, Utkarsh Tyagi, Oriol Nieto, Zeyu Jin,
Dinesh Manocha. "Visual Description Grounded Decoding Reduces Hallucinations and Improves
Reasoning in Large Vision-Language Models". ICLR 2025. arXiv:2405.15683. Code: github.com/Sreyan88/VDGD.

1. Describe the image (greedy), keeping the next-token distributions q_1..q_J of the description.
2. Answer with the description in front of the instruction; at each step keep the plausible
   candidates (clean probability >= beta * max) and score candidate k by its closeness to the
   description, -min_j KL(e_k || q_j) = -min_j (-log q_j(k)) = log max_j q_j(k).

The reference code computes that KL with `F.kl_div(log q_j, e_k, reduction="batchmean")` on 1-D
tensors, which divides by the vocabulary size V: its scores are log max_j q_j(k) / V, so
softmax over them is nearly uniform among the candidates and sampling ignores the description.
Here the paper's formula is the default; `vdgd_scores(..., vocab_mean=True)` gives the code's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .contrast import plausible
from .engine import Branch, BranchMethod, build_branches, decode, first_step_logits, source
from .protocol import SamplingConfig

# The reference code's description request (`desc_prompt`); {inst} is the task's instruction.
DESCRIPTION_PROMPT = (
    "I have been given an image to complete the task described as: {inst}.\n\nTo help me complete the task, "
    "describe the given image in detail. In case of real-world scenes, please include all foreground and "
    "background objects in the description, their properties (like color, shape, etc.), their relations with "
    "other objects, their count, and all other components in the image. In case of non-real-world scenes, like "
    "charts, graphs, tables, etc., please describe the table, mention all numbers (if any), mention the written "
    "text, and all other details.")
PREFIX_TEMPLATE = "The input image is described as follows: {description}\n\n{prompt}"


def description_logprobs(step_logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, V) log max_j q_j(k) over a description's steps: step_logits (B, J, V), valid (B, J)
    (False after the description's EOS)."""
    lp = step_logits.float().log_softmax(-1).masked_fill(~valid[..., None], -math.inf)
    return lp.amax(1)


def vdgd_scores(logits: torch.Tensor, desc_logprobs: torch.Tensor, beta: float = 0.1,
                vocab_mean: bool = False) -> torch.Tensor:
    """VDGD's next-token scores: -min_j KL(e_k || q_j) = log max_j q_j(k) for the plausible
    candidates k of `logits` (B, V), -inf for the others. `vocab_mean=True` divides by V as the
    reference code's `batchmean` KL does (near-uniform sampling among the candidates)."""
    score = desc_logprobs / desc_logprobs.shape[-1] if vocab_mean else desc_logprobs
    return score.masked_fill(~plausible(logits.float(), beta), -math.inf)


@dataclass
class Description:
    texts: list[str]           # one description per sample
    logprobs: torch.Tensor     # (B, V) log max_j q_j(k)


@dataclass
class VDGDConfig(SamplingConfig):
    """Visual description grounded decoding (Ghosh et al., ICLR 2025): describe the image first,
    then prefer the plausible next tokens closest (in KL) to the description's token distributions.

    Defaults: the code's plausibility cutoff 0.1 and description prompt, greedy descriptions of up to
    1024 tokens (`max_new_tokens=1024` in the code), the min-over-steps KL (`--kl_reduction min`)."""

    _paper = {
        "title": "Visual Description Grounded Decoding Reduces Hallucinations and Improves Reasoning in Large "
                 "Vision-Language Models",
        "authors": "Sreyan Ghosh, Chandra Kiran Reddy Evuru, Sonal Kumar, Utkarsh Tyagi, Oriol Nieto, Zeyu Jin, "
                   "Dinesh Manocha",
        "venue": "ICLR 2025",
        "url": "https://arxiv.org/abs/2405.15683",
    }

    beta: float = field(default=0.1, metadata={
        "help": "plausibility: candidates have clean probability >= beta * max (1 keeps only the argmax)"})
    description_prompt: str = field(default=DESCRIPTION_PROMPT, metadata={
        "help": "request for the description; {inst} is replaced by the instruction"})
    description_max_new_tokens: int = field(default=1024, metadata={"help": "longest description in tokens"})
    prefix_template: str = field(default=PREFIX_TEMPLATE, metadata={
        "help": "the answer's prompt, with {description} and {prompt}"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_range("beta", 0, 1, "the code uses 0.1; 1 keeps only the clean argmax")
        if not isinstance(self.description_max_new_tokens, int) or self.description_max_new_tokens < 1:
            self.fail("description_max_new_tokens", "use a positive integer (the code allows 1024)")
        missing = [k for k in ("{description}", "{prompt}") if k not in self.prefix_template]
        if missing:
            self.fail("prefix_template", f"it lacks {missing}; e.g. {PREFIX_TEMPLATE!r}")


class VDGD(BranchMethod):
    """Describe, then decode one branch (image + description + instruction) against the description."""

    name = "vdgd"
    config_cls = VDGDConfig

    @torch.no_grad()
    def describe(self, adapter, images, prompts) -> Description:
        """Greedy descriptions, and the max over their steps of each token's log-probability: the
        `description_logprobs` of the steps, kept as a running max (all steps' (B, V) logits of a
        1024-token description would not fit in memory)."""
        requests = [self.config.description_prompt.replace("{inst}", p) for p in prompts]
        inputs = build_branches(adapter, [Branch(requests, images)])
        state: dict[str, torch.Tensor] = {}

        def track(logits: torch.Tensor, step: int, samples: torch.Tensor) -> torch.Tensor:
            # Every step of a description counts, its EOS step included (as in the code's logits); the
            # engine passes only the samples still describing, so a finished one's table stays as it was.
            lp = logits[0].log_softmax(-1)
            if not state:
                state["best"] = lp.new_full((len(prompts), lp.shape[-1]), -math.inf)
            state["best"][samples] = torch.maximum(state["best"][samples], lp)
            return logits[0]  # greedy on the model's own logits, as plain greedy decoding

        tokens = decode(adapter, inputs, 1, track, self.config.description_max_new_tokens).tokens
        texts = [t.strip() for t in adapter.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
        return Description(texts, state["best"])

    def answer_branch(self, images, prompts, description: Description) -> Branch:
        template = self.config.prefix_template
        prefixed = [template.replace("{description}", d).replace("{prompt}", p)
                    for d, p in zip(description.texts, prompts)]
        return Branch(prefixed, images)

    def answer(self, adapter, images, prompts, description: Description, max_new_tokens: int,
               min_new_tokens: int = 0) -> torch.Tensor:
        """The answer's new tokens, given the description."""
        inputs = build_branches(adapter, [self.answer_branch(images, prompts, description)])
        return decode(adapter, inputs, 1, self._scorer(description), max_new_tokens, self.config,
                      min_new_tokens=min_new_tokens).tokens

    def _scorer(self, description: Description):
        def scores(logits: torch.Tensor, step: int, samples: torch.Tensor | None) -> torch.Tensor:
            table = description.logprobs if samples is None else description.logprobs[samples]
            return vdgd_scores(logits[0], table, self.config.beta)

        return scores

    def generate(self, adapter, inputs, max_new_tokens: int, min_new_tokens: int = 0) -> torch.Tensor:
        images, prompts = source(inputs, self.name)
        description = self.describe(adapter, images, prompts)
        return self.answer(adapter, images, prompts, description, max_new_tokens, min_new_tokens)

    def first_token_scores(self, adapter, inputs) -> torch.Tensor:
        images, prompts = source(inputs, self.name)
        description = self.describe(adapter, images, prompts)
        stacked = build_branches(adapter, [self.answer_branch(images, prompts, description)])
        return self._scorer(description)(first_step_logits(adapter, stacked, 1), 0, None)
