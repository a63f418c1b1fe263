"""Preference alignment against hallucination: DPO and RLHF-V's dense DPO (DDPO).

- DPO: Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward
  Model", NeurIPS 2023.
- DDPO: Yu et al., "RLHF-V: Towards Trustworthy MLLMs via Behavior Alignment from Fine-grained
  Correctional Human Feedback", CVPR 2024. The rejected response is the model's own output and the
  chosen one its minimal correction; the tokens the correction changed weigh `gamma` times more in
  the sequence log-probability, so the gradient goes to the hallucinated words rather than to the
  many words both responses share.

On the world, pairs come for free: the model describes training images, `world_correction` fixes
what the ground truth contradicts (`world_preference_pairs`). Any other pairs work too: a list of
{"image", "prompt", "chosen", "rejected"} records.

`align(model, method="ddpo", config=AlignConfig(...), output_dir=...)` is one small accelerate
loop: a frozen reference model (or, with LoRA through peft, the same model with its adapter
switched off), a progress bar, checkpoints and exact resume (the pairs of step k depend only on
the seed and k), data-parallel under `accelerate launch --num_processes N`, CPU included.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..images import load_image
from ..models.parts import find_part
from ..world import CAPTION_PROMPTS, World
from .losses import ddpo_logps, ddpo_weights, dpo_loss, token_logps
from .sft import lr_at

METHODS = ("sft", "dpo", "ddpo")  # sft: the same pairs and steps, chosen responses only (a control)
# Defaults that differ between the two papers; None in AlignConfig means "the method's own".
PAPER_DEFAULTS = {
    "dpo": {"beta": 0.1, "average_logps": False},  # DPO: summed log-probs, beta 0.1
    "ddpo": {"beta": 0.5, "average_logps": True},  # RLHF-V: weighted mean log-probs, beta 0.5
    "sft": {"beta": 0.1, "average_logps": True},  # beta unused: mean token NLL of the chosen responses
}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class AlignConfig:
    """DPO / DDPO training. Defaults are RLHF-V's (gamma 5, min_match 3, lr 5e-7 for a 13B model);
    the built-in model needs a far larger learning rate (1e-4 works)."""

    beta: float | None = field(default=None, metadata={
        "help": "strength of the KL anchor to the reference model; "
                "None: 0.1 for dpo (DPO paper), 0.5 for ddpo (RLHF-V)"})
    gamma: float = field(default=5.0, metadata={"help": "DDPO: weight of the tokens the correction changed (1 = DPO)"})
    min_match: int = field(default=3, metadata={
        "help": "DDPO: shared token runs shorter than this count as changed (RLHF-V's min_match_size)"})
    average_logps: bool | None = field(default=None, metadata={
        "help": "score a response by its (weighted) mean token log-prob instead of the sum; None: sum for dpo, "
                "mean for ddpo, as in each paper"})
    steps: int = field(default=200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "preference pairs per step and process"})
    lr: float = field(default=5e-7, metadata={"help": "peak learning rate (AdamW)"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warm-up, then cosine decay to 10 %"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    sft_weight: float = field(default=0.0, metadata={
        "help": "add this times the chosen responses' negative log-prob (RLHF-V's SFT_weight)"})
    train_projector: bool = field(default=True, metadata={
        "help": "train the projector along with the language model (the vision tower stays frozen)"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters on the language model (needs peft)"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scale numerator"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    lora_targets: tuple[str, ...] = field(default=LORA_TARGETS, metadata={
        "help": "linear layers of the language model that get adapters"})
    merge_lora: bool = field(default=True, metadata={"help": "save the model with the adapters merged in"})
    n_pairs: int = field(default=512, metadata={"help": "world: images whose captions become preference pairs"})
    pair_split: str = field(default="train", metadata={"help": "world: split the pair images come from"})
    pair_start: int = field(default=150_000, metadata={
        "help": "world: index of the first pair image (away from the images instruction tuning sees most)"})
    prompt: str = field(default=CAPTION_PROMPTS["detailed"], metadata={"help": "world: the instruction"})
    max_new_tokens: int = field(default=64, metadata={"help": "world: length of the model's own captions"})
    generation_batch_size: int = field(default=32, metadata={"help": "world: images per generation batch"})
    seed: int = field(default=0, metadata={"help": "data order"})
    checkpoint_every: int = field(default=50, metadata={"help": "steps between checkpoints"})
    log_every: int = field(default=10, metadata={"help": "steps between logged means"})

    def __post_init__(self) -> None:
        def fail(name: str, fix: str) -> None:
            raise ValueError(f"AlignConfig.{name}={getattr(self, name)!r} is invalid: {fix}")

        if self.beta is not None and self.beta <= 0:
            fail("beta", "use a positive beta")
        if self.gamma <= 0:
            fail("gamma", "use gamma > 0 (1 = plain DPO, RLHF-V uses 5)")
        if self.min_match < 1:
            fail("min_match", "use min_match >= 1")
        for name in ("steps", "batch_size", "n_pairs", "max_new_tokens", "generation_batch_size",
                     "checkpoint_every", "log_every", "lora_r"):
            if getattr(self, name) < 1:
                fail(name, "use a value >= 1")
        if self.lr <= 0:
            fail("lr", "use a positive learning rate")
        if not 0 <= self.lora_dropout < 1:
            fail("lora_dropout", "use a probability in [0, 1)")
        self.lora_targets = tuple(self.lora_targets)

    def resolved(self, method: str) -> AlignConfig:
        """This config with the method's paper defaults filled in where a field is None."""
        if method not in METHODS:
            raise ValueError(f"unknown alignment method {method!r}; use one of {METHODS}")
        filled = {k: v for k, v in PAPER_DEFAULTS[method].items() if getattr(self, k) is None}
        return replace(self, **filled)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ============================================================================ inputs
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
        if k not in out and k not in ("attention_mask",) and k not in per_token:
            out[k] = v
    return out


