"""Preference alignment against hallucination: DPO, RLHF-V's dense DPO (DDPO), and a supervised
control on the same pairs.

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

    train_preference(halluscope.load_model("tiny"), DDPOConfig(steps=200, lr=1e-4), "tiny-ddpo")

The config's class picks the method (`METHODS`). The reference model is a frozen copy of the
policy, or, with LoRA, the policy with its adapters switched off.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import Config
from ..images import load_image
from ..models import MARKER
from ..models.parts import find_part
from ..seeds import Stream, rng
from ..world import CAPTION_PROMPTS, World
from .data import encode
from .loop import Trainer, jsonable
from .losses import ddpo_logps, ddpo_weights, dpo_loss, token_logps

DPO = {"title": "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
       "authors": "Rafailov et al.", "venue": "NeurIPS 2023", "url": "https://arxiv.org/abs/2305.18290"}
RLHF_V = {"title": "RLHF-V: Towards Trustworthy MLLMs via Behavior Alignment from Fine-grained Correctional "
                   "Human Feedback", "authors": "Yu et al.", "venue": "CVPR 2024",
          "url": "https://arxiv.org/abs/2312.00849"}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ============================================================================ configs
@dataclass
class PreferenceConfig(Config):
    """What every method trained on preference pairs shares: the loop, what trains, the pairs. The
    built-in model needs a far larger learning rate than the papers' (1e-4 works)."""

    method: ClassVar[str] = ""

    steps: int = field(default=200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "preference pairs per step and process"})
    lr: float = field(default=5e-7, metadata={"help": "peak learning rate (AdamW); RLHF-V's, for a 13B model"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warm-up, then cosine decay to 10 %"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    adam_betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "AdamW betas"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    average_logps: bool = field(default=True, metadata={
        "help": "score a response by its (weighted) mean token log-prob instead of the sum"})
    train_projector: bool = field(default=True, metadata={
        "help": "train the projector along with the language model (the vision tower stays frozen)"})
    lora: bool = field(default=False, metadata={
        "help": "train LoRA adapters on the language model instead of its weights (needs peft)"})
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
        self.check_at_least(1, "steps", "batch_size", "n_pairs", "max_new_tokens", "generation_batch_size",
                            "checkpoint_every", "log_every", "lora_r")
        if self.lr <= 0:
            self.fail("lr", "use a positive learning rate")
        if self.max_grad_norm <= 0:
            self.fail("max_grad_norm", "use a positive norm")
        if not 0 <= self.lora_dropout < 1:
            self.fail("lora_dropout", "use a probability in [0, 1)")
        self.adam_betas = tuple(self.adam_betas)
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            self.fail("adam_betas", "use two numbers in [0, 1), e.g. (0.9, 0.999)")
        self.lora_targets = tuple(self.lora_targets)


@dataclass
class PairSFTConfig(PreferenceConfig):
    """The control arm: the same pairs and steps, the mean token NLL of the chosen responses only."""

    method: ClassVar[str] = "sft"


