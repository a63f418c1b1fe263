"""Instruction tuning of the built-in model on the world: captions and questions, AdamW, cosine
schedule, a progress bar, checkpoints and exact resume (the data of step k depends only on the
seed and k, so a resumed run sees the same batches as an uninterrupted one).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..world import CAPTION_PROMPTS, CLASSES, COLORS, World
from ..world import GRID, IMAGE_SIZE

TASKS = ("detailed", "short", "qa")


@dataclass
class TrainConfig:
    """Instruction tuning of the built-in model."""

    steps: int = field(default=1400, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=32, metadata={"help": "samples per step"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (AdamW)"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warm-up, then cosine decay to 10 %"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    seed: int = field(default=0, metadata={"help": "initialisation and data order"})
    vision_pretrain_steps: int = field(
        default=900, metadata={"help": "steps of stage 0: per-patch object and colour labels train the vision tower "
                                       "(the analogue of LLaVA starting from a pretrained CLIP); 0 skips it"})
    vision_batch_size: int = field(default=128, metadata={"help": "images per stage-0 step"})
    word_targets: bool = field(
        default=True, metadata={"help": "stage 0 trains tower and projector to put each patch's visual token next to "
                                        "the input embedding of its class and colour words (False: linear heads on "
                                        "the tower, the recipe before 2026-12-01)"})
    connector_steps: int = field(
        default=0, metadata={"help": "steps of stage 1, connector alignment as in LLaVA: only the projector trains, "
                                     "on captions (L_gen; HACL's stage with contrastive weight 0, batch 32, lr 1e-3), "
                                     "before instruction tuning; 0 skips it (the default: stage 0's word targets "
                                     "align the projector)"})
    vision_lr_scale: float = field(
        default=0.0, metadata={"help": "learning rate of the vision tower in instruction tuning, as a fraction of lr; "
                                       "0 (the default) freezes it, as LLaVA does"})
    bf16: bool = field(
        default=False, metadata={"help": "bf16 autocast for the forward pass (weights stay fp32): 2.4x faster steps "
                                         "on AVX512-BF16 CPUs, but the built-in model learned much slower with it "
                                         "(loss 0.37 after 2,400 steps vs 0.31 after 1,000 in fp32)"})
    checkpoint_every: int = field(default=250, metadata={"help": "steps between checkpoints"})
    log_every: int = field(default=50, metadata={"help": "steps between logged mean losses"})
    task_mix: dict[str, float] = field(
        default_factory=lambda: {"detailed": 0.2, "short": 0.05, "qa": 0.75},
        metadata={"help": "share of training samples: detailed caption, short caption, QA conversation"},
    )
    qa_mix: dict[str, float] = field(
        default_factory=lambda: {"existence": 0.6, "attribute": 0.15, "count": 0.15, "relation": 0.1},
        metadata={"help": "question type -> share of the turns of a QA conversation"},
    )
    qa_turns: int = field(
        default=6, metadata={"help": "questions per QA conversation (multi-turn, as in LLaVA's data)"})
    existence_first_steps: int = field(
        default=0, metadata={"help": "a curriculum: the first steps train on existence questions only (tried "
                                     "2026-12-01 with 200: worse, see the README)"})

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"TrainConfig: steps={self.steps} and batch_size={self.batch_size} must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr={self.lr} must be > 0")
        if self.vision_lr_scale < 0:
            raise ValueError(f"TrainConfig.vision_lr_scale={self.vision_lr_scale} must be >= 0 (0 freezes the tower)")
        for name, allowed in (("task_mix", TASKS), ("qa_mix", World.QUESTION_TYPES)):
            mix = getattr(self, name)
            if set(mix) - set(allowed) or any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
                raise ValueError(f"TrainConfig.{name}={mix}: use non-negative shares over {allowed}")
        if self.qa_turns < 1:
            raise ValueError(f"TrainConfig.qa_turns={self.qa_turns} must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pixel_values(arrays: np.ndarray) -> torch.Tensor:
    """(B, 64, 64, 3) uint8 -> the normalised tensor the built-in processor makes (mean = std = 0.5).

    Rendering straight to tensors skips PIL round trips in training; a test checks that it equals
    the processor's output.
    """
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.5


def _choice(rng: np.random.Generator, mix: dict[str, float]) -> str:
    names = list(mix)
    p = np.array([mix[n] for n in names], dtype=float)
    return names[rng.choice(len(names), p=p / p.sum())]


def make_example(world: World, rng: np.random.Generator, cfg: TrainConfig, existence_only: bool = False):
    """(image, [(prompt, answer), ...]): a caption, or a conversation of `qa_turns` questions."""
    scene = world.scene("train", int(rng.integers(world.config.train_size)))
    task = "qa" if existence_only else _choice(rng, cfg.task_mix)
    qa_mix = {"existence": 1.0} if existence_only else cfg.qa_mix
    if task in CAPTION_PROMPTS:
        turns = [(CAPTION_PROMPTS[task], world.caption(scene, task))]
    else:
        turns, asked = [], set()
        for _ in range(4 * cfg.qa_turns):  # a few tries: some types do not apply, repeats are skipped
            q = world.question(scene, _choice(rng, qa_mix), rng)
            if q is not None and q["question"] not in asked:
                asked.add(q["question"])
                turns.append((q["question"], q["answer"]))
            if len(turns) == cfg.qa_turns:
                break
        if not turns:  # none of the drawn types applied: an existence question always does
            q = world.question(scene, "existence", rng)
            turns.append((q["question"], q["answer"]))
    return world.render_array(scene), turns


class Batcher:
    """Turns (image, [(prompt, answer), ...]) conversations into right-padded model inputs with the
    loss on the answers only. Prompts go through the processor's chat template, as at inference."""

    def __init__(self, processor) -> None:
        self.tok = processor.tokenizer
        self.image_token = processor.image_token
        self.n_image_tokens = (IMAGE_SIZE // processor.patch_size) ** 2
        self.processor = processor
        self._cache: dict[tuple[str, bool], list[int]] = {}

    def turn_ids(self, prompt: str, first: bool) -> list[int]:
        """The user turn up to "ASSISTANT:"; the first turn carries BOS and the image tokens."""
        key = (prompt, first)
        if key not in self._cache:
            content = ([{"type": "image"}] if first else []) + [{"type": "text", "text": prompt}]
            text = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
            text = text.replace(self.image_token, self.image_token * self.n_image_tokens)
            self._cache[key] = self.tok(text, add_special_tokens=first)["input_ids"]
        return self._cache[key]

    def __call__(self, examples) -> dict[str, torch.Tensor]:
        ids, labels = [], []
        for _, turns in examples:
            seq, lab = [], []
            for i, (prompt, answer) in enumerate(turns):
                p = self.turn_ids(prompt, first=i == 0)
                a = self.tok(answer, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
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
            "pixel_values": pixel_values(np.stack([e[0] for e in examples])),
        }


def batch_for_step(world: World, batcher: Batcher, cfg: TrainConfig, step: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng([cfg.seed, step])
    first = step < cfg.existence_first_steps
    return batcher([make_example(world, rng, cfg, first) for _ in range(cfg.batch_size)])


def patch_labels(scene, grid: int) -> tuple[list[int], list[int]]:
    """Per-cell targets for stage 0: class index + 1 (0 = empty cell) and colour index + 1."""
    cls, col = [0] * grid * grid, [0] * grid * grid
    for o in scene.objects:
        cell = o.row * grid + o.col
        cls[cell], col[cell] = CLASSES.index(o.cls) + 1, list(COLORS).index(o.color) + 1
    return cls, col


def pretrain_vision(model, processor, world: World, cfg: TrainConfig, progress=None) -> list[float]:
    """Stage 0: train the vision tower to tell, per patch, which object and colour it holds.

    Real LLaVA starts from a CLIP tower pretrained on image-text pairs, whose features its stage 1
    projects next to the language model's word embeddings. The built-in model gets both from the
    world's own images: with `cfg.word_targets`, each patch's projected visual token is classified by
    cosine similarity against the (frozen) input embeddings of the class and colour words, plus a
    learned "empty" vector each, so tower and projector train and visual tokens start near the words
    they show. Without it, two linear heads read the tower's patch states (the recipe before
    2026-12-01). Heads and "empty" vectors are thrown away afterwards.
    """
    tower = model.model.vision_tower
    if cfg.word_targets:
        projector = model.model.multi_modal_projector
        tok, embed = processor.tokenizer, model.get_input_embeddings().weight.detach()
        words = [torch.nn.functional.normalize(torch.stack([embed[tok.convert_tokens_to_ids(w.lower())] for w in names]),
                                               dim=-1) for names in (CLASSES, COLORS)]  # fixed directions
        heads = torch.nn.ParameterList([torch.nn.Parameter(0.02 * torch.randn(2, embed.shape[1])),  # "empty" rows
                                        torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))])  # logit scale, as CLIP
        trained = [*tower.parameters(), *projector.parameters(), *heads.parameters()]

        def logits(states):
            v = torch.nn.functional.normalize(projector(states), dim=-1).reshape(-1, embed.shape[1])
            scale = heads[1].clamp(max=math.log(100)).exp()
            empty = torch.nn.functional.normalize(heads[0], dim=-1)
            return [scale * v @ torch.cat([empty[k : k + 1], words[k]]).T for k in (0, 1)]
    else:
        width = tower.config.hidden_size
        heads = torch.nn.ModuleList([torch.nn.Linear(width, len(CLASSES) + 1), torch.nn.Linear(width, len(COLORS) + 1)])
        trained = [*tower.parameters(), *heads.parameters()]

        def logits(states):
            return [h(states.reshape(-1, width)) for h in heads]

    opt = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses = []
    for step in range(cfg.vision_pretrain_steps):
        rng = np.random.default_rng([cfg.seed, 10**9 + step])
        scenes = [world.scene("train", int(i)) for i in rng.integers(world.config.train_size, size=cfg.vision_batch_size)]
        pixels = pixel_values(np.stack([world.render_array(s) for s in scenes]))
        labels = [patch_labels(s, GRID) for s in scenes]
        targets = [torch.tensor([lab[k] for lab in labels]).flatten() for k in (0, 1)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            feats = tower(pixels, output_hidden_states=True).hidden_states[model.config.vision_feature_layer][:, 1:]
            out = logits(feats)
        loss = sum(torch.nn.functional.cross_entropy(lg.float(), t) for lg, t in zip(out, targets))
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.word_targets:  # without it, 2 of 4 seeds stalled near loss 1.9 (cosine logits, learned scale)
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, losses[-1])
    return losses


