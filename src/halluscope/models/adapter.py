"""One adapter over Hugging Face VLMs: inputs from images and prompts through the model's own
processor and chat template, forward, generation, yes/no scoring, and handles on the vision tower,
projector and decoder layers for methods that hook into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..images import ImageLike, load_image
from .parts import find_part

class VLMAdapter:
    """A Hugging Face VLM behind one interface.

    `generate(images, prompts, method="greedy", **method_args)` returns strings;
    `answer_yes_no(images, questions)` returns "yes"/"no" from one forward pass (the larger of the
    next-token probabilities of the yes and no tokens), or from generation with `mode="generate"`.
    """

    def __init__(self, model, processor, name: str, yes_no_suffix: str = "", max_new_tokens: int = 64) -> None:
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation appends on the right
        self.name = name
        self.yes_no_suffix = yes_no_suffix
        self.max_new_tokens = max_new_tokens
        self._yes_ids = self._first_token_ids(["yes", "Yes", "YES", " yes", " Yes"])
        self._no_ids = self._first_token_ids(["no", "No", "NO", " no", " No"])

    # ------------------------------------------------------------------ parts
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vision_tower(self) -> torch.nn.Module:
        return find_part(self.model, "vision_tower")

    @property
    def projector(self) -> torch.nn.Module:
        return find_part(self.model, "projector")

    @property
    def language_model(self) -> torch.nn.Module:
        return find_part(self.model, "language_model")

    @property
    def decoder_layers(self) -> torch.nn.ModuleList:
        return self.language_model.layers

    @property
    def image_token_id(self) -> int:
        cfg = self.model.config
        token_id = getattr(cfg, "image_token_id", None)
        return getattr(cfg, "image_token_index", None) if token_id is None else token_id

    def image_token_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Where the image tokens are, per sample, read from the ids (their number varies by model)."""
        return input_ids == self.image_token_id

    # ------------------------------------------------------------------ inputs
    def prompt_text(self, prompt: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def build_inputs(self, images: Sequence[ImageLike], prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image")
        batch = self.processor(
            images=[load_image(im) for im in images], text=[self.prompt_text(p) for p in prompts],
            padding=True, return_tensors="pt",
        )
        dtype = next(self.model.parameters()).dtype
        return {k: (v.to(self.device, dtype) if torch.is_floating_point(v) else v.to(self.device))
                for k, v in batch.items()}

    @torch.no_grad()
    def forward(self, images: Sequence[ImageLike], prompts: Sequence[str], **kwargs):
        return self.model(**self.build_inputs(images, prompts), **kwargs)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, images: Sequence[ImageLike], prompts: Sequence[str], method: str = "greedy",
                 max_new_tokens: int | None = None, **method_args: Any) -> list[str]:
        """Answers to `prompts` about `images` with a decoding method from `halluscope.decoding`
        (greedy, sample, vcd, icd, m3id, vdgd, ...), configured by `method_args`."""
        from ..decoding import get_method

        decoder = get_method(method, **method_args)
        inputs = self._decode_inputs(decoder, images, prompts)
        new_tokens = decoder.generate(self, inputs, max_new_tokens or self.max_new_tokens)
        return [t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def _decode_inputs(self, decoder, images: Sequence[ImageLike], prompts: Sequence[str]):
        from ..decoding import DecodeInputs

        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image")
        # Methods with branches build all of them in one processor call: skip the clean-only tensors.
        tensors = {} if getattr(decoder, "builds_own_inputs", False) else self.build_inputs(images, prompts)
        return DecodeInputs(tensors, images, prompts)

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
        from ..decoding import get_method

        decoder = get_method(method, **method_args)
        if not hasattr(decoder, "first_token_scores"):
            raise ValueError(f"method {method!r} gives no first-token scores; answer with mode='generate'")
        prompts = [q + self.yes_no_suffix for q in questions]
        scores = decoder.first_token_scores(self, self._decode_inputs(decoder, images, prompts)).float()
        logp = scores.log_softmax(-1)
        return torch.stack([logp[:, self._yes_ids].logsumexp(-1), logp[:, self._no_ids].logsumexp(-1)], -1)

    def answer_yes_no(self, images: Sequence[ImageLike], questions: Sequence[str], mode: str = "score",
                      method: str = "greedy", **method_args: Any) -> list[str]:
        """"yes"/"no" per question: from the first-step scores of `method` ("score"), or parsed
        from its generated text ("generate")."""
        if mode == "score":
            lp = self.yes_no_logprobs(images, questions, method=method, **method_args)
            return ["yes" if y >= n else "no" for y, n in lp.tolist()]
        if mode == "generate":
            from ..metrics import parse_yes_no

            texts = self.generate(images, [q + self.yes_no_suffix for q in questions], method=method,
                                  max_new_tokens=8, **method_args)
            return [parse_yes_no(t) for t in texts]
        raise ValueError(f"unknown yes/no mode {mode!r}; use 'score' or 'generate'")
