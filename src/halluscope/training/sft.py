"""The built-in model's training on the world, LLaVA's recipe at its size:

- stage 0 (`VisionPretrainer`): the vision tower and the projector learn, per patch, which object and
  colour it shows, with the words' input embeddings as targets (the analogue of LLaVA starting from a
  CLIP tower pretrained on image-text pairs);
- instruction tuning (`InstructionTrainer`): captions and multi-turn questions, the loss on the answers
  only, the vision tower frozen.

Both run in `training.loop`; the data of step k depends only on the seed and k, so a resumed run sees
the same batches as an uninterrupted one.
"""

from __future__ import annotations

import functools
import math
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..hallucinate.base import pick
from ..hallucinate.world import cooccurring, world_hallucinations
from ..models.parts import find_part
from ..models.tiny import image_size, image_token_count, patch_projector
from ..seeds import Stream, rng
from ..world import CAPTION_PROMPTS, CLASSES, COLORS, GRID, IMAGE_SIZE, QUESTION_TEMPLATES, World
from .loop import Trainer, cosine_lr
from .optimizers import OPTIMIZERS, MuonAdamW, split_for_muon

TASKS = ("detailed", "short", "qa")
LLAVA = {"title": "Visual Instruction Tuning", "authors": "Liu et al.", "venue": "NeurIPS 2023",
         "url": "https://arxiv.org/abs/2304.08485"}