@dataclass
class DPOConfig(PreferenceConfig):
    """DPO with the paper's defaults: beta 0.1, summed log-probs."""

    method: ClassVar[str] = "dpo"
    _paper = DPO

    beta: float = field(default=0.1, metadata={"help": "strength of the KL anchor to the reference model"})
    average_logps: bool = field(default=False, metadata={
        "help": "score a response by its mean token log-prob instead of the sum (DPO: the sum)"})
    sft_weight: float = field(default=0.0, metadata={
        "help": "add this times the chosen responses' negative log-prob (RLHF-V's SFT_weight)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            self.fail("beta", "use a positive beta")


@dataclass
class DDPOConfig(DPOConfig):
    """RLHF-V's dense DPO with the paper's defaults: beta 0.5, weighted mean log-probs, gamma 5,
    min_match 3."""

    method: ClassVar[str] = "ddpo"
    _paper = RLHF_V

    beta: float = field(default=0.5, metadata={"help": "strength of the KL anchor to the reference model"})
    average_logps: bool = field(default=True, metadata={
        "help": "score a response by its weighted mean token log-prob instead of the sum (RLHF-V: the mean)"})
    gamma: float = field(default=5.0, metadata={"help": "weight of the tokens the correction changed (1 = DPO)"})
    min_match: int = field(default=3, metadata={
        "help": "shared token runs shorter than this count as changed (RLHF-V's min_match_size)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gamma <= 0:
            self.fail("gamma", "use gamma > 0 (1 = plain DPO, RLHF-V uses 5)")
        if self.min_match < 1:
            self.fail("min_match", "use min_match >= 1")


METHODS: dict[str, type[PreferenceConfig]] = {"sft": PairSFTConfig, "dpo": DPOConfig, "ddpo": DDPOConfig}


def preference_config(method: str, **fields: Any) -> PreferenceConfig:
    """The config of `method` ("sft", "dpo" or "ddpo") with `fields` set."""
    if method not in METHODS:
        raise ValueError(f"unknown preference method {method!r}; use one of {', '.join(METHODS)}")
    return METHODS[method](**fields)


# ============================================================================ pairs
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
def _language_model_lora_regex(model: nn.Module, targets: Sequence[str]) -> str:
    """A peft target regex for `targets` inside the language model only (the vision tower of CLIP
    also has q_proj/k_proj/v_proj)."""
    lm = find_part(model, "language_model")
    prefix = next(name for name, module in model.named_modules() if module is lm)
    return rf"{re.escape(prefix)}\..*\.({'|'.join(map(re.escape, targets))})"


def trainable_policy(model: nn.Module, cfg: PreferenceConfig, peft_config: Any = None) -> nn.Module:
    """Freeze what does not train; with LoRA, wrap the model in peft adapters (`peft_config` as given,
    or one built from the config's lora_* fields, on the language model only)."""
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.lora or peft_config is not None:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as e:
            raise ImportError(f"{type(cfg).__name__}.lora needs peft: pip install 'halluscope[align]'") from e
        if peft_config is None:
            peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                     target_modules=_language_model_lora_regex(model, cfg.lora_targets))
        # The adapters' random initial values come from the config's seed, not from whatever state the
        # process's generator is in, so that two runs of one config train alike.
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            return get_peft_model(model, peft_config)
    parts = [find_part(model, "language_model"), model.get_output_embeddings()]
    if cfg.train_projector:
        parts.append(find_part(model, "projector"))
    for part in parts:
        if part is not None:
            for p in part.parameters():
                p.requires_grad_(True)
    return model


def sequence_scores(model: nn.Module, batch: dict[str, torch.Tensor], weights: torch.Tensor,
                    average: bool) -> torch.Tensor:
    """(2B,) (weighted) log-probabilities of the responses in `batch` under `model`."""
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    per_token, _ = token_logps(logits, batch["labels"])
    return ddpo_logps(per_token, weights, average)


class PreferenceTrainer(Trainer):
    """DPO, DDPO or the supervised control, chosen by the config's class, in the training loop.

    Step k draws its pairs with the seed and k; under N processes the step's N * batch_size pairs
    are split between them, so N processes train like one with N times the batch."""

    def __init__(self, model: nn.Module, processor, config: PreferenceConfig, pairs: Sequence[dict[str, Any]],
                 output_dir: str | Path, world: World | None = None, progress: bool = True,
                 peft_config: Any = None) -> None:
        if not isinstance(config, PreferenceConfig) or not config.method:
            raise TypeError(f"config: use one of {', '.join(c.__name__ for c in METHODS.values())}, "
                            f"not {type(config).__name__}")
        if config.lora and peft_config is not None:
            raise ValueError(f"{type(config).__name__}.lora=True and peft_config: pass one of them")
        self.name = config.method
        self.processor, self.pairs, self.world = processor, list(pairs), world
        self.peft_config = peft_config
        lora = config.lora or peft_config is not None
        self.reference = None if lora or config.method == "sft" else copy.deepcopy(model).eval().requires_grad_(False)
        super().__init__(trainable_policy(model, config, peft_config), config, output_dir, progress)
        if self.reference is not None:
            self.reference.to(self.accelerator.device)

    def record(self) -> dict[str, Any]:
        record = super().record()
        if self.peft_config is not None:
            record["peft_config"] = jsonable(self.peft_config.to_dict())
        return record

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        gen = rng(self.config.seed, Stream.STEP, step)
        total = self.config.batch_size * self.world_size
        picked = gen.choice(len(self.pairs), size=total, replace=len(self.pairs) < total)
        pairs = [self.pairs[i] for i in picked[self.rank :: self.world_size]]
        batch = pair_batch(self.processor, pairs, self.world)
        gamma, min_match = getattr(self.config, "gamma", 1.0), getattr(self.config, "min_match", 1)
        batch["weights"] = response_weights(batch["labels"], len(pairs), self.name, gamma, min_match)
        return batch

    def reference_scores(self, batch: dict[str, torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        average = self.config.average_logps
        with torch.no_grad():
            if self.reference is not None:
                return sequence_scores(self.reference, batch, weights, average)
            policy = self.accelerator.unwrap_model(self.model)  # LoRA: the policy without its adapters
            with policy.disable_adapter():
                return sequence_scores(policy, batch, weights, average)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        weights = batch.pop("weights")
        b = weights.shape[0] // 2
        scores = sequence_scores(self.model, batch, weights, self.config.average_logps)
        if self.name == "sft":
            return {"loss": -scores[:b].mean()}
        cfg = self.config
        ref = self.reference_scores(batch, weights)
        loss = dpo_loss(scores[:b], scores[b:], ref[:b], ref[b:], cfg.beta)
        if cfg.sft_weight:
            loss = loss - cfg.sft_weight * scores[:b].mean()
        with torch.no_grad():
            rewards = cfg.beta * (scores.detach() - ref)
            margin = rewards[:b] - rewards[b:]
        return {"loss": loss, "reward_accuracy": (margin > 0).float().mean(), "margin": margin.mean()}


def _load_pairs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_preference(model, config: PreferenceConfig, output_dir: str | Path = "aligned",
                     world: World | None = None, pairs: Sequence[dict[str, Any]] | None = None,
                     progress: bool = True, peft_config: Any = None) -> Path:
    """Align a VLM with the method of `config` (`DPOConfig`, `DDPOConfig` or `PairSFTConfig`) and
    save it (`save_pretrained`, with its processor) in `output_dir`, which also holds the pairs
    (pairs.jsonl), the log (align_log.json) and, while training, the checkpoint a rerun resumes from.
    Returns `output_dir`.

    `model`: an adapter (`halluscope.load_model(...)`), trained in place. `pairs`: preference pairs
    ({"image" or "scene", "prompt", "chosen", "rejected"}); without them, pairs are built from the
    model's own captions of `world` (default `World()`). `peft_config`: a peft `LoraConfig` to train
    instead of the config's lora_* fields (used as given). A finished `output_dir` is returned as it
    is (the same method and config; another one raises). For data parallelism launch with
    `accelerate launch --num_processes N` (on CPU add `--multi_gpu`: it starts N processes on gloo,
    where `--cpu` starts only one); each process takes `config.batch_size` pairs per step.
    """
    from accelerate import PartialState

    if isinstance(model, str | os.PathLike):
        raise TypeError("train_preference takes a loaded model: pass halluscope.load_model(name_or_path)")
    world = world or World()
    out = Path(output_dir)
    done = out / "align_log.json"
    if done.exists():
        log = json.loads(done.read_text())
        here = {"method": config.method, "config": jsonable(config.to_dict())}
        if {k: log.get(k) for k in here} != here:
            raise ValueError(f"{out} holds a model aligned with another method or config; use another output_dir")
        return out
    state = PartialState(cpu=not torch.cuda.is_available())  # as the trainer's Accelerator: the state is shared
    pairs_file = out / "pairs.jsonl"
    if pairs is None:  # built once, by the main process, and reused on resume
        if state.is_main_process and not pairs_file.exists():
            out.mkdir(parents=True, exist_ok=True)
            built = world_preference_pairs(model, world, config.n_pairs, config.pair_split, config.pair_start,
                                           config.prompt, config.max_new_tokens, config.generation_batch_size,
                                           progress=progress)
            tmp = pairs_file.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(p) + "\n" for p in built))
            os.replace(tmp, pairs_file)
        state.wait_for_everyone()
        pairs = _load_pairs(pairs_file)
    if not pairs:
        raise ValueError("no preference pairs: every caption was already true, or none were given; "
                         f"raise {type(config).__name__}.n_pairs or pass pairs=")

    source = getattr(model, "name", None)
    trainer = PreferenceTrainer(model.model, model.processor, config, pairs, out, world, progress, peft_config)
    log = trainer.train()
    trainer.accelerator.wait_for_everyone()
    final = trainer.accelerator.unwrap_model(trainer.model)
    if (config.lora or peft_config is not None) and config.merge_lora:
        final = final.merge_and_unload()
    final.eval()
    if trainer.is_main:
        final.save_pretrained(out)
        model.processor.save_pretrained(out)
        source_marker = Path(str(source)) / MARKER if source else None
        if source_marker is not None and source_marker.exists():  # keep the built-in model's loading rules
            marker = json.loads(source_marker.read_text())
            marker["aligned"] = {"method": config.method, "config": config.to_dict(), "from": str(source)}
            (out / MARKER).write_text(json.dumps(marker, indent=1, default=str))
        record = {**trainer.record(), "pairs": len(pairs), "source": source, "processes": trainer.world_size,
                  "versions": _versions(), "log": log}
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, default=str))
        os.replace(tmp, done)  # last: a folder without it is unfinished and resumes
    trainer.remove_checkpoint()
    return out


def _versions() -> dict[str, str]:
    import transformers

    from .._version import __version__

    return {"halluscope": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


__all__ = ["DPO", "LORA_TARGETS", "METHODS", "RLHF_V", "DDPOConfig", "DPOConfig", "PairSFTConfig",
           "PreferenceConfig", "PreferenceTrainer", "pair_batch", "preference_config", "response_weights",
           "sequence_scores", "train_preference", "trainable_policy", "world_preference_pairs"]
