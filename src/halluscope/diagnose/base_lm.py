"""Text-only base language models for VDGD's base-rank analysis, and the scorers that rank a VLM's tokens.

A scorer answers one question: given a caption record (image, prompt, caption) and character positions in
the caption, what is the rank of the caption's token there under this model, given the text before it?

- `TextLMScorer`: a text-only causal LM (the built-in base LM, or `--base-model`), which sees the prompt
  and the caption so far, never the image (VDGD's base LM: Vicuna for LLaVA-1.5);
- `VLMScorer`: the VLM itself, with the image (the invariant: a greedy caption's tokens rank 0 under it)
  or without it (a base LM for a real model when none is given).

The built-in base LM (`builtin_base_lm`) is the built-in model's Llama decoder, same tokenizer and sizes,
trained on the world's caption and question text alone, without images, by the one training loop
(`training.loop.Trainer`): cached under the halluscope cache, named by a hash of its recipe, resumable.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..seeds import Stream, rng
from ..world import World
from ._forced import forced_pass

BASE_MARKER = "halluscope-base-lm.json"


@dataclass
class BaseLMConfig(Config):
    """Training of the built-in base LM: the built-in model's decoder on the world's text without images."""

    steps: int = field(default=200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "conversations per step"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (AdamW)"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warm-up, then cosine decay"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    adam_betas: tuple[float, float] = field(default=(0.9, 0.98), metadata={"help": "AdamW betas"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    seed: int = field(default=0, metadata={"help": "initialisation and data order"})
    checkpoint_every: int = field(default=100, metadata={"help": "steps between checkpoints"})
    log_every: int = field(default=50, metadata={"help": "steps between logged mean losses"})

    def __post_init__(self) -> None:
        self.check_at_least(1, "steps", "batch_size", "checkpoint_every", "log_every")
        self.adam_betas = tuple(self.adam_betas)


def text_batch(processor, examples, world: World) -> dict[str, torch.Tensor]:
    """Right-padded ids of (image, turns) conversations without their image, the loss on the answers."""
    tok = processor.tokenizer
    ids, labels = [], []
    for _, turns in examples:
        seq, lab = [], []
        for i, (prompt, answer) in enumerate(turns):
            messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
            p = tok(processor.apply_chat_template(messages, add_generation_prompt=True),
                    add_special_tokens=i == 0)["input_ids"]
            a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            seq += p + a
            lab += [-100] * len(p) + a
        ids.append(seq)
        labels.append(lab)
    width = max(map(len, ids))
    return {"input_ids": torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in ids]),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]),
            "labels": torch.tensor([y + [-100] * (width - len(y)) for y in labels])}


def base_lm_recipe(world: World, config: BaseLMConfig, tiny_config=None) -> dict[str, Any]:
    from ..models.tiny import TinyConfig
    from ..training.sft import TrainConfig

    from ..world.language import GRAMMAR_VERSION

    return {"kind": "base-lm", "world_seed": world.seed, "world": world.config.to_dict(), "grammar": GRAMMAR_VERSION,
            "model": (tiny_config or TinyConfig()).recipe(), "base": config.to_dict(),
            "data": TrainConfig().recipe()}


def base_lm_path(recipe: dict[str, Any]) -> Path:
    from ..zoo.tiny import cache_dir

    key = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache_dir() / f"base-lm-{key}"


def builtin_base_lm(world: World | None = None, config: BaseLMConfig | None = None, tiny_config=None,
                    out: str | Path | None = None, progress: bool = True) -> Path:
    """The folder of the built-in base LM (trained first where it is not cached): a `LlamaForCausalLM`
    of the built-in model's language-model config and tokenizer, trained on the world's captions and
    questions (the built-in model's instruction data, `training.sft.make_example`) without the images."""
    from transformers import LlamaForCausalLM

    from ..models.tiny import build_model, build_processor
    from ..training.loop import Trainer
    from ..training.sft import TrainConfig, make_example

    world, config = world or World(), config or BaseLMConfig()
    recipe = base_lm_recipe(world, config, tiny_config)
    out = Path(out) if out is not None else base_lm_path(recipe)
    if (out / BASE_MARKER).exists():
        return out
    processor = build_processor(world)
    text_config = build_model(processor, tiny_config).config.text_config
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(text_config)
    data_config = TrainConfig()

    class BaseLMTrainer(Trainer):
        name = "base-lm"
        title = "base LM: world text"

        def batch(self, step: int) -> dict[str, torch.Tensor]:
            gen = rng(config.seed, Stream.STEP, step)
            return text_batch(processor, [make_example(world, gen, data_config) for _ in range(config.batch_size)],
                              world)

        def compute_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {"loss": self.model(**batch).loss}

    torch.set_flush_denormal(True)
    # One thread: at this size it is faster than two, and far faster on a busy host (0.16 vs 3.2 s a step
    # on two shared cores, where two threads spin against each other).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        log = BaseLMTrainer(model, config, out / "stages", progress).train()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(out)
    processor.tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").write_text(processor.chat_template)
    (out / "train_log.json").write_text(json.dumps(log))
    (out / BASE_MARKER).write_text(json.dumps(recipe, indent=1, default=str))
    shutil.rmtree(out / "stages", ignore_errors=True)
    return out


# ------------------------------------------------------------------------------------------ scorers
def _ranks(logits: torch.Tensor, targets: torch.Tensor) -> list[int]:
    """Rank (0: the argmax) of each target under each row of logits; ties count against the target."""
    chosen = logits.gather(-1, targets[:, None])
    return (logits > chosen).sum(-1).tolist()


class VLMScorer:
    """The VLM as a scorer of its own captions, with the image (`image=True`) or without it."""

    def __init__(self, adapter, image: bool = True) -> None:
        self.adapter, self.image = adapter, image
        self.name = f"{adapter.name} ({'with' if image else 'without'} the image)"

    def ranks(self, record: dict[str, Any], chars: list[int]) -> list[int | None]:
        f = forced_pass(self.adapter, record["image"], record["prompt"], record["caption"], with_image=self.image)
        out: list[int | None] = []
        for c in chars:
            j = f.token_at(c)
            out.append(None if j is None else _ranks(f.logits[j : j + 1], torch.tensor([f.ids[j]]))[0])
        return out


class TextLMScorer:
    """A text-only causal LM and its tokenizer: the context is the prompt (through the tokenizer's chat
    template where it has one) and the caption up to the token."""

    def __init__(self, model, tokenizer, name: str = "base LM") -> None:
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> TextLMScorer:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        template = Path(path) / "chat_template.jinja"
        if getattr(tokenizer, "chat_template", None) is None and template.exists():
            tokenizer.chat_template = template.read_text()
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
        return cls(model, tokenizer, name=str(path))

    def prefix(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
            try:
                return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            except Exception:  # a template that wants string contents
                messages = [{"role": "user", "content": prompt}]
                return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return prompt + "\n"

    @torch.no_grad()
    def ranks(self, record: dict[str, Any], chars: list[int]) -> list[int | None]:
        head = self.prefix(record["prompt"])
        head = head if head.endswith((" ", "\n")) else head + " "
        text = head + record["caption"]
        enc = self.tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        device = next(self.model.parameters()).device
        logits = self.model(input_ids=torch.tensor([ids], device=device)).logits[0].float().cpu()
        out: list[int | None] = []
        for c in chars:
            at = len(head) + c
            j = next((k for k, (s, e) in enumerate(offsets) if s <= at < e and e > s), None)
            out.append(None if j is None or j == 0 else _ranks(logits[j - 1 : j], torch.tensor([ids[j]]))[0])
        return out


def rank_bucket(rank: int) -> str:
    """VDGD's buckets: unshifted (rank 0), marginal (1-2), shifted (>= 3)."""
    return "unshifted" if rank == 0 else ("marginal" if rank <= 2 else "shifted")


def bucket_shares(ranks: list[int]) -> dict[str, float]:
    n = len(ranks)
    buckets = [rank_bucket(r) for r in ranks]
    return {b: (buckets.count(b) / n if n else 0.0) for b in ("unshifted", "marginal", "shifted")}


def mean_or_none(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


__all__ = ["BASE_MARKER", "BaseLMConfig", "TextLMScorer", "VLMScorer", "base_lm_path", "bucket_shares",
           "builtin_base_lm", "rank_bucket", "text_batch"]