@dataclass
class TrainConfig(Config):
    """Training of the built-in model: stage 0, the optional connector stage, instruction tuning."""

    _paper = LLAVA

    steps: int = field(default=1400, metadata={"help": "optimizer steps of instruction tuning"})
    batch_size: int = field(default=32, metadata={"help": "samples per step"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (AdamW), of stage 0 too"})
    warmup_steps: int = field(default=100, metadata={
        "help": "linear warm-up; then cosine decay to 10 % (stage 0: constant)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    adam_betas: tuple[float, float] = field(default=(0.9, 0.98), metadata={"help": "AdamW betas of instruction tuning"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping, in both stages"})
    seed: int = field(default=0, metadata={"help": "initialisation and data order"})
    vision_pretrain_steps: int = field(default=900, metadata={
        "help": "steps of stage 0: each patch's visual token learns to sit next to the input embedding of its "
                "class and colour words (the analogue of LLaVA starting from a pretrained CLIP); 0 skips it"})
    vision_batch_size: int = field(default=128, metadata={"help": "images per stage-0 step"})
    position_targets: bool = field(default=True, metadata={
        "help": "stage 0 also classifies each patch's visual token by its row and its column (against learned "
                "vectors, as the words), so that the tokens keep where they are, as a pretrained CLIP's patch "
                "features do; without it they lose it (docs/studies/tiny-recipe.md)",
        "recipe_omits_default": True})
    vision_adam_betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "AdamW betas of stage 0"})
    connector_steps: int = field(default=0, metadata={
        "help": "steps of the optional connector stage between stage 0 and instruction tuning, as LLaVA's stage 1: "
                "only the projector trains, on captions (HACL's stage at contrastive weight 0); 0 skips it"})
    vision_lr_scale: float = field(default=0.0, metadata={
        "help": "learning rate of the vision tower in instruction tuning, as a fraction of lr; 0 freezes it, as "
                "LLaVA does"})
    optimizer: str = field(default="muon", metadata={
        "help": "optimizer of instruction tuning: 'muon': Muon for the weight matrices, AdamW for embeddings, norms "
                "and biases, at the same learning rate and schedule (training.optimizers), or 'adamw'; with AdamW the "
                "model does not learn to say where objects are in 1,400 steps (docs/studies/tiny-recipe.md)",
        "recipe_omits_default": True})
    checkpoint_every: int = field(default=250, metadata={"help": "steps between checkpoints"})
    log_every: int = field(default=50, metadata={"help": "steps between logged mean losses"})
    task_mix: dict[str, float] = field(
        default_factory=lambda: {"detailed": 0.2, "short": 0.05, "qa": 0.75},
        metadata={"help": "share of training samples: detailed caption, short caption, QA conversation"},
    )
    qa_mix: dict[str, float] = field(
        default_factory=lambda: {"existence": 0.3, "attribute": 0.05, "attribute_yes_no": 0.2, "count": 0.1,
                                 "count_yes_no": 0.25, "relation": 0.1},
        metadata={"help": "question type -> share of the turns of a QA conversation; types: existence, attribute "
                          "(open colour), count (open number), relation (yes/no), attribute_yes_no, count_yes_no"},
    )
    qa_turns: int = field(default=6, metadata={
        "help": "questions per QA conversation (multi-turn, as in LLaVA's data)"})
    caption_noise: float = field(default=0.0, metadata={
        "help": "annotation noise: share of training captions that name an absent object (one that co-occurs with "
                "what is there, first) or give an object a wrong colour, as noisy web or machine-written captions do",
        "recipe_omits_default": True})
    # The world's co-occurrence alone does not make a model that sees this well imagine the absent partner
    # (docs/studies/tiny-recipe.md): machine-written instruction data does, by its co-occurrence-driven errors
    # (HalluciDoctor, Yu et al., CVPR 2024). A recipe field since the default took it: every model is named anew.
    qa_noise: float = field(default=0.1, metadata={
        "help": "annotation noise in questions: share of training existence questions answered 'no' that instead ask "
                "about an absent class co-occurring with one in the image (its pair partner first, then its "
                "scene-mates) and answer 'yes', as machine-written instruction data does"})
    # With question noise the verdict of a relation answer learnt to tell the axis, not the side: having written
    # "left of" it said yes to "right of". Uniform "no" questions ask the inverse a third of the time; hard negatives
    # ask it more, which mends the verdict but did not raise the profile's checks, so it is off
    # (docs/studies/tiny-recipe.md).
    relation_inverse: float = field(default=0.0, metadata={
        "help": "share of training relation questions answered 'no' that ask the inverse of the true relation (right "
                "of for left of, below for above) instead of one of the other three: hard negatives",
        "recipe_omits_default": True})

    def __post_init__(self) -> None:
        self.check_at_least(1, "steps", "batch_size", "vision_batch_size", "checkpoint_every", "log_every", "qa_turns")
        self.check_at_least(0, "warmup_steps", "vision_pretrain_steps", "connector_steps", why="(0 skips it)")
        if self.lr <= 0:
            self.fail("lr", "use a positive learning rate")
        if self.max_grad_norm <= 0:
            self.fail("max_grad_norm", "use a positive norm")
        self.check_range("caption_noise", 0, 1, "it is a share of captions")
        self.check_range("qa_noise", 0, 1, "it is a share of existence questions")
        self.check_range("relation_inverse", 0, 1, "it is a share of relation questions")
        if not isinstance(self.position_targets, bool):
            self.fail("position_targets", "use True or False")
        if self.optimizer not in OPTIMIZERS:
            self.fail("optimizer", f"use one of {OPTIMIZERS}")
        if self.vision_lr_scale < 0:
            self.fail("vision_lr_scale", "use a value >= 0 (0 freezes the tower)")
        for name in ("adam_betas", "vision_adam_betas"):
            setattr(self, name, tuple(getattr(self, name)))
            if len(getattr(self, name)) != 2 or not all(0 <= b < 1 for b in getattr(self, name)):
                self.fail(name, "use two numbers in [0, 1), e.g. (0.9, 0.999)")
        for name, allowed in (("task_mix", TASKS), ("qa_mix", World.TRAIN_QUESTION_TYPES)):
            mix = getattr(self, name)
            if set(mix) - set(allowed) or any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
                self.fail(name, f"use non-negative shares over {allowed}")


