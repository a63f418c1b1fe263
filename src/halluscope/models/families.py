"""What the adapter needs to know about a VLM family beyond its processor and config: how a prompt is
written when the checkpoint has no chat template, and whether a batch can mix prompts with and without an
image (M3ID's image-free branch). Keyed by `config.model_type`; a family not listed gets the defaults, which
fit any processor that expands an image placeholder in a chat-templated prompt (the LLaVA and Qwen-VL
families, Idefics3, Gemma 3, Mllama, ...).

The tested families, their methods and known limits are in docs/models.md; `tests/test_families.py`
runs every method on a tiny random model of each.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """How one family's prompts are built.

    name: the family's name in messages. text_only_rows: the processor can build, in one batch with images,
    a prompt that holds no image (M3ID's default unconditioned branch needs it). image_in_text: without a chat
    template, the prompt starts with the processor's image placeholder (PaliGemma), or the processor adds the
    image tokens itself (InstructBLIP: its query tokens go before every prompt)."""

    name: str
    text_only_rows: bool = True
    image_in_text: bool = True


FAMILIES: dict[str, Family] = {
    "llava": Family("LLaVA-1.5"),
    "llava_next": Family("LLaVA-NeXT"),
    "llava_onevision": Family("LLaVA-OneVision"),
    "qwen2_vl": Family("Qwen2-VL"),
    "qwen2_5_vl": Family("Qwen2.5-VL"),
    "idefics3": Family("Idefics3"),
    "smolvlm": Family("SmolVLM"),
    "gemma3": Family("Gemma 3"),
    "mllama": Family("Mllama"),
    # PaliGemma's processor requires an image for every prompt (it puts BOS after the last image token).
    "paligemma": Family("PaliGemma", text_only_rows=False),
    # InstructBLIP's processor prepends the query tokens to every prompt of a call with images.
    "instructblip": Family("InstructBLIP", text_only_rows=False, image_in_text=False),
    "blip-2": Family("BLIP-2", text_only_rows=False, image_in_text=False),
}


def family_of(config) -> Family:
    """The family of a model config (its `model_type`), or the defaults under that name."""
    model_type = getattr(config, "model_type", "") or ""
    return FAMILIES.get(model_type, Family(model_type or "this model"))


__all__ = ["FAMILIES", "Family", "family_of"]