def response_weights(labels: torch.Tensor, n_pairs: int, method: str, gamma: float, min_match: int) -> torch.Tensor:
    """(2B, T-1) token weights aligned with `token_logps(logits, labels)`, for labels holding the B
    chosen responses then the B rejected ones: 0 off the response, 1 on it, and for DDPO `gamma`
    on the tokens of each pair's replacement spans."""
    mask = labels[:, 1:] != -100
    weights = mask.float()
    if method == "ddpo":
        for i in range(n_pairs):
            chosen = labels[i, 1:][mask[i]]
            rejected = labels[n_pairs + i, 1:][mask[n_pairs + i]]
            w_chosen, w_rejected = ddpo_weights(chosen, rejected, gamma, min_match)
            weights[i, mask[i]] = w_chosen
            weights[n_pairs + i, mask[n_pairs + i]] = w_rejected
    return weights


# ============================================================================ pairs
def world_preference_pairs(adapter, world: World, n: int, split: str = "train", start: int = 0,
                           prompt: str = CAPTION_PROMPTS["detailed"], max_new_tokens: int = 64,
                           batch_size: int = 32, progress: bool = False) -> list[dict[str, Any]]:
    """Preference pairs from the model's own captions of `n` world images (RLHF-V's recipe with
    the ground truth as the annotator): rejected = what the model said, chosen = its minimal
    correction (`world_correction`). A caption outside the world's grammar (cut short, garbled)
    is paired with the true caption instead ("minimal": False). Captions that are already true
    give no pair. Each record: {"scene": [split, index], "prompt", "chosen", "rejected", "minimal"}.
    """
    from ..hallucinate import world_correction

    style = "short" if prompt == CAPTION_PROMPTS["short"] else "detailed"
    pairs = []
    for s in range(start, start + n, batch_size):
        indices = list(range(s, min(s + batch_size, start + n)))
        scenes = [world.scene(split, i) for i in indices]
        outputs = adapter.generate([world.render(sc) for sc in scenes], [prompt] * len(scenes),
                                   max_new_tokens=max_new_tokens)
        for i, scene, said in zip(indices, scenes, outputs):
            corrected = world_correction(scene, said)
            if corrected is None:
                rejected, chosen, minimal = said, world.caption(scene, style), False
            else:
                (rejected, chosen), minimal = corrected, True
            if rejected != chosen:
                pairs.append({"scene": [split, i], "prompt": prompt, "chosen": chosen, "rejected": rejected,
                              "minimal": minimal})
        if progress:
            print(f"preference pairs: {min(s + batch_size, start + n) - start}/{n} images, {len(pairs)} pairs",
                  flush=True)
    return pairs


