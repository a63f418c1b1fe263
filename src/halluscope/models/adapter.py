"""One interface over Hugging Face VLMs: inputs from images and prompts through the model's own
processor and chat template, the forward pass, and handles on the vision tower, projector and decoder
layers for methods that hook into them.

`VLMBase` is everything but decoding. The adapter that `halluscope.load_model` returns,
`halluscope.decoding.VLMAdapter`, extends it with `generate`, `yes_no_logprobs` and `answer_yes_no`
under any decoding method: that part dispatches on method names, so it lives in the decoding layer.
"""

from __future__ import annotations

import hashlib
import importlib
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..images import ImageLike, load_image
from .families import Family, family_of
from .parts import find_part


class VLMBase:
    """A Hugging Face VLM and its processor: inputs, forward, parts."""

    def __init__(self, model, processor, name: str) -> None:
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation appends on the right
        self.name = name
        self.load_args: dict[str, Any] = {}  # how `halluscope.load_model` loaded it (dtype, device, options)

    def fingerprint(self) -> str | None:
        """A short hash of some of the weights (the first 4,096 values of the first and last three tensors): what
        tells a model retrained into the same folder from the one before it. None where the weights cannot be read
        (offloaded to disk)."""
        params = list(self.model.parameters())
        digest = hashlib.sha1()
        try:
            for p in params[:3] + params[-3:]:
                digest.update(p.detach().flatten()[:4096].float().cpu().numpy().tobytes())
        except (NotImplementedError, RuntimeError):  # meta tensors
            return None
        return digest.hexdigest()[:16]

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
    def family(self) -> Family:
        """How this family's prompts are built (`halluscope.models.families`)."""
        return family_of(self.model.config)

    @property
    def image_token_id(self) -> int:
        cfg = self.model.config
        token_id = getattr(cfg, "image_token_id", None)
        return getattr(cfg, "image_token_index", None) if token_id is None else token_id

    def image_token_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Where the image tokens are, per sample, read from the ids (their number varies by model)."""
        return input_ids == self.image_token_id

    # ------------------------------------------------------------------ inputs
    def prompt_text(self, prompt: str, image: bool = True) -> str:
        """The chat-templated user turn holding one image (or none) and `prompt`, ready for the answer.
        Checkpoints without a chat template (PaliGemma, InstructBLIP) get the plain prompt, after the
        processor's image placeholder where the family writes one in the text."""
        if getattr(self.processor, "chat_template", None) is None:
            placeholder = getattr(self.processor, "image_token", None) if image and self.family.image_in_text else None
            return f"{placeholder}{prompt}" if isinstance(placeholder, str) else prompt
        content = [{"type": "image"}] if image else []
        messages = [{"role": "user", "content": [*content, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def process(self, texts: Sequence[str], images: Sequence[Sequence[ImageLike]]) -> dict[str, Any]:
        """The processor's tensors for prompts `texts`, each with its list of images (`images[i]`, empty for a
        prompt without one), in one left-padded call. Images go per prompt: Gemma 3's, Mllama's and SmolVLM's
        processors need it to tell which prompt an image belongs to, and the others accept it."""
        if len(images) != len(texts):
            raise ValueError(f"got {len(images)} image lists for {len(texts)} prompts; pass one list per prompt")
        nested = [[load_image(im) for im in ims] for ims in images]
        if any(not ims for ims in nested) and not self.family.text_only_rows:
            raise ValueError(f"{self.family.name}'s processor puts image tokens in every prompt, so a prompt without "
                             "an image cannot be batched with the others; give every prompt an image")
        batch = self.processor(images=nested if any(nested) else None, text=list(texts), padding=True,
                               return_tensors="pt")
        # PaliGemma's processor also returns training labels: nothing here trains through it.
        return align_padding({k: v for k, v in batch.items() if k != "labels"})

    def to_device(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A processor's output ready for the model: its tensors on the model's device, floating ones in
        the model's dtype (other entries dropped)."""
        dtype = next(self.model.parameters()).dtype
        return {k: (v.to(self.device, dtype) if torch.is_floating_point(v) else v.to(self.device))
                for k, v in batch.items() if isinstance(v, torch.Tensor)}

    def build_inputs(self, images: Sequence[ImageLike], prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image")
        return self.to_device(self.process([self.prompt_text(p) for p in prompts], [[im] for im in images]))

    @torch.no_grad()
    def forward(self, images: Sequence[ImageLike], prompts: Sequence[str], **kwargs):
        return self.model(**self.build_inputs(images, prompts), **kwargs)


# The per-token inputs that follow the prompt's tokens, and the Q-Former's (InstructBLIP).
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")
QFORMER_INPUTS = ("qformer_input_ids", "qformer_attention_mask")


def _move_padding(batch: dict[str, Any], keys: tuple[str, ...], mask_key: str, first: bool) -> dict[str, Any]:
    mask = batch.get(mask_key)
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        return batch
    misplaced = mask[:, 1:] < mask[:, :-1] if first else mask[:, 1:] > mask[:, :-1]
    if not misplaced.any():
        return batch
    # a stable sort on the mask (or its negation) moves the padding to one end, the tokens kept in their order
    order = torch.sort(mask if first else -mask, dim=1, stable=True).indices
    return {k: v.gather(1, order) if k in keys and isinstance(v, torch.Tensor) and v.shape == mask.shape else v
            for k, v in batch.items()}


def align_padding(batch: dict[str, Any]) -> dict[str, Any]:
    """`batch` with each row the same sequence as alone: the prompt's padding at its start, the Q-Former's at
    its end. InstructBLIP's processor pads the prompts, then puts the query tokens before the padding (a padded
    row's prompt would sit further from its image than alone), and pads the Q-Former's text on the tokenizer's
    side, though the Q-Former has absolute positions. A no-op for every other family's batches."""
    batch = _move_padding(batch, TOKEN_INPUTS, "attention_mask", first=True)
    return _move_padding(batch, QFORMER_INPUTS, "qformer_attention_mask", first=False)


def __getattr__(name: str) -> Any:
    # `VLMAdapter` used to be defined here. It is looked up by name on first access, so importing this
    # module loads no decoding code.
    if name == "VLMAdapter":
        warnings.warn("halluscope.models.adapter.VLMAdapter is deprecated; use halluscope.decoding.VLMAdapter",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module("halluscope.decoding.adapter").VLMAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["VLMBase", "load_image"]