class StepBatches(torch.utils.data.Dataset):
    """Item k is the batch of step k: a DataLoader worker process builds them ahead of the
    training loop (in a thread, this pure-Python work would compete with the loop for the GIL)."""

    def __init__(self, world: World, batcher: Batcher, cfg: TrainConfig) -> None:
        self.world, self.batcher, self.cfg = world, batcher, cfg

    def __len__(self) -> int:
        return self.cfg.steps

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        return batch_for_step(self.world, self.batcher, self.cfg, step)


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(model, processor, world: World, cfg: TrainConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Train `model` in place; checkpoints go to `out_dir/checkpoint` and a rerun resumes from
    there. Returns the training log (loss per logged step, time)."""
    out_dir = Path(out_dir)
    ckpt = out_dir / "checkpoint"
    torch.set_flush_denormal(True)  # sporadic long stalls on CPU without it
    tower = model.model.vision_tower
    if cfg.vision_lr_scale == 1:  # one group, as before the option existed: the same updates to the last bit
        groups = [{"params": list(model.parameters()), "scale": 1.0}]
    else:
        in_tower = {id(p) for p in tower.parameters()}
        groups = [{"params": [p for p in model.parameters() if id(p) not in in_tower], "scale": 1.0}]
        if cfg.vision_lr_scale > 0:
            groups.append({"params": list(tower.parameters()), "scale": cfg.vision_lr_scale})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    trained = [p for g in groups for p in g["params"]]
    start, log = 0, {"loss": [], "seconds": 0.0}
    if (ckpt / "state.pt").exists():
        state = torch.load(ckpt / "state.pt", weights_only=False)
        if state["train_config"] != cfg.to_dict():
            raise ValueError(f"{ckpt} was written with another training config; delete it to start over")
        from safetensors.torch import load_file

        model.load_state_dict(load_file(ckpt / "model.safetensors"))
        opt.load_state_dict(state["optimizer"])
        start, log = state["step"], state["log"]
    batcher = Batcher(processor)
    model.train()
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), transient=False)
        bar.start()
    t0 = time.time()
    loader = torch.utils.data.DataLoader(StepBatches(world, batcher, cfg), batch_size=None,
                                         sampler=range(start, cfg.steps), num_workers=1, prefetch_factor=4)
    try:
        if not (ckpt / "state.pt").exists() and cfg.vision_pretrain_steps > 0:
            vtask = bar.add_task("stage 0: vision tower", total=cfg.vision_pretrain_steps, loss="-") if bar else None
            update = (lambda i, loss: bar.update(vtask, completed=i, loss=f"{loss:.3f}")) if bar else None
            log["vision_loss"] = [round(x, 4) for x in pretrain_vision(model, processor, world, cfg, update)][:: cfg.log_every]
            log["seconds"] += time.time() - t0
            t0 = time.time()
            _save_checkpoint(model, opt, cfg, 0, log, ckpt)  # stage 0 is never redone on resume
        tower.requires_grad_(cfg.vision_lr_scale > 0)  # frozen: no backward pass through it at all
        task = bar.add_task("instruction tuning", total=cfg.steps, completed=start, loss="-") if bar else None
        window: list[float] = []
        for step, batch in zip(range(start, cfg.steps), loader):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg) * g["scale"]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            opt.step()
            value = loss.item()
            window.append(value)
            if (step + 1) % cfg.log_every == 0:
                log["loss"].append([step + 1, round(sum(window) / len(window), 4)])
                window = []
            if bar is not None:
                bar.update(task, advance=1, loss=f"{value:.3f}")
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                log["seconds"] += time.time() - t0
                t0 = time.time()
                _save_checkpoint(model, opt, cfg, step + 1, log, ckpt)
    finally:
        tower.requires_grad_(True)
        if bar is not None:
            bar.stop()
    model.eval()
    return log


def state_tensors(model) -> dict[str, torch.Tensor]:
    """The model's state dict as safetensors can write it: every tensor its own copy (tied input and
    output embeddings share storage, which `save_file` refuses)."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def _save_checkpoint(model, opt, cfg: TrainConfig, step: int, log: dict, ckpt: Path) -> None:
    from safetensors.torch import save_file

    ckpt.mkdir(parents=True, exist_ok=True)
    # Write to temporary names then rename, so a kill mid-write leaves the previous checkpoint.
    save_file(state_tensors(model), ckpt / "model.tmp")
    torch.save({"optimizer": opt.state_dict(), "step": step, "log": log, "train_config": cfg.to_dict()},
               ckpt / "state.tmp")
    os.replace(ckpt / "model.tmp", ckpt / "model.safetensors")
    os.replace(ckpt / "state.tmp", ckpt / "state.pt")
    (ckpt / "progress.json").write_text(json.dumps({"step": step, "of": cfg.steps}))