def _pair_image(pair: dict[str, Any], world: World | None):
    if "scene" in pair:
        if world is None:
            raise ValueError("world pairs need the world they come from: pass world=")
        split, index = pair["scene"]
        return world.render(world.scene(split, int(index)))

    return load_image(pair["image"])


def pair_batch(processor, pairs: Sequence[dict[str, Any]], world: World | None = None) -> dict[str, torch.Tensor]:
    """One forward batch: the B chosen responses, then the B rejected ones, each after its image
    and prompt (trl's "concatenated forward": one pass scores both sides)."""
    images = [_pair_image(p, world) for p in pairs]
    prompts = [p["prompt"] for p in pairs]
    return encode(processor, images + images, prompts + prompts,
                  [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])


# ============================================================================ training
def _language_model_lora_regex(model, targets: Sequence[str]) -> str:
    """A peft target regex for `targets` inside the language model only (the vision tower of CLIP
    also has q_proj/k_proj/v_proj)."""

    lm = find_part(model, "language_model")
    prefix = next(name for name, module in model.named_modules() if module is lm)
    return rf"{re.escape(prefix)}\..*\.({'|'.join(map(re.escape, targets))})"


def _trainable_policy(model, cfg: AlignConfig):
    """Freeze what does not train; with LoRA, wrap the model in peft adapters."""

    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.lora:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as e:
            raise ImportError("AlignConfig(lora=True) needs peft: pip install 'halluscope[align]'") from e
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=_language_model_lora_regex(model, cfg.lora_targets))
        return get_peft_model(model, lora)
    parts = [find_part(model, "language_model"), model.get_output_embeddings()]
    if cfg.train_projector:
        parts.append(find_part(model, "projector"))
    for part in parts:
        if part is not None:
            for p in part.parameters():
                p.requires_grad_(True)
    return model


def _forward_scores(model, batch: dict[str, torch.Tensor], weights: torch.Tensor, average: bool) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits
    per_token, _ = token_logps(logits, batch["labels"])
    return ddpo_logps(per_token, weights, average)


