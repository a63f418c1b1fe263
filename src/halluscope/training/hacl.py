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
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..hallucinate import KINDS, world_hallucinations
from ..world import CAPTION_PROMPTS, World
from ..models.parts import PART_PATHS, find_part
from .align import encode
from .losses import hacl_loss

STAGES = ("align", "instruct")
VISION_KEYS = ("pixel_values", "image_grid_thw", "image_sizes")


@dataclass
class HACLConfig:
    """HACL's connector-alignment stage. Defaults: the paper's temperature (0.07, learnable, clamped
    to [0.001, 0.5]), heads of width H/4, contrastive weight 1, lr 1e-3 as LLaVA's stage 1."""

    steps: int = field(default=300, metadata={"help": "optimizer steps of the alignment stage"})
    batch_size: int = field(default=32, metadata={"help": "images per step (each brings its caption)"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW) of projector and heads"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warm-up, then cosine decay to 10 %"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    temperature: float = field(default=0.07, metadata={"help": "initial InfoNCE temperature (learnable)"})
    temperature_min: float = field(default=0.001, metadata={"help": "lower clamp of the temperature"})
    temperature_max: float = field(default=0.5, metadata={"help": "upper clamp of the temperature"})
    head_ratio: int = field(default=4, metadata={"help": "heads map the hidden size H to H / head_ratio"})
    contrastive_weight: float = field(default=1.0, metadata={"help": "weight of (L_i2t + L_t2i) / 2 next to L_gen"})
    hallucinations_per_image: int = field(default=1, metadata={
        "help": "hallucinated captions per image, all of them extra negatives for every image; 0 = plain InfoNCE"})
    hallucination_kinds: tuple[str, ...] = field(default=KINDS, metadata={"help": "kinds to draw them from"})
    caption_mix: dict[str, float] = field(default_factory=lambda: {"detailed": 0.8, "short": 0.2}, metadata={
        "help": "share of detailed and short captions"})
    seed: int = field(default=0, metadata={"help": "data order"})
    checkpoint_every: int = field(default=100, metadata={"help": "steps between checkpoints"})
    log_every: int = field(default=10, metadata={"help": "steps between logged means"})

    def __post_init__(self) -> None:
        def fail(name: str, fix: str) -> None:
            raise ValueError(f"HACLConfig.{name}={getattr(self, name)!r} is invalid: {fix}")

        for name in ("steps", "checkpoint_every", "log_every", "head_ratio"):
            if getattr(self, name) < 1:
                fail(name, "use a value >= 1")
        if self.batch_size < 2:
            fail("batch_size", "a contrastive loss needs at least 2 images per step")
        if not 0 < self.temperature_min <= self.temperature <= self.temperature_max:
            fail("temperature", "need 0 < temperature_min <= temperature <= temperature_max")
        if self.lr <= 0 or self.contrastive_weight < 0 or self.hallucinations_per_image < 0:
            fail("lr", "lr must be > 0, contrastive_weight and hallucinations_per_image >= 0")
        self.hallucination_kinds = tuple(self.hallucination_kinds)
        if not self.hallucination_kinds or set(self.hallucination_kinds) - set(KINDS):
            fail("hallucination_kinds", f"use some of {KINDS}")
        if set(self.caption_mix) - set(CAPTION_PROMPTS) or sum(self.caption_mix.values()) <= 0:
            fail("caption_mix", f"use non-negative shares over {tuple(CAPTION_PROMPTS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    vision tensors, see `align.encode`), plus `caption_ids` / `caption_lengths` (one true caption
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
    def _image_features(self, vision: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        base = self.model.model if hasattr(getattr(self.model, "model", None), "get_image_features") else self.model
        feats = base.get_image_features(**vision)
        feats = getattr(feats, "pooler_output", feats)
        return list(feats)

    def image_states(self, vision: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, H): last-layer state at an EOS embedding after each image's visual tokens, no text."""
        feats = self._image_features(vision)
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


def caption_tensors(tokenizer, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, lengths) of captions as the text side of HACL sees them: the tokenizer's own special
    tokens (BOS where it adds one), the caption, EOS; right-padded."""
    rows = [tokenizer(c)["input_ids"] + [tokenizer.eos_token_id] for c in captions]
    width = max(map(len, rows)) if rows else 1
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows]).reshape(len(rows), width), torch.tensor(
        [len(r) for r in rows], dtype=torch.long)


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
    rng = np.random.default_rng([cfg.seed, 2 * 10**9 + step])
    styles, shares = list(cfg.caption_mix), np.array(list(cfg.caption_mix.values()), dtype=float)
    images, prompts, captions, hallucinated = [], [], [], []
    for _ in range(cfg.batch_size):
        scene = world.scene("train", int(rng.integers(world.config.train_size)))
        style = styles[rng.choice(len(styles), p=shares / shares.sum())]
        images.append(world.render(scene))
        prompts.append(CAPTION_PROMPTS[style])
        captions.append(world.caption(scene, style))
        mirrors = world_hallucinations(world, scene, style, cfg.hallucination_kinds, rng)
        for i in rng.permutation(len(mirrors))[: cfg.hallucinations_per_image]:
            hallucinated.append(mirrors[i].text)
    return hacl_batch(processor, images, prompts, captions, hallucinated)


def hacl_align(model, processor, world: World | None = None, config: HACLConfig | None = None,
               out_dir: str | Path = "hacl", progress: bool = True,
               data: Callable[[int], dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """HACL's connector-alignment stage: only the projector and the heads train (L_gen +
    contrastive weight * (L_i2t + L_t2i) / 2). Trains `model` in place; the heads are saved to
    `out_dir/hacl_heads.safetensors`; checkpoints in `out_dir/checkpoint`, and a rerun resumes.
    Returns the log. Runs data-parallel under `accelerate launch` (each process its own batches).

    The data are world captions with their hallucinated mirrors (`world_hacl_batch`), or your own:
    `data(k)` returns the k-th batch (`hacl_batch`), a pure function of k for exact resume; under
    N processes, process r asks for batches k = step * N + r."""
    from accelerate import Accelerator
    from safetensors.torch import save_file

    from .align import _log_means, _save_checkpoint
    from .sft import lr_at

    cfg = config or HACLConfig()
    world = world or World()
    out = Path(out_dir)
    ckpt = out / "checkpoint"
    # Without GPUs, `accelerate launch --multi_gpu --num_processes N` starts N CPU processes that talk over gloo.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    hacl = HACLModel(model, processor.tokenizer.eos_token_id, config=cfg)
    flags = [p.requires_grad for p in model.parameters()]
    trainable = hacl.set_stage("align")
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    wrapped, opt = accelerator.prepare(hacl, opt)
    start, log = 0, {"loss": [], "gen_loss": [], "contrastive_loss": [], "temperature": [], "seconds": 0.0}
    if (ckpt / "state.json").exists():
        state = json.loads((ckpt / "state.json").read_text())
        if state["config"] != json.loads(json.dumps(cfg.to_dict())):
            raise ValueError(f"{ckpt} was written with another HACL config; delete it to start over")
        accelerator.load_state(str(ckpt))
        start, log = state["step"], state["log"]
    bar = task = None
    if progress and accelerator.is_main_process:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn())
        bar.start()
        title = "connector alignment" + (" with HACL" if cfg.contrastive_weight else "")
        task = bar.add_task(title, total=cfg.steps, completed=start, loss="-")
    window: dict[str, list[float]] = {k: [] for k in ("loss", "gen_loss", "contrastive_loss", "temperature")}
    t0 = time.time()
    wrapped.train()
    try:
        for step in range(start, cfg.steps):
            # each process builds its own batch: step and rank select the data
            k = step * accelerator.num_processes + accelerator.process_index
            batch = data(k) if data is not None else world_hacl_batch(world, processor, cfg, k)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            losses = wrapped(batch)
            opt.zero_grad(set_to_none=True)
            accelerator.backward(losses["loss"])
            accelerator.clip_grad_norm_(trainable, 1.0)
            opt.step()
            values = torch.stack([losses[k].detach() for k in ("loss", "gen_loss", "contrastive_loss")]
                                 + [hacl.heads.temperature.detach()])
            values = accelerator.gather(values[None]).mean(0).tolist()
            _log_means(log, window, values, step, cfg)
            if bar is not None:
                bar.update(task, advance=1, loss=f"{values[0]:.3f}")
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                log["seconds"] += time.time() - t0
                t0 = time.time()
                _save_checkpoint(accelerator, ckpt, {"step": step + 1, "log": log, "config": cfg.to_dict()})
    finally:
        if bar is not None:
            bar.stop()
    log["seconds"] += time.time() - t0
    accelerator.wait_for_everyone()
    for p, flag in zip(model.parameters(), flags):  # leave the model as it came, ready for instruction tuning
        p.requires_grad_(flag)
    model.eval()
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.contrastive_weight:  # at weight 0 the heads never trained
            save_file({k: v.contiguous() for k, v in hacl.heads.state_dict().items()}, out / "hacl_heads.safetensors")
        (out / "hacl_log.json").write_text(json.dumps({"config": cfg.to_dict(), "log": log}, default=str))
        shutil.rmtree(ckpt, ignore_errors=True)
    accelerator.wait_for_everyone()
    return log


def train_tiny_hacl(world: World | None = None, train_config=None, tiny_config=None,
                    hacl_config: HACLConfig | None = None, out: str | Path | None = None,
                    progress: bool = True) -> Path:
    """The built-in model trained with HACL: stage 0 (vision tower), HACL connector alignment,
    then ordinary instruction tuning (`sft.train`, without its own stage 0). Saved like
    `train_tiny`'s output, so that `halluscope.load_model(out)` loads it. Each stage resumes."""
    from safetensors.torch import load_file, save_file

    from ..models import MARKER, tiny_recipe
    from ..models.tiny import TinyConfig, build_model, build_processor
    from .sft import TrainConfig, pretrain_vision, state_tensors, train

    world = world or World()
    train_config, tiny_config = train_config or TrainConfig(), tiny_config or TinyConfig()
    hacl_config = hacl_config or HACLConfig()
    recipe = tiny_recipe(world, train_config, tiny_config) | {"hacl": hacl_config.to_dict()}
    if out is None:
        import hashlib

        from ..models import cache_dir

        key = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]
        out = cache_dir() / f"tiny-hacl-{key}"
    out = Path(out)
    if (out / MARKER).exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor(world)
    model = build_model(processor, tiny_config, seed=train_config.seed)
    stage0, stage1 = out / "stage0.safetensors", out / "stage1.safetensors"
    if stage1.exists():
        model.load_state_dict(load_file(stage1))
    else:
        if stage0.exists():
            model.load_state_dict(load_file(stage0))
        elif train_config.vision_pretrain_steps > 0:
            vision_loss = pretrain_vision(model, processor, world, train_config)
            save_file(state_tensors(model), stage0)
            (out / "stage0_log.json").write_text(json.dumps([round(x, 4) for x in vision_loss]))
        stage = "hacl" if hacl_config.contrastive_weight else "connector"
        hacl_align(model, processor, world, hacl_config, out / stage, progress=progress)
        save_file(state_tensors(model), stage1)
    from dataclasses import replace

    log = train(model, processor, world, replace(train_config, vision_pretrain_steps=0), out / "instruct",
                progress=progress)
    if (out / "stage0_log.json").exists():  # as `train` logs its own stage 0
        log["vision_loss"] = json.loads((out / "stage0_log.json").read_text())[:: train_config.log_every]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "train_log.json").write_text(json.dumps(log))
    # The marker is written last: a folder without it is an unfinished run that will resume.
    (out / MARKER).write_text(json.dumps({"kind": "tiny", "recipe": recipe}, indent=1, default=str))
    shutil.rmtree(out / "instruct" / "checkpoint", ignore_errors=True)
    return out


__all__ = ["STAGES", "HACLConfig", "HACLHeads", "HACLModel", "caption_tensors", "hacl_align", "hacl_batch",
           "train_tiny_hacl", "world_hacl_batch"]
