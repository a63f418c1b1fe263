"""HACL: hallucination-augmented contrastive learning (Jiang et al., "Hallucination Augmented
Contrastive Learning for Multimodal Large Language Model", CVPR 2024).

The language model itself embeds both modalities: an image's global vector is the LLM's last-layer
hidden state at an EOS embedding appended after the image's visual tokens (the image alone, no
prompt); a caption's is the state at its EOS token (the caption alone). Two linear heads (H -> H/4)
map them to a shared space, where a symmetric InfoNCE pulls each image towards its caption and away
from the batch's other captions and from hallucinated captions, which differ from true ones by one
object, attribute, count or relation (`halluscope.hallucinate`). The objective is
L_gen + (L_i2t + L_t2i) / 2 during connector alignment, where only the projector and the heads
train; instruction tuning then runs as usual.

Works with any LLaVA-family model whose `get_image_features` returns per-image visual tokens
(LLaVA, LLaVA-NeXT, Qwen2-VL, ...). Unlike the reference code, negatives are not gathered across
processes: each process contrasts within its own batch.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..hallucinate import KINDS, world_hallucinations
from ..models.parts import PART_PATHS, find_part, visual_tokens
from ..seeds import Stream, rng
from ..world import CAPTION_PROMPTS, World
from .data import caption_tensors, encode
from .loop import Trainer
from .losses import hacl_loss

STAGES = ("align", "instruct")
VISION_KEYS = ("pixel_values", "image_grid_thw", "image_sizes")
HACL = {"title": "Hallucination Augmented Contrastive Learning for Multimodal Large Language Model",
        "authors": "Jiang et al.", "venue": "CVPR 2024",
        "url": "https://arxiv.org/abs/2312.06968"}


@dataclass
class HACLConfig(Config):
    """HACL's connector-alignment stage. Defaults: the paper's temperature (0.07, learnable, clamped
    to [0.001, 0.5]), heads of width H/4, contrastive weight 1, lr 1e-3 as LLaVA's stage 1."""

    _paper = HACL

    steps: int = field(default=300, metadata={"help": "optimizer steps of the alignment stage"})
    batch_size: int = field(default=32, metadata={"help": "images per step (each brings its caption)"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW) of projector and heads"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warm-up, then cosine decay to 10 %"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    adam_betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "AdamW betas"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    temperature: float = field(default=0.07, metadata={"help": "initial InfoNCE temperature (learnable)"})
    temperature_min: float = field(default=0.001, metadata={"help": "lower clamp of the temperature"})
    temperature_max: float = field(default=0.5, metadata={"help": "upper clamp of the temperature"})
    head_ratio: int = field(default=4, metadata={"help": "heads map the hidden size H to H / head_ratio"})
    contrastive_weight: float = field(default=1.0, metadata={
        "help": "weight of (L_i2t + L_t2i) / 2 next to L_gen; 0 is the control (connector alignment on L_gen)"})
    hallucinations_per_image: int = field(default=1, metadata={
        "help": "hallucinated captions per image, all of them extra negatives for every image; 0 = plain InfoNCE"})
    hallucination_kinds: tuple[str, ...] = field(default=KINDS, metadata={"help": "kinds to draw them from"})
    caption_mix: dict[str, float] = field(default_factory=lambda: {"detailed": 0.8, "short": 0.2}, metadata={
        "help": "share of detailed and short captions"})
    seed: int = field(default=0, metadata={"help": "data order"})
    checkpoint_every: int = field(default=100, metadata={"help": "steps between checkpoints"})
    log_every: int = field(default=10, metadata={"help": "steps between logged means"})

    def __post_init__(self) -> None:
        self.check_at_least(1, "steps", "checkpoint_every", "log_every", "head_ratio")
        if self.batch_size < 2:
            self.fail("batch_size", "a contrastive loss needs at least 2 images per step")
        if not 0 < self.temperature_min <= self.temperature <= self.temperature_max:
            self.fail("temperature", "need 0 < temperature_min <= temperature <= temperature_max")
        if self.lr <= 0:
            self.fail("lr", "use a positive learning rate")
        if self.max_grad_norm <= 0:
            self.fail("max_grad_norm", "use a positive norm")
        self.check_at_least(0, "warmup_steps", "contrastive_weight", "hallucinations_per_image", "weight_decay")
        self.adam_betas = tuple(self.adam_betas)
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            self.fail("adam_betas", "use two numbers in [0, 1), e.g. (0.9, 0.999)")
        self.hallucination_kinds = tuple(self.hallucination_kinds)
        if not self.hallucination_kinds or set(self.hallucination_kinds) - set(KINDS):
            self.fail("hallucination_kinds", f"use some of {KINDS}")
        if set(self.caption_mix) - set(CAPTION_PROMPTS) or any(v < 0 for v in self.caption_mix.values()) or sum(
                self.caption_mix.values()) <= 0:
            self.fail("caption_mix", f"use non-negative shares over {tuple(CAPTION_PROMPTS)}")


class HACLHeads(nn.Module):
    """The two projection heads and the learnable temperature."""

    def __init__(self, hidden: int, ratio: int = 4, temperature: float = 0.07,
                 temperature_range: tuple[float, float] = (0.001, 0.5)) -> None:
        super().__init__()
        self.image = nn.Linear(hidden, hidden // ratio)
        self.text = nn.Linear(hidden, hidden // ratio)
        self.temperature = nn.Parameter(torch.tensor(float(temperature)))
        self.temperature_range = temperature_range

    def clamp_temperature(self) -> None:
        with torch.no_grad():
            self.temperature.clamp_(*self.temperature_range)


class HACLModel(nn.Module):
    """A VLM with HACL's heads; `forward(batch)` returns the losses, so that the whole objective runs
    through one module (what DistributedDataParallel needs to sync gradients).

    `batch`: the generation inputs (`input_ids`, `attention_mask`, `labels` and the processor's
    vision tensors, see `training.data.encode`), plus `caption_ids` / `caption_lengths` (one true caption
    per image, each ending with EOS, right-padded) and optionally `hallucinated_ids` /
    `hallucinated_lengths`.
    """

    def __init__(self, model: nn.Module, eos_token_id: int, heads: HACLHeads | None = None,
                 config: HACLConfig | None = None) -> None:
        super().__init__()
        config = config or HACLConfig()
        self.model = model
        self.eos_token_id = eos_token_id
        self.contrastive_weight = config.contrastive_weight
        # Looked up once, kept out of the module tree (they are registered under `model` already).
        self._parts = {name: find_part(model, name) for name in PART_PATHS}
        if self._parts["language_model"] is None or self._parts["projector"] is None:
            raise TypeError(f"{type(model).__name__} is not a LLaVA-family model "
                            "(no language model or projector found)")
        hidden = self.language_model.config.hidden_size
        self.heads = heads or HACLHeads(hidden, config.head_ratio, config.temperature,
                                        (config.temperature_min, config.temperature_max))

    @property
    def language_model(self) -> nn.Module:
        return self._parts["language_model"]

    @property
    def projector(self) -> nn.Module:
        return self._parts["projector"]

    # -------------------------------------------------------------- embeddings
    def image_states(self, vision: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, H): last-layer state at an EOS embedding after each image's visual tokens, no text."""
        feats = visual_tokens(self.model, **vision)
        eos = self.language_model.get_input_embeddings()(torch.tensor([self.eos_token_id], device=feats[0].device))
        lengths = [f.shape[0] for f in feats]
        width = max(lengths) + 1
        x = feats[0].new_zeros(len(feats), width, feats[0].shape[-1])
        mask = torch.zeros(len(feats), width, dtype=torch.long, device=x.device)
        for i, f in enumerate(feats):  # right padding: EOS right after the visual tokens
            x[i, : lengths[i]] = f
            x[i, lengths[i]] = eos[0].to(x.dtype)
            mask[i, : lengths[i] + 1] = 1
        states = self.language_model(inputs_embeds=x, attention_mask=mask).last_hidden_state
        return states[torch.arange(len(feats), device=x.device), torch.tensor(lengths, device=x.device)]

    def text_states(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(N, H): last-layer state at each caption's final (EOS) token, the caption alone."""
        mask = (torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None]).long()
        states = self.language_model(input_ids=ids, attention_mask=mask).last_hidden_state
        return states[torch.arange(ids.shape[0], device=ids.device), lengths - 1]

    # -------------------------------------------------------------- objective
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        vision = {k: batch[k] for k in VISION_KEYS if k in batch}
        generation = {k: v for k, v in batch.items() if not k.startswith(("caption_", "hallucinated_"))}
        gen_loss = self.model(**generation).loss
        if not self.contrastive_weight:  # the control arm: connector alignment on L_gen alone
            zero = gen_loss.new_zeros(())
            return {"loss": gen_loss, "gen_loss": gen_loss, "contrastive_loss": zero}
        self.heads.clamp_temperature()
        image = self.heads.image(self.image_states(vision))
        text = self.heads.text(self.text_states(batch["caption_ids"], batch["caption_lengths"]))
        hallucinated = None
        if batch.get("hallucinated_ids") is not None and batch["hallucinated_ids"].numel() > 0:
            hallucinated = self.heads.text(self.text_states(batch["hallucinated_ids"], batch["hallucinated_lengths"]))
        contrastive = hacl_loss(image, text, hallucinated, self.heads.temperature)
        return {"loss": gen_loss + self.contrastive_weight * contrastive, "gen_loss": gen_loss,
                "contrastive_loss": contrastive}

    def set_stage(self, stage: str) -> list[nn.Parameter]:
        """Freeze all but what `stage` trains and return those parameters: "align" trains the
        projector and the heads (the projector alone at contrastive weight 0); "instruct" the
        projector and the language model (with its output layer), as LLaVA's instruction tuning does."""
        if stage not in STAGES:
            raise ValueError(f"unknown HACL stage {stage!r}; use one of {STAGES}")
        for p in self.parameters():
            p.requires_grad_(False)
        heads = [self.heads] if self.contrastive_weight else []  # unused heads would stall DDP
        parts = [self.projector, *heads] if stage == "align" else [
            self.projector, self.language_model, self.model.get_output_embeddings()]
        for part in parts:
            for p in part.parameters():
                p.requires_grad_(True)
        return [p for p in self.parameters() if p.requires_grad]


def hacl_batch(processor, images: list, prompts: list[str], captions: list[str],
               hallucinated: list[str] = ()) -> dict[str, torch.Tensor]:
    """A `HACLModel` batch from any data: images with their instructions and true captions (L_gen
    and the contrast) and hallucinated captions (extra negatives; from `halluscope.hallucinate`'s
    `RuleHallucinator` or `LLMHallucinator` for real captions)."""
    batch = encode(processor, images, prompts, captions)
    batch["caption_ids"], batch["caption_lengths"] = caption_tensors(processor.tokenizer, captions)
    if hallucinated:
        ids, lengths = caption_tensors(processor.tokenizer, list(hallucinated))
        batch["hallucinated_ids"], batch["hallucinated_lengths"] = ids, lengths
    return batch


def world_hacl_batch(world: World, processor, cfg: HACLConfig, step: int) -> dict[str, torch.Tensor]:
    """The batch of step `step` (it depends only on the seed and the step): world training images
    with captions for L_gen and for the contrast, and hallucinated mirrors of those captions."""
    gen = rng(cfg.seed, Stream.HACL, step)
    styles, shares = list(cfg.caption_mix), np.array(list(cfg.caption_mix.values()), dtype=float)
    images, prompts, captions, hallucinated = [], [], [], []
    for _ in range(cfg.batch_size):
        scene = world.scene("train", int(gen.integers(world.config.train_size)))
        style = styles[gen.choice(len(styles), p=shares / shares.sum())]
        images.append(world.render(scene))
        prompts.append(CAPTION_PROMPTS[style])
        captions.append(world.caption(scene, style))
        mirrors = world_hallucinations(world, scene, style, cfg.hallucination_kinds, gen)
        for i in gen.permutation(len(mirrors))[: cfg.hallucinations_per_image]:
            hallucinated.append(mirrors[i].text)
    return hacl_batch(processor, images, prompts, captions, hallucinated)




class HACLTrainer(Trainer):
    """HACL's connector-alignment stage in the training loop: only the projector and the heads train
    (the projector alone at contrastive weight 0), on L_gen + contrastive weight * (L_i2t + L_t2i) / 2.

    The data are world captions with their hallucinated mirrors (`world_hacl_batch`), or your own:
    `data(k)` returns the k-th batch (`hacl_batch`), a pure function of k for exact resume; under N
    processes, process r takes batch k = step * N + r."""

    name = "hacl"

    def __init__(self, model: nn.Module, processor, world: World | None = None, config: HACLConfig | None = None,
                 output_dir: str | Path = "hacl", progress: bool = True,
                 data: Callable[[int], dict[str, torch.Tensor]] | None = None) -> None:
        config = config or HACLConfig()
        self.vlm, self.processor, self.world, self.data = model, processor, world or World(), data
        self.hacl = HACLModel(model, processor.tokenizer.eos_token_id, config=config)
        self.flags = [p.requires_grad for p in model.parameters()]
        self.hacl.set_stage("align")
        super().__init__(self.hacl, config, output_dir, progress)

    @property
    def title(self) -> str:
        return "connector alignment" + (" with HACL" if self.config.contrastive_weight else "")

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        k = step * self.world_size + self.rank
        return self.data(k) if self.data is not None else world_hacl_batch(self.world, self.processor, self.config, k)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # The temperature is the parameter itself: the log shows its value after this step's update.
        return {**self.model(batch), "temperature": self.hacl.heads.temperature}

    def train(self) -> dict[str, Any]:
        try:
            return super().train()
        finally:  # leave the model as it came, ready for instruction tuning
            for p, flag in zip(self.vlm.parameters(), self.flags):
                p.requires_grad_(flag)

    def save(self, log: dict[str, Any]) -> None:
        """The heads (`hacl_heads.safetensors`, unless the contrastive weight is 0: then they never
        trained) and `hacl_log.json` into the output folder; the checkpoint goes."""
        from safetensors.torch import save_file

        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if self.config.contrastive_weight:
                save_file({k: v.contiguous() for k, v in self.hacl.heads.state_dict().items()},
                          self.output_dir / "hacl_heads.safetensors")
            (self.output_dir / "hacl_log.json").write_text(json.dumps({**self.record(), "log": log}, default=str))
        self.remove_checkpoint()


def hacl_align(model, processor, world: World | None = None, config: HACLConfig | None = None,
               out_dir: str | Path = "hacl", progress: bool = True,
               data: Callable[[int], dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """HACL's connector-alignment stage on `model` in place (`HACLTrainer`); the heads and the log
    (hacl_log.json) are saved to `out_dir`, where the checkpoint a rerun resumes from also lives.
    Returns the log. Runs data-parallel under `accelerate launch` (each process its own batches)."""
    trainer = HACLTrainer(model, processor, world, config, out_dir, progress, data)
    log = trainer.train()
    trainer.save(log)
    return log


_MOVED = {"train_tiny_hacl": ("halluscope.zoo.tiny", "train_tiny_hacl", "train_tiny(world, train_config, "
                                                                        "tiny_config, out, hacl_config=...)")}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        module, attr, call = _MOVED[name]
        warnings.warn(f"halluscope.training.hacl.{name} is deprecated; use {module}.{call}", DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["HACL", "STAGES", "HACLConfig", "HACLHeads", "HACLModel", "HACLTrainer", "caption_tensors", "hacl_align",
           "hacl_batch", "world_hacl_batch"]
