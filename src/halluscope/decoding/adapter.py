"""The adapter `halluscope.load_model` returns: the model's inputs, forward pass and parts (`VLMBase`, in
`halluscope.models`) plus generation and yes/no answers under any registered decoding method.

    adapter.generate(images, prompts, method="vcd", alpha=1.0)
    adapter.answer_yes_no(images, questions, mode="score", method="m3id")

It lives in decoding, not in models, because it dispatches on method names: models sits below
decoding and knows no method, as transformers' models get `generate` from its generation package.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..images import ImageLike
from ..metrics import parse_yes_no
from ..models.adapter import VLMBase
from .engine import DecodeInputs
from .protocol import DecodingMethod
from .registry import get_method

YES_WORDS = ["yes", "Yes", "YES", " yes", " Yes"]
NO_WORDS = ["no", "No", "NO", " no", " No"]
# A yes/no answer by generation is a word, maybe a short sentence ("Yes, there is."), then EOS; the built-in
# model's relation and count answers say places first ("one three , two one , below , no": 10 words; a count of
# five: 18).
YES_NO_MAX_NEW_TOKENS = 20


class VLMAdapter(VLMBase):
    """A Hugging Face VLM behind one interface.

    `generate(images, prompts, method="greedy", **method_args)` returns strings;
    `answer_yes_no(images, questions)` returns "yes"/"no" from one forward pass (the larger of the
    next-token probabilities of the yes and no tokens), or from generation with `mode="generate"`.
    """

    def __init__(self, model, processor, name: str, yes_no_suffix: str = "", max_new_tokens: int = 64) -> None:
        super().__init__(model, processor, name)
        self.yes_no_suffix = yes_no_suffix
        self.max_new_tokens = max_new_tokens
        self._yes_ids = self._first_token_ids(YES_WORDS)
        self._no_ids = self._first_token_ids(NO_WORDS)

    # ------------------------------------------------------------------ generation
    def decode_inputs(self, decoder: DecodingMethod, images: Sequence[ImageLike],
                      prompts: Sequence[str]) -> DecodeInputs:
        """What `decoder.generate` and `decoder.first_token_scores` take: the clean prompts' model tensors
        (none for a method that builds its own inputs) with the images and prompts they came from."""
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image")
        tensors = {} if decoder.builds_own_inputs else self.build_inputs(images, prompts)
        return DecodeInputs(tensors, images, prompts)

    def _decode_inputs(self, decoder: DecodingMethod, images: Sequence[ImageLike],
                       prompts: Sequence[str]) -> DecodeInputs:
        warnings.warn("adapter._decode_inputs is deprecated: use adapter.decode_inputs", DeprecationWarning,
                      stacklevel=2)
        return self.decode_inputs(decoder, images, prompts)

    @torch.no_grad()
    def generate(self, images: Sequence[ImageLike], prompts: Sequence[str], method: str = "greedy",
                 max_new_tokens: int | None = None, **method_args: Any) -> list[str]:
        """Answers to `prompts` about `images` with a decoding method from `halluscope.decoding.METHODS`
        (greedy, sample, vcd, icd, m3id, vdgd, vti, ...), configured by `method_args`."""
        decoder = get_method(method, **method_args)
        inputs = self.decode_inputs(decoder, images, prompts)
        new_tokens = decoder.generate(self, inputs, max_new_tokens or self.max_new_tokens)
        return [t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    # ------------------------------------------------------------------ yes / no
    def _first_token_ids(self, words: list[str]) -> list[int]:
        ids = set()
        for w in words:
            enc = self.tokenizer(w, add_special_tokens=False)["input_ids"]
            if enc and enc[0] != self.tokenizer.unk_token_id:
                ids.add(enc[0])
        return sorted(ids)

    @torch.no_grad()
    def yes_no_logprobs(self, images: Sequence[ImageLike], questions: Sequence[str], method: str = "greedy",
                        **method_args: Any) -> torch.Tensor:
        """(B, 2) next-token log-probabilities of answering yes and no (each summed over its
        spellings) under a decoding method's first-step scores: the model's own for greedy, the
        contrast for VCD and the others (-inf where the method excludes the token)."""
        decoder = get_method(method, **method_args)
        prompts = [q + self.yes_no_suffix for q in questions]
        scores = decoder.first_token_scores(self, self.decode_inputs(decoder, images, prompts)).float()
        logp = scores.log_softmax(-1)
        return torch.stack([logp[:, self._yes_ids].logsumexp(-1), logp[:, self._no_ids].logsumexp(-1)], -1)

    def yes_no_texts(self, images: Sequence[ImageLike], questions: Sequence[str], method: str = "greedy",
                     **method_args: Any) -> list[str]:
        """The generated answers to yes/no questions (a few tokens each), for a parser to read."""
        return self.generate(images, [q + self.yes_no_suffix for q in questions], method=method,
                             max_new_tokens=YES_NO_MAX_NEW_TOKENS, **method_args)

    def answer_yes_no(self, images: Sequence[ImageLike], questions: Sequence[str], mode: str = "score",
                      method: str = "greedy", **method_args: Any) -> list[str]:
        """"yes"/"no" per question: from the first-step scores of `method` ("score"), or parsed
        from its generated text ("generate")."""
        if mode == "score":
            lp = self.yes_no_logprobs(images, questions, method=method, **method_args)
            return ["yes" if y >= n else "no" for y, n in lp.tolist()]
        if mode == "generate":
            return [parse_yes_no(t) for t in self.yes_no_texts(images, questions, method=method, **method_args)]
        raise ValueError(f"unknown yes/no mode {mode!r}; use 'score' or 'generate'")


__all__ = ["NO_WORDS", "YES_NO_MAX_NEW_TOKENS", "YES_WORDS", "VLMAdapter"]