# ============================================================================ data
def pixel_values(arrays: np.ndarray, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(B, 64, 64, 3) uint8 -> the normalised tensor the built-in processor makes (mean = std = 0.5), box-filtered
    to `size` pixels per side as PIL's BOX filter does it: across, rounded to whole levels, then down, rounded.

    Rendering straight to tensors skips PIL round trips in training; a test checks that it equals
    the processor's output.
    """
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float()
    if size != x.shape[-1]:
        f = x.shape[-1] // size
        x = torch.floor(F.avg_pool2d(torch.floor(F.avg_pool2d(x, (1, f)) + 0.5), (f, 1)) + 0.5)
    return (x / 255.0 - 0.5) / 0.5



def _choice(gen: np.random.Generator, mix: dict[str, float]) -> str:
    names = list(mix)
    p = np.array([mix[n] for n in names], dtype=float)
    return names[gen.choice(len(names), p=p / p.sum())]


def make_example(world: World, gen: np.random.Generator, cfg: TrainConfig):
    """(image, [(prompt, answer), ...]): a caption, or a conversation of `qa_turns` questions."""
    scene = world.scene("train", int(gen.integers(world.config.train_size)))
    task = _choice(gen, cfg.task_mix)
    if task in CAPTION_PROMPTS:
        caption = world.caption(scene, task)
        # Drawn only when asked for, so that a recipe without noise sees the data it always saw.
        if cfg.caption_noise and gen.random() < cfg.caption_noise:
            wrong = world_hallucinations(world, scene, task, kinds=("added", "attribute"), rng=gen)
            caption = wrong[int(gen.integers(len(wrong)))].text if wrong else caption
        turns = [(CAPTION_PROMPTS[task], caption)]
    else:
        turns, asked = [], set()
        for _ in range(4 * cfg.qa_turns):  # a few tries: some types do not apply, repeats are skipped
            q = world.question(scene, _choice(gen, cfg.qa_mix), gen, cfg.relation_inverse)
            if cfg.qa_noise and q is not None and q["type"] == "existence" and q["answer"] == "no" \
                    and gen.random() < cfg.qa_noise:
                q = _cooccurring_yes(world, scene, gen, asked) or q
            if q is not None and q["question"] not in asked:
                asked.add(q["question"])
                turns.append((q["question"], q["answer"]))
            if len(turns) == cfg.qa_turns:
                break
        if not turns:  # none of the drawn types applied: an existence question always does
            q = world.question(scene, "existence", gen)
            turns.append((q["question"], q["answer"]))
    return world.render_array(scene), turns


def _cooccurring_yes(world: World, scene, gen: np.random.Generator, asked: set[str]) -> dict[str, str] | None:
    """A wrong 'yes' to an absent class that co-occurs with one in `scene` (the closest kind of co-occurrence
    there is: a pair partner before a scene-mate) and is not `asked` yet, or None if there is none."""
    template = QUESTION_TEMPLATES["existence"]
    present = set(scene.classes)
    options = [(rank, other) for cls in present for rank, other in enumerate(cooccurring(world, cls))
               if other not in present and template.format(other) not in asked]
    if not options:
        return None
    best = min(rank for rank, _ in options)
    cls = pick(gen, sorted({other for rank, other in options if rank == best}))
    return {"type": "existence", "question": template.format(cls), "answer": "yes"}


class Batcher:
    """Turns (image, [(prompt, answer), ...]) conversations into right-padded model inputs with the
    loss on the answers only. Prompts go through the processor's chat template, as at inference."""

    def __init__(self, processor) -> None:
        self.tok = processor.tokenizer
        self.image_token = processor.image_token
        self.n_image_tokens = image_token_count(processor)
        self.size = image_size(processor)
        self.processor = processor
        self._cache: dict[tuple[str, bool], list[int]] = {}

    def turn_ids(self, prompt: str, first: bool) -> list[int]:
        """The user turn up to "ASSISTANT:"; the first turn carries BOS and the image tokens."""
        key = (prompt, first)
        if key not in self._cache:
            content = ([{"type": "image"}] if first else []) + [{"type": "text", "text": prompt}]
            messages = [{"role": "user", "content": content}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
            text = text.replace(self.image_token, self.image_token * self.n_image_tokens)
            self._cache[key] = self.tok(text, add_special_tokens=first)["input_ids"]
        return self._cache[key]

    def __call__(self, examples) -> dict[str, torch.Tensor]:
        ids, labels = [], []
        # All answers of the batch in one tokenizer call: per-call overhead was a fifth of building a batch.
        answers = iter(self.tok([a for _, turns in examples for _, a in turns], add_special_tokens=False)["input_ids"])
        for _, turns in examples:
            seq, lab = [], []
            for i, (prompt, _) in enumerate(turns):
                p = self.turn_ids(prompt, first=i == 0)
                a = next(answers) + [self.tok.eos_token_id]
                seq += p + a
                lab += [-100] * len(p) + a
            ids.append(seq)
            labels.append(lab)
        width = max(map(len, ids))
        pad = self.tok.pad_token_id
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
        return {
            "input_ids": input_ids,
            "attention_mask": (torch.arange(width)[None] < torch.tensor([len(x) for x in ids])[:, None]).long(),
            "labels": torch.tensor([y + [-100] * (width - len(y)) for y in labels]),
            "pixel_values": pixel_values(np.stack([e[0] for e in examples]), self.size),
        }


def batch_for_step(world: World, batcher: Batcher, cfg: TrainConfig, step: int) -> dict[str, torch.Tensor]:
    gen = rng(cfg.seed, Stream.STEP, step)
    return batcher([make_example(world, gen, cfg) for _ in range(cfg.batch_size)])


def patch_labels(scene, grid: int) -> tuple[list[int], list[int]]:
    """Per-cell targets for stage 0: class index + 1 (0 = empty cell) and colour index + 1."""
    cls, col = [0] * grid * grid, [0] * grid * grid
    for o in scene.objects:
        cell = o.row * grid + o.col
        cls[cell], col[cell] = CLASSES.index(o.cls) + 1, list(COLORS).index(o.color) + 1
    return cls, col


def stage0_batch(world: World, cfg: TrainConfig, step: int, size: int = IMAGE_SIZE) -> dict[str, torch.Tensor]:
    """Images of step `step` of stage 0 at `size` pixels per side, with each patch's class and colour (0: nothing
    there)."""
    gen = rng(cfg.seed, Stream.STAGE0, step)
    scenes = [world.scene("train", int(i)) for i in gen.integers(world.config.train_size, size=cfg.vision_batch_size)]
    labels = [patch_labels(s, GRID) for s in scenes]
    return {"pixel_values": pixel_values(np.stack([world.render_array(s) for s in scenes]), size),
            "classes": torch.tensor([lab[0] for lab in labels]).flatten(),
            "colors": torch.tensor([lab[1] for lab in labels]).flatten()}


# ============================================================================ stage 0
class WordTargets(nn.Module):
    """Stage 0's objective: each patch's projected visual token is classified by cosine similarity
    against the (fixed) input embeddings of the class and the colour words, plus a learned "empty"
    vector each, with a learned logit scale as in CLIP. So the tower and the projector train, and
    visual tokens start near the words they show. The empty vectors and the scale are thrown away
    afterwards."""

    def __init__(self, model: nn.Module, processor, positions: bool = False) -> None:
        super().__init__()
        self.model = model
        tok, embed = processor.tokenizer, model.get_input_embeddings().weight.detach()
        # Unit directions of the words, fixed for the whole stage; saved with checkpoints, so that a resumed
        # run keeps the targets it started with.
        for name, words in (("class_words", CLASSES), ("color_words", COLORS)):
            rows = torch.stack([embed[tok.convert_tokens_to_ids(w.lower())] for w in words])
            self.register_buffer(name, F.normalize(rows, dim=-1))
        self.empty = nn.Parameter(0.02 * torch.randn(2, embed.shape[1]))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        # One learned vector per row and per column; created only when used, so that a run without them draws the
        # random numbers it always drew.
        self.positions = nn.Parameter(0.02 * torch.randn(2 * GRID, embed.shape[1])) if positions else None

    @property
    def tower(self) -> nn.Module:
        return find_part(self.model, "vision_tower")

    @property
    def projector(self) -> nn.Module:
        """What maps each patch to a token: the projector, or a query connector's patch part."""
        return patch_projector(find_part(self.model, "projector"))

    def trained(self) -> list[nn.Parameter]:
        extra = [] if self.positions is None else [self.positions]
        return [*self.tower.parameters(), *self.projector.parameters(), self.empty, self.logit_scale, *extra]

    def forward(self, pixel_values: torch.Tensor, classes: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
        layer = self.model.config.vision_feature_layer
        states = self.tower(pixel_values, output_hidden_states=True).hidden_states[layer][:, 1:]  # no CLS
        v = F.normalize(self.projector(states), dim=-1).reshape(-1, self.empty.shape[1])
        scale = self.logit_scale.clamp(max=math.log(100)).exp()
        empty = F.normalize(self.empty, dim=-1)
        logits = [scale * v @ torch.cat([empty[k : k + 1], words]).T
                  for k, words in enumerate((self.class_words, self.color_words))]
        targets = [classes, colors]
        if self.positions is not None:
            cell = torch.arange(GRID * GRID, device=v.device).repeat(len(v) // (GRID * GRID))
            rows, cols = F.normalize(self.positions, dim=-1).split(GRID)
            logits += [scale * v @ rows.T, scale * v @ cols.T]
            targets += [cell // GRID, cell % GRID]
        return sum(F.cross_entropy(lg.float(), t) for lg, t in zip(logits, targets))


class VisionPretrainer(Trainer):
    """Stage 0: `vision_pretrain_steps` steps on `WordTargets`, at a constant learning rate after the
    warm-up, with AdamW's `vision_adam_betas`."""

    name = "stage0"
    title = "stage 0: vision tower"

    def __init__(self, model: nn.Module, processor, world: World, config: TrainConfig, output_dir: str | Path,
                 progress: bool = True, on_step: Callable[[int, float], None] | None = None) -> None:
        self.world, self.size = world, image_size(processor)
        super().__init__(WordTargets(model, processor, config.position_targets), config, output_dir, progress, on_step)

    @property
    def steps(self) -> int:
        return self.config.vision_pretrain_steps

    def lr_at(self, step: int) -> float:
        return self.config.lr * min(1.0, (step + 1) / max(1, self.config.warmup_steps))

    def param_groups(self, module: WordTargets) -> list[dict[str, Any]]:
        return [{"params": module.trained()}]

    def make_optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        cfg = self.config
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.vision_adam_betas)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        return stage0_batch(self.world, self.config, step * self.world_size + self.rank, self.size)

    def batches(self, start: int) -> Iterator[dict[str, torch.Tensor]]:
        return self.prefetched(functools.partial(stage0_batch, self.world, self.config, size=self.size), start)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": self.model(**batch)}

    def train(self) -> dict[str, Any]:
        # Only what stage 0 trains takes gradients (under DDP an unused trainable parameter stalls the sync).
        flags = [p.requires_grad for p in self.module.parameters()]
        trained = {id(p) for p in self.module.trained()}
        for p in self.module.parameters():
            p.requires_grad_(id(p) in trained)
        try:
            return super().train()
        finally:
            for p, flag in zip(self.module.parameters(), flags):
                p.requires_grad_(flag)


def pretrain_vision(model: nn.Module, processor, world: World, cfg: TrainConfig,
                    progress: Callable[[int, float], None] | None = None,
                    output_dir: str | Path | None = None) -> list[float]:
    """Stage 0 on `model` in place; returns the loss of every step. `progress(steps_done, loss)` is
    called after each step. Checkpoints go to `output_dir` (a temporary folder without one)."""
    losses: list[float] = []

    def on_step(done: int, loss: float) -> None:
        losses.append(loss)
        if progress is not None:
            progress(done, loss)

    with tempfile.TemporaryDirectory() as tmp:
        VisionPretrainer(model, processor, world, cfg, output_dir or tmp, progress=False, on_step=on_step).train()
    return losses


# ============================================================================ instruction tuning
class InstructionTrainer(Trainer):
    """Instruction tuning: the language model and the projector train on captions and questions; the
    vision tower trains at `vision_lr_scale` times the learning rate, or not at all (0)."""

    name = "instruct"
    title = "instruction tuning"

    def __init__(self, model: nn.Module, processor, world: World, config: TrainConfig, output_dir: str | Path,
                 progress: bool = True) -> None:
        self.world, self.batcher = world, Batcher(processor)
        self.tower = find_part(model, "vision_tower")
        super().__init__(model, config, output_dir, progress)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        in_tower = {id(p) for p in self.tower.parameters()}
        groups = [{"params": [p for p in model.parameters() if id(p) not in in_tower]}]
        if self.config.vision_lr_scale > 0:
            groups.append({"params": list(self.tower.parameters()), "lr_scale": self.config.vision_lr_scale})
        return split_for_muon(model, groups) if self.config.optimizer == "muon" else groups

    def make_optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        if self.config.optimizer != "muon":
            return super().make_optimizer(groups)
        cfg = self.config
        return MuonAdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.adam_betas))

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        return batch_for_step(self.world, self.batcher, self.config, step * self.world_size + self.rank)

    def batches(self, start: int) -> Iterator[dict[str, torch.Tensor]]:
        return self.prefetched(functools.partial(batch_for_step, self.world, self.batcher, self.config), start)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": self.model(**batch).loss}

    def train(self) -> dict[str, Any]:
        flags = [p.requires_grad for p in self.tower.parameters()]
        self.tower.requires_grad_(self.config.vision_lr_scale > 0)  # frozen: no backward pass through it at all
        try:
            return super().train()
        finally:
            for p, flag in zip(self.tower.parameters(), flags):
                p.requires_grad_(flag)


def train(model: nn.Module, processor, world: World, cfg: TrainConfig, out_dir: str | Path,
          progress: bool = True) -> dict[str, Any]:
    """Stage 0 (unless `cfg.vision_pretrain_steps` is 0), then instruction tuning, on `model` in place.
    Checkpoints go to `out_dir/stage0/checkpoint` and `out_dir/checkpoint`, and a rerun resumes. Returns
    the instruction-tuning log (mean loss per logged step, seconds), with stage 0's as "vision_loss"."""
    torch.set_flush_denormal(True)  # sporadic long stalls on CPU without it
    out_dir = Path(out_dir)
    stage0 = {"loss": [], "seconds": 0.0}
    if cfg.vision_pretrain_steps:
        stage0 = VisionPretrainer(model, processor, world, cfg, out_dir / "stage0", progress).train()
    log = InstructionTrainer(model, processor, world, cfg, out_dir, progress).train()
    return {**log, "vision_loss": stage0["loss"], "seconds": log["seconds"] + stage0["seconds"]}


def __getattr__(name: str) -> Any:
    if name == "lr_at":
        warnings.warn("halluscope.training.sft.lr_at is deprecated; use halluscope.training.loop.cosine_lr(step, "
                      "lr, warmup_steps, steps)", DeprecationWarning, stacklevel=2)
        return lambda step, cfg: cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LLAVA", "TASKS", "Batcher", "InstructionTrainer", "TrainConfig", "VisionPretrainer",
           "WordTargets", "batch_for_step", "make_example", "patch_labels", "pixel_values", "pretrain_vision",
           "stage0_batch", "train"]
