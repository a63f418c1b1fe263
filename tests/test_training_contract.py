"""The training contract, peft-style: one table (`TRAIN_CASES`) runs every trainer of the library
through the same checks on the micro built-in model:

- a few steps run and every logged value is finite;
- only the parameters the method trains change (a frozen vision tower stays equal, LoRA trains its
  adapters only);
- a run killed after a checkpoint and resumed (from a model initialised differently, where the
  method allows it) ends bit for bit where an uninterrupted run ends, with the same log (the kill
  falls inside a window of logged means);
- a finished run's checkpoint restores its weights without training;
- a bad config raises a ValueError naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from halluscope import World
from halluscope.hallucinate import world_hallucinations
from halluscope.models.tiny import TinyConfig, build_model, build_processor
from halluscope.training import hacl, loop, preference, sft
from halluscope.training.hacl import HACLConfig, HACLTrainer
from halluscope.training.preference import DDPOConfig, DPOConfig, PairSFTConfig, PreferenceTrainer
from halluscope.training.sft import InstructionTrainer, TrainConfig, VisionPretrainer

MICRO = TinyConfig(vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=2)
# The kill comes after the checkpoint of step 2, inside the log window of steps 1-3.
STEPS, EVERY, KILL_AT, LOG_EVERY = 4, 2, 3, 3
LOOP = dict(warmup_steps=1, checkpoint_every=EVERY, log_every=LOG_EVERY)
PROMPT = "Describe the image in detail."


# the micro models run fastest on one thread, and spin far less on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def processor(world):
    return build_processor(world)


def world_pairs(world: World, n: int = 6) -> list[dict]:
    """Preference pairs without a trained model: a hallucinated mirror (rejected) of a true caption."""
    pairs = []
    for i in range(n):
        h = world_hallucinations(world, world.scene("train", i), rng=i)[0]
        pairs.append({"scene": ["train", i], "prompt": PROMPT, "chosen": h.original, "rejected": h.text})
    return pairs


def stage0(world, processor, model, out):
    cfg = TrainConfig(vision_pretrain_steps=STEPS, vision_batch_size=4, **LOOP)
    return VisionPretrainer(model, processor, world, cfg, out, progress=False)


def instruct_with(**fields):
    def make(world, processor, model, out):
        cfg = TrainConfig(steps=STEPS, batch_size=2, vision_pretrain_steps=0, **LOOP, **fields)
        return InstructionTrainer(model, processor, world, cfg, out, progress=False)
    return make


def hacl_stage(weight: float):
    def make(world, processor, model, out):
        cfg = HACLConfig(steps=STEPS, batch_size=3, contrastive_weight=weight, **LOOP)
        return HACLTrainer(model, processor, world, cfg, out, progress=False)
    return make


def pairs_trainer(config_cls, **fields):
    def make(world, processor, model, out):
        cfg = config_cls(steps=STEPS, batch_size=2, lr=1e-3, **LOOP, **fields)
        return PreferenceTrainer(model, processor, cfg, world_pairs(world), out, world, progress=False)
    return make


@dataclass
class Case:
    name: str
    make: Callable  # (world, processor, model, output_dir) -> Trainer
    trains: set[str]  # the parts whose tensors change
    bad: tuple[type, dict, str]  # a config class, bad fields, the word the error names
    reinit: bool = True  # resume into a model initialised with another seed (all must come from the checkpoint)


TRAIN_CASES = [
    Case("stage0", stage0, {"vision", "projector", "heads"},
         (TrainConfig, {"vision_batch_size": 0}, "vision_batch_size")),
    Case("instruct", instruct_with(), {"projector", "language", "output"},
         (TrainConfig, {"task_mix": {"poetry": 1}}, "task_mix")),
    Case("instruct-muon", instruct_with(optimizer="muon"), {"projector", "language", "output"},
         (TrainConfig, {"optimizer": "sgd"}, "optimizer")),
    Case("hacl", hacl_stage(1.0), {"projector", "heads"}, (HACLConfig, {"batch_size": 1}, "batch_size")),
    Case("connector", hacl_stage(0.0), {"projector"}, (HACLConfig, {"contrastive_weight": -1}, "contrastive_weight")),
    # The reference model is the policy as it came: resumed runs start from the same model.
    Case("dpo", pairs_trainer(DPOConfig), {"projector", "language", "output"}, (DPOConfig, {"beta": 0}, "beta"),
         reinit=False),
    Case("ddpo", pairs_trainer(DDPOConfig), {"projector", "language", "output"}, (DDPOConfig, {"gamma": 0}, "gamma"),
         reinit=False),
    Case("pair-sft", pairs_trainer(PairSFTConfig), {"projector", "language", "output"},
         (PairSFTConfig, {"lr": 0}, "lr"), reinit=False),
    Case("ddpo-lora", pairs_trainer(DDPOConfig, lora=True, lora_r=4), {"lora"},
         (DDPOConfig, {"lora": True, "lora_dropout": 1.0}, "lora_dropout"), reinit=False),
]
IDS = [c.name for c in TRAIN_CASES]


def part(name: str) -> str:
    """The part of a trainer's module a state-dict entry belongs to."""
    if "lora_" in name:
        return "lora"
    if name.startswith("heads.") or name in ("empty", "logit_scale", "positions"):
        return "heads"
    if "multi_modal_projector" in name:
        return "projector"
    if "vision_tower" in name:
        return "vision"
    if "lm_head" in name:
        return "output"
    return "language"


def state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}