def _load_pairs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def align(model, method: str = "ddpo", config: AlignConfig | None = None, output_dir: str | Path = "aligned",
          world: World | None = None, pairs: Sequence[dict[str, Any]] | None = None,
          progress: bool = True) -> Path:
    """Align a VLM with DPO or DDPO and save it (`save_pretrained`, with its processor) in
    `output_dir`, which also holds the pairs (pairs.jsonl), the log (align_log.json) and, while
    training, the checkpoint a rerun resumes from. Returns `output_dir`.

    `model`: a `VLMAdapter` or anything `halluscope.load_model` takes ("tiny", a folder, a hub id).
    `pairs`: preference pairs ({"image" or "scene", "prompt", "chosen", "rejected"}); without them,
    pairs are built from the model's own captions of `world` (default `World()`).
    The model is trained in place. A finished `output_dir` is returned as it is (same method and
    config; another one raises). For data parallelism launch with `accelerate launch --num_processes
    N` (on CPU add `--multi_gpu`: it starts N processes on gloo, where `--cpu` starts only one);
    each process takes `config.batch_size` pairs per step.
    """
    from accelerate import Accelerator

    from ..models import MARKER, load_model
    from ..runner import package_versions, write_json

    adapter = load_model(model) if isinstance(model, str | os.PathLike) else model
    source = getattr(adapter, "name", None)
    world = world or World()
    cfg = (config or AlignConfig()).resolved(method)
    out = Path(output_dir)
    ckpt = out / "checkpoint"
    if (out / "align_log.json").exists():
        done = json.loads((out / "align_log.json").read_text())
        if done["method"] != method or done["config"] != json.loads(json.dumps(cfg.to_dict())):
            raise ValueError(f"{out} holds a model aligned with another method or config; use another output_dir")
        return out
    # Without GPUs, `accelerate launch --multi_gpu --num_processes N` starts N CPU processes that talk over gloo.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process

    # -- pairs: built once by the main process, reused on resume
    pairs_file = out / "pairs.jsonl"
    if pairs is not None:
        pairs = list(pairs)
    else:
        if main and not pairs_file.exists():
            out.mkdir(parents=True, exist_ok=True)
            built = world_preference_pairs(adapter, world, cfg.n_pairs, cfg.pair_split, cfg.pair_start, cfg.prompt,
                                           cfg.max_new_tokens, cfg.generation_batch_size, progress=progress)
            tmp = pairs_file.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(p) + "\n" for p in built))
            os.replace(tmp, pairs_file)
        accelerator.wait_for_everyone()
        pairs = _load_pairs(pairs_file)
    if not pairs:
        raise ValueError("no preference pairs: every caption was already true, or none were given; "
                         "raise n_pairs or pass pairs=")

    # -- reference and policy
    policy = adapter.model
    reference = None if cfg.lora else copy.deepcopy(policy).eval().requires_grad_(False)
    policy = _trainable_policy(policy, cfg)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    policy, opt = accelerator.prepare(policy, opt)
    if reference is not None:
        reference.to(accelerator.device)

    start, log = 0, {"loss": [], "reward_accuracy": [], "margin": [], "seconds": 0.0}
    old_ckpt = ckpt.with_name(ckpt.name + ".old")
    if main and not (ckpt / "state.json").exists() and (old_ckpt / "state.json").exists():
        os.replace(old_ckpt, ckpt)  # killed between the two renames of _save_checkpoint
    accelerator.wait_for_everyone()
    if (ckpt / "state.json").exists():
        state = json.loads((ckpt / "state.json").read_text())
        if state["config"] != json.loads(json.dumps(cfg.to_dict())) or state["method"] != method:
            raise ValueError(f"{ckpt} was written with another method or config; delete it to start over")
        accelerator.load_state(str(ckpt))
        start, log = state["step"], state["log"]

    bar = task = None
    if progress and main:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn())
        bar.start()
        task = bar.add_task(method, total=cfg.steps, completed=start, loss="-")
    processor = adapter.processor
    rank, n_proc = accelerator.process_index, accelerator.num_processes
    window: dict[str, list[float]] = {"loss": [], "reward_accuracy": [], "margin": []}
    t0 = time.time()
    policy.train()
    try:
        for step in range(start, cfg.steps):
            rng = np.random.default_rng([cfg.seed, step])
            global_batch = cfg.batch_size * n_proc
            picked = rng.choice(len(pairs), size=global_batch, replace=len(pairs) < global_batch)
            batch_pairs = [pairs[i] for i in picked[rank::n_proc]]
            batch = {k: v.to(accelerator.device) for k, v in pair_batch(processor, batch_pairs, world).items()}
            b = len(batch_pairs)
            weights = response_weights(batch["labels"], b, method, cfg.gamma, cfg.min_match).to(accelerator.device)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            scores = _forward_scores(policy, batch, weights, cfg.average_logps)
            if method == "sft":  # the control arm: imitate the corrections, same pairs, same steps
                ref_scores = scores.detach()
                loss = -scores[:b].mean()
            else:
                with torch.no_grad():
                    if reference is not None:
                        ref_scores = _forward_scores(reference, batch, weights, cfg.average_logps)
                    else:  # LoRA: the reference is the same model with its adapters switched off
                        unwrapped = accelerator.unwrap_model(policy)
                        with unwrapped.disable_adapter():
                            ref_scores = _forward_scores(unwrapped, batch, weights, cfg.average_logps)
                loss = dpo_loss(scores[:b], scores[b:], ref_scores[:b], ref_scores[b:], cfg.beta)
            if cfg.sft_weight:
                loss = loss - cfg.sft_weight * scores[:b].mean()
            opt.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
            opt.step()

            with torch.no_grad():
                rewards = cfg.beta * (scores.detach() - ref_scores)
                margin = rewards[:b] - rewards[b:]
                stats = torch.stack([loss.detach(), (margin > 0).float().mean(), margin.mean()])
            stats = accelerator.gather(stats[None]).mean(0).tolist()  # the same numbers on every process
            _log_means(log, window, stats, step, cfg)
            if bar is not None:
                bar.update(task, advance=1, loss=f"{stats[0]:.4f}")
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                log["seconds"] += time.time() - t0
                t0 = time.time()
                _save_checkpoint(accelerator, ckpt, {"step": step + 1, "log": log, "method": method,
                                                     "config": cfg.to_dict()})
    finally:
        if bar is not None:
            bar.stop()
    log["seconds"] += time.time() - t0

    # -- the aligned model
    accelerator.wait_for_everyone()
    final = accelerator.unwrap_model(policy)
    if cfg.lora and cfg.merge_lora:
        final = final.merge_and_unload()
    final.eval()
    if main:
        final.save_pretrained(out)
        processor.save_pretrained(out)
        write_json(out / "align_log.json", {"method": method, "config": cfg.to_dict(), "paper_defaults":
                                            PAPER_DEFAULTS[method], "pairs": len(pairs), "source": source,
                                            "processes": n_proc, "versions": package_versions(), "log": log})
        source_marker = Path(str(source)) / MARKER if source else None
        if source_marker is not None and source_marker.exists():  # keep the built-in model's loading rules
            marker = json.loads(source_marker.read_text())
            marker["aligned"] = {"method": method, "config": cfg.to_dict(), "from": str(source)}
            (out / MARKER).write_text(json.dumps(marker, indent=1, default=str))
        shutil.rmtree(ckpt, ignore_errors=True)
    accelerator.wait_for_everyone()
    return out


