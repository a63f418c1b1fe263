"""Training inputs of any VLM from (image, prompt, response) triples, as its processor builds them at
inference: the generation batch that DPO, DDPO and HACL train on, and the caption tensors of HACL's
text side."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def prompt_text(processor, prompt: str) -> str:
    """The user turn with one image and `prompt`, up to where the assistant's answer starts."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def encode(processor, images: Sequence, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, torch.Tensor]:
    """Right-padded inputs of (image, prompt, response) triples with labels on the response only.

    The prompt goes through the processor exactly as at inference (chat template, image tokens);
    the response is tokenized on its own and ends with EOS. Tensors of the processor's that run
    along the tokens (Qwen2-VL's `mm_token_type_ids`) are carried over, 0 on the response.
    """
    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    try:
        enc = processor(images=list(images), text=[prompt_text(processor, p) for p in prompts], padding=True,
                        return_tensors="pt")
    finally:
        tok.padding_side = side
    width_in = enc["input_ids"].shape[1]
    per_token = [k for k, v in enc.items() if k not in ("input_ids", "attention_mask")
                 and torch.is_tensor(v) and v.shape[:2] == (len(prompts), width_in)]
    rows: dict[str, list[list[int]]] = {k: [] for k in ("input_ids", "labels", *per_token)}
    for i, response in enumerate(responses):
        keep = enc["attention_mask"][i].bool()
        prompt_ids = enc["input_ids"][i][keep].tolist()
        answer = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows["input_ids"].append(prompt_ids + answer)
        rows["labels"].append([-100] * len(prompt_ids) + answer)
        for k in per_token:
            rows[k].append(enc[k][i][keep].tolist() + [0] * len(answer))
    lengths = [len(r) for r in rows["input_ids"]]
    width = max(lengths)
    pads = {"input_ids": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id, "labels": -100}
    out = {k: torch.tensor([r + [pads.get(k, 0)] * (width - len(r)) for r in v]) for k, v in rows.items()}
    out["attention_mask"] = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    for k, v in enc.items():
        if k not in out and k != "attention_mask" and k not in per_token:
            out[k] = v
    return out


def caption_tensors(tokenizer, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, lengths) of captions as the text side of HACL sees them: the tokenizer's own special
    tokens (BOS where it adds one), the caption, EOS; right-padded."""
    rows = [tokenizer(c)["input_ids"] + [tokenizer.eos_token_id] for c in captions]
    width = max(map(len, rows)) if rows else 1
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows]).reshape(len(rows), width), torch.tensor(
        [len(r) for r in rows], dtype=torch.long)


__all__ = ["caption_tensors", "encode", "prompt_text"]