def run(case: Case, world, processor, out: Path, seed: int = 0, kill_at: int | None = None):
    if case.name == "ddpo-lora":
        pytest.importorskip("peft")
    trainer = case.make(world, processor, build_model(processor, MICRO, seed=seed), out)
    before = state(trainer)
    if kill_at is not None:
        def crash(done, loss):
            if done == kill_at:
                raise KeyboardInterrupt
        trainer.on_step = crash
    log = trainer.train()
    return trainer, before, log


def test_every_trainer_is_in_the_table():
    trainers = {c for m in (sft, hacl, preference) for c in vars(m).values()
                if isinstance(c, type) and issubclass(c, loop.Trainer) and c is not loop.Trainer}
    assert trainers == {VisionPretrainer, InstructionTrainer, HACLTrainer, PreferenceTrainer}
    covered = {c.bad[0].method for c in TRAIN_CASES if issubclass(c.bad[0], preference.PreferenceConfig)}
    assert covered == set(preference.METHODS)


@pytest.mark.parametrize("case", TRAIN_CASES, ids=IDS)
def test_training_contract(case, world, processor, tmp_path):
    # a few steps; the log holds finite means of every value, every LOG_EVERY steps and at the last
    straight, before, log = run(case, world, processor, tmp_path / "straight")
    assert [s for s, _ in log["loss"]] == [LOG_EVERY, STEPS]
    assert all(math.isfinite(v) for key, rows in log.items() if key != "seconds" for _, v in rows), log
    after = state(straight)
    changed = {part(k) for k in after if not torch.equal(after[k], before[k])}
    assert changed == case.trains, changed
    assert all(torch.equal(after[k], before[k]) for k in after if part(k) not in case.trains)

    # killed after the checkpoint of step 2, resumed: the same weights and log, bit for bit
    with pytest.raises(KeyboardInterrupt):
        run(case, world, processor, tmp_path / "resumed", kill_at=KILL_AT)
    resumed, _, resumed_log = run(case, world, processor, tmp_path / "resumed", seed=7 if case.reinit else 0)
    again = state(resumed)
    assert all(torch.equal(after[k], again[k]) for k in after), [
        k for k in after if not torch.equal(after[k], again[k])]
    assert {k: v for k, v in resumed_log.items() if k != "seconds"} == {k: v for k, v in log.items() if k != "seconds"}

    # a finished run's checkpoint restores its weights and trains no more
    restored, _, restored_log = run(case, world, processor, tmp_path / "straight", seed=7 if case.reinit else 0)
    assert restored_log == log
    assert all(torch.equal(after[k], v) for k, v in state(restored).items())

    config_cls, bad, word = case.bad
    with pytest.raises(ValueError, match=word):
        config_cls(**bad)


def test_resume_refuses_another_config_naming_the_folder_and_the_field(world, processor, tmp_path):
    run(TRAIN_CASES[1], world, processor, tmp_path)
    other = TrainConfig(steps=STEPS + 1, batch_size=2, vision_pretrain_steps=0, **LOOP)
    trainer = InstructionTrainer(build_model(processor, MICRO), processor, world, other, tmp_path, progress=False)
    with pytest.raises(ValueError) as e:
        trainer.train()
    message = str(e.value)
    assert "\n" not in message and str(tmp_path / "checkpoint") in message
    assert "steps=4" in message and "steps=5" in message and "delete" in message


def test_an_interrupted_checkpoint_write_leaves_the_previous_one(world, processor, tmp_path):
    """A kill between the two renames of `save_checkpoint` leaves only `checkpoint.old`: it is used."""
    trainer, _, log = run(TRAIN_CASES[1], world, processor, tmp_path)
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")
    again, _, again_log = run(TRAIN_CASES[1], world, processor, tmp_path, seed=7)
    assert again_log == log and (tmp_path / "checkpoint").exists() and not (tmp_path / "checkpoint.old").exists()


def test_cosine_schedule():
    lrs = [loop.cosine_lr(s, 1.0, 10, 110) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == 1.0  # linear warm-up
    assert lrs[10] == 1.0 and lrs[60] == pytest.approx(0.55) and lrs[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[119] == pytest.approx(0.1)  # then flat at 10 %


def test_muon_takes_the_weight_matrices_and_adamw_the_embeddings_norms_and_biases(world, processor, tmp_path):
    model = build_model(processor, MICRO, seed=0)
    trainer = instruct_with(optimizer="muon")(world, processor, model, tmp_path)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {g["muon"]: [names[id(p)] for p in g["params"]] for g in trainer.optimizer.param_groups}
    assert groups[True] and all("embed" not in n and "lm_head" not in n for n in groups[True])
    assert any("q_proj" in n for n in groups[True]) and any("multi_modal_projector" in n for n in groups[True])
    assert any("embed_tokens" in n for n in groups[False]) and any("norm" in n for n in groups[False])
    assert set(trainer.optimizer.state_dict()) == {"muon", "adamw"}


def test_muon_is_torchs_muon_with_the_iteration_in_float32():
    from halluscope.training.optimizers import Muon

    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(16, 48))
    theirs = torch.nn.Parameter(ours.detach().clone())
    opts = [Muon([{"params": [ours]}], lr=1e-2, weight_decay=0.1),
            torch.optim.Muon([theirs], lr=1e-2, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")]
    start = ours.detach().clone()
    for _ in range(3):
        grad = torch.randn(16, 48)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        for opt in opts:
            opt.step()
    # torch's iterates in bfloat16: the two differ by its rounding, far less than the steps they took
    assert (ours - theirs).norm() < 0.05 * (ours - start).norm()