def _log_means(log: dict[str, list], window: dict[str, list[float]], values: list[float], step: int, cfg) -> None:
    """Add this step's values to the window; every `cfg.log_every` steps (and at the last) append
    the window's means to the log as [step, mean] and empty it."""
    for k, v in zip(window, values):
        window[k].append(v)
    if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
        for k in window:
            log[k].append([step + 1, round(sum(window[k]) / len(window[k]), 5)])
            window[k] = []


def _no_shared_tensor_warning(record: logging.LogRecord) -> bool:
    """Tied input and output embeddings share storage: accelerate saves them once and warns at every
    checkpoint. Resuming restores the tie (test_alignment_resumes_to_the_same_weights)."""
    return "Removed shared tensor" not in record.getMessage()


def _save_checkpoint(accelerator, ckpt: Path, state: dict[str, Any]) -> None:
    """accelerate's state (model, optimizer, RNG) plus our step and log, replaced atomically: a
    kill mid-write leaves the previous checkpoint."""
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    log = logging.getLogger("accelerate.utils.other")
    log.addFilter(_no_shared_tensor_warning)
    try:
        accelerator.save_state(str(tmp))
    finally:
        log.removeFilter(_no_shared_tensor_warning)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "state.json").write_text(json.dumps(state, default=str))
        old = ckpt.with_name(ckpt.name + ".old")
        if ckpt.exists():
            os.replace(ckpt, old)
        os.replace(tmp, ckpt)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


__all__ = ["METHODS", "PAPER_DEFAULTS", "AlignConfig", "align", "encode", "pair_batch", "prompt_text",
           "response_weights", "world_preference_pairs"]
