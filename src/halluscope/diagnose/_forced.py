"""Teacher-forced passes: a caption fed to the VLM after its prompt, and what the model thought at each of
its tokens (next-token logits, the share of attention on the image, the last token's hidden state).

The caption's tokens are the tokenizer's own (with character offsets), appended to the prompt's model
inputs as the processor builds them; image-token positions come from the input ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..images import ImageLike


@dataclass
class Forced:
    """One teacher-forced caption. `logits[j]` are the logits that predicted caption token `ids[j]`;
    `image_share[j]` the mean over layers and heads of the attention on image tokens at that step (None
    unless asked for); `last_hidden` the final layer's state at the last token."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    logits: torch.Tensor
    image_share: torch.Tensor | None = None
    last_hidden: torch.Tensor | None = None
    n_image_tokens: int = 0

    def token_at(self, char: int) -> int | None:
        """The index of the caption token covering character `char` (or the first one starting after it)."""
        for j, (s, e) in enumerate(self.offsets):
            if e > s and (s <= char < e or s > char):
                return j
        return None


def model_inputs(adapter, image: ImageLike | None, prompt: str, with_image: bool = True) -> dict[str, torch.Tensor]:
    """The processor's tensors of one prompt, with its image or as a text-only prompt."""
    if with_image:
        batch = adapter.process([adapter.prompt_text(prompt)], [[image]])
    else:
        batch = adapter.process([adapter.prompt_text(prompt, image=False)], [[]])
    return adapter.to_device(batch)


def append_tokens(batch: dict[str, torch.Tensor], ids: list[int]) -> dict[str, torch.Tensor]:
    """`batch` (one row) with `ids` appended: attention 1, any other per-token input (token types) 0."""
    n = batch["input_ids"].shape[1]
    extra = torch.tensor([ids], dtype=batch["input_ids"].dtype, device=batch["input_ids"].device)
    out = {}
    for k, v in batch.items():
        if k == "input_ids":
            out[k] = torch.cat([v, extra], 1)
        elif isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape == (1, n):
            fill = torch.ones_like(extra) if k == "attention_mask" else torch.zeros_like(extra)
            out[k] = torch.cat([v, fill.to(v.dtype)], 1)
        else:
            out[k] = v
    return out


def caption_tokens(tokenizer, caption: str) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(caption, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


@torch.no_grad()
def forced_pass(adapter, image: ImageLike | None, prompt: str, caption: str, *, with_image: bool = True,
                attentions: bool = False, hidden: bool = False, pixels: Any = None,
                ids: list[int] | None = None) -> Forced:
    """Feed `caption` after `prompt` (with `image`, or none with `with_image=False`); `pixels` replaces the
    processed image tensor (a noised image); `ids` feeds these token ids instead of the caption's (offsets
    then index tokens, one character each)."""
    if ids is None:
        ids, offsets = caption_tokens(adapter.tokenizer, caption)
    else:
        offsets = [(j, j + 1) for j in range(len(ids))]
    batch = model_inputs(adapter, image, prompt, with_image)
    if pixels is not None:
        batch["pixel_values"] = pixels
    n0 = batch["input_ids"].shape[1]
    batch = append_tokens(batch, ids)
    out = adapter.model(**batch, use_cache=False, output_attentions=attentions, output_hidden_states=hidden)
    logits = out.logits[0, n0 - 1 : n0 - 1 + len(ids)].float().cpu()
    share = None
    mask = adapter.image_token_mask(batch["input_ids"])[0]
    if attentions:
        if not out.attentions or out.attentions[0] is None:
            raise RuntimeError("the model returned no attention weights; load it with attn_implementation='eager'")
        att = torch.stack([a[0].float() for a in out.attentions])  # (layers, heads, L, L)
        on_image = att[..., mask.to(att.device)].sum(-1).mean((0, 1)).cpu()  # (L,)
        share = on_image[n0 - 1 : n0 - 1 + len(ids)]
    last = out.hidden_states[-1][0, -1].float().cpu() if hidden else None
    return Forced(ids, offsets, logits, share, last, int(mask.sum()))


def token_ranks(adapter, image: ImageLike | None, prompt: str, ids: list[int], with_image: bool = True
                ) -> list[int]:
    """The rank (0: the argmax) of each of `ids` under the VLM given the prompt and the ids before it."""
    f = forced_pass(adapter, image, prompt, "", with_image=with_image, ids=ids)
    chosen = f.logits.gather(-1, torch.tensor(ids)[:, None])
    return (f.logits > chosen).sum(-1).tolist()


@torch.no_grad()
def last_state(adapter, image: ImageLike | None, text: str, with_image: bool) -> torch.Tensor:
    """The final layer's state at the last token of a prompt turn holding `text` (and the image)."""
    batch = model_inputs(adapter, image, text, with_image)
    out = adapter.model(**batch, use_cache=False, output_hidden_states=True)
    return out.hidden_states[-1][0, -1].float().cpu()


__all__ = ["Forced", "append_tokens", "caption_tokens", "forced_pass", "last_state", "model_inputs",
           "token_ranks"]
