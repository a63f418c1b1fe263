"""Hallucinated mirrors of real captions written by a causal LM (HACL's approach: Jiang et al.,
"Hallucination Augmented Contrastive Learning for Multimodal Large Language Model", CVPR 2024, had
GPT-4 write its hallucinated captions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .base import Hallucination, check_kinds

LLM_INSTRUCTIONS = {
    "object": "replaces one object with a different object that often appears together with it",
    "attribute": "gives one object a wrong colour, size or material",
    "count": "states a wrong number for one kind of object",
    "relation": "states a wrong spatial relation between two objects",
    "added": "also mentions one extra object that is not in the image but often appears with the ones it mentions",
}
LLM_PROMPT = ("Rewrite the image caption so that it {instruction}. Keep its length, style and everything else "
              "unchanged.\nCaption: {caption}\nRewritten caption:")


class LLMHallucinator:
    """Hallucinated mirrors written by a causal LM (HACL had GPT-4 write them).

    `LLMHallucinator("Qwen/Qwen2.5-7B-Instruct")` or `LLMHallucinator(model, tokenizer)`; calling
    it with captions returns, per caption, one `Hallucination` per kind (source "llm"; `changed` is
    left empty, since only the model knows what it changed). The prompt goes through the tokenizer's
    chat template when it has one. Greedy decoding by default, batched with left padding.
    """

    def __init__(self, model, tokenizer=None, max_new_tokens: int = 80, batch_size: int = 8,
                 prompt: str = LLM_PROMPT, instructions: Mapping[str, str] | None = None, device: str | None = None,
                 **generate_kwargs: Any) -> None:
        if isinstance(model, str):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            model = AutoModelForCausalLM.from_pretrained(model)
        if tokenizer is None:
            raise ValueError("pass the model's tokenizer along with a model object")
        if device is not None:
            model.to(device)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.prompt = prompt
        self.instructions = dict(LLM_INSTRUCTIONS if instructions is None else instructions)
        self.generate_kwargs = {"do_sample": False, **generate_kwargs}

    def _prompt_text(self, caption: str, kind: str) -> str:
        text = self.prompt.format(instruction=self.instructions[kind], caption=caption)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        return text

    def __call__(self, captions: Sequence[str] | str, kinds: Iterable[str] | None = None) -> list[list[Hallucination]]:
        import torch

        single = isinstance(captions, str)
        captions = [captions] if single else list(captions)
        kinds = check_kinds(kinds)
        jobs = [(i, k) for i in range(len(captions)) for k in kinds]
        tok = self.tokenizer
        tok.padding_side = "left"  # generation appends on the right
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        texts: list[str] = []
        device = next(self.model.parameters()).device
        for s in range(0, len(jobs), self.batch_size):
            chunk = jobs[s:s + self.batch_size]
            prompts = [self._prompt_text(captions[i], k) for i, k in chunk]
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token
            enc = tok(prompts, return_tensors="pt", padding=True).to(device)
            with torch.no_grad():
                out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, pad_token_id=pad_id,
                                          **self.generate_kwargs)
            new = out[:, enc["input_ids"].shape[1]:]
            texts += [t.strip().split("\n")[0].strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
        results: list[list[Hallucination]] = [[] for _ in captions]
        for (i, kind), text in zip(jobs, texts):
            results[i].append(Hallucination(text, kind, captions[i], source="llm"))
        return results[0] if single else results


__all__ = ["LLM_INSTRUCTIONS", "LLM_PROMPT", "LLMHallucinator"]
