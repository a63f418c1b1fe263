"""The built-in model's training: its inputs equal the processor's, its batches depend only on seed
and step, each stage trains what it should, and the recipe (`zoo.tiny.train_tiny`) resumes from a
kill in any stage to the same model. The trainers' shared contract is tests/test_training_contract.py."""

import functools
import json
import time
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from halluscope import World
from halluscope.models.parts import visual_tokens
from halluscope.models.tiny import TinyConfig, build_model, build_processor
from halluscope.training import sft
from halluscope.training.sft import (
    Batcher,
    InstructionTrainer,
    TrainConfig,
    VisionPretrainer,
    batch_for_step,
    make_example,
    pixel_values,
    stage0_batch,
    train,
)
from halluscope.training import loop
from halluscope.training.loop import prefetch
from halluscope.zoo import tiny as zoo_tiny

MICRO = TinyConfig(vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=2)
# Every stage of the recipe in a few steps, each with a checkpoint halfway.
QUICK = dict(steps=4, batch_size=2, warmup_steps=1, vision_pretrain_steps=4, vision_batch_size=2,
             checkpoint_every=2, log_every=2)


@pytest.fixture(scope="module")
def processor(world):
    return build_processor(world)


def test_training_pixels_equal_processor_pixels(world, processor):
    samples = world.sample("test", 4)
    ref = processor.image_processor([s.image for s in samples], return_tensors="pt")["pixel_values"]
    ours = pixel_values(np.stack([world.render_array(s.truth) for s in samples]))
    assert torch.equal(ours, ref)


def test_training_prompt_ids_equal_inference_ids(world, processor):
    """The training batch's prompt part is token for token what the processor builds at inference."""
    s = world.sample("test", 1)[0]
    prompt = "Is there a fork in the image?"
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}], add_generation_prompt=True
    )
    ref = processor(images=[s.image], text=[text], return_tensors="pt")["input_ids"][0].tolist()
    batch = Batcher(processor)([(world.render_array(s.truth), [(prompt, "yes")])])
    ids = batch["input_ids"][0].tolist()
    assert ids[: len(ref)] == ref
    labels = batch["labels"][0].tolist()
    assert labels[: len(ref)] == [-100] * len(ref)  # loss on the answer only
    tok = processor.tokenizer
    assert ids[len(ref) :] == tok("yes", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_multi_turn_ids_follow_the_chat_template(world, processor):
    s = world.sample("test", 1)[0]
    turns = [("Is there a fork in the image?", "no"), ("What color is the cup?", "blue")]
    messages = []
    for q, a in turns:
        content = ([{"type": "image"}] if not messages else []) + [{"type": "text", "text": q}]
        messages += [{"role": "user", "content": content},
                     {"role": "assistant", "content": [{"type": "text", "text": a}]}]
    text = processor.apply_chat_template(messages)
    ref = processor(images=[s.image], text=[text], return_tensors="pt")["input_ids"][0].tolist()
    batch = Batcher(processor)([(world.render_array(s.truth), turns)])
    assert batch["input_ids"][0].tolist() == ref
    tok = processor.tokenizer
    answer_tokens = [t for t, lab in zip(ref, batch["labels"][0].tolist()) if lab != -100]
    assert tok.convert_ids_to_tokens(answer_tokens) == ["no", "</s>", "blue", "</s>"]


def test_batches_depend_only_on_seed_and_step(world, processor):
    cfg = TrainConfig(batch_size=4)
    a, b = batch_for_step(world, Batcher(processor), cfg, 7), batch_for_step(world, Batcher(processor), cfg, 7)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = batch_for_step(world, Batcher(processor), cfg, 8)
    assert not torch.equal(a["pixel_values"], c["pixel_values"])
    d = batch_for_step(world, Batcher(processor), TrainConfig(batch_size=4, seed=1), 7)
    assert not torch.equal(a["pixel_values"], d["pixel_values"])


def test_batch_labels_are_each_answer_then_eos(world, processor):
    tok, cfg, gen = processor.tokenizer, TrainConfig(), np.random.default_rng(0)
    examples = [make_example(world, gen, cfg) for _ in range(6)]
    batch = Batcher(processor)(examples)
    for row, (_, turns) in zip(batch["labels"], examples):
        answers = [tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for _, answer in turns]
        expected = [t for ids in answers for t in ids]
        assert row[row != -100].tolist() == expected


@pytest.mark.parametrize("stage", ["stage0", "instruct"])
def test_prefetch_builds_the_same_batches_with_a_worker_or_in_turn(world, processor, stage):
    cfg = TrainConfig(batch_size=4, vision_batch_size=4)
    make = (functools.partial(stage0_batch, world, cfg) if stage == "stage0"
            else functools.partial(batch_for_step, world, Batcher(processor), cfg))
    steps, cpu = [3, 1, 4], torch.device("cpu")
    by_worker, in_turn = (list(prefetch(make, steps, cpu, worker=w)) for w in (True, False))
    assert len(by_worker) == len(in_turn) == 3
    for a, b, step in zip(by_worker, in_turn, steps):
        fresh = make(step)
        assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], fresh[k]) for k in a)


def test_micro_model_trains_in_under_a_minute(world, processor, tmp_path):
    model = build_model(processor, MICRO)
    cfg = TrainConfig(steps=60, batch_size=16, lr=3e-3, warmup_steps=5, checkpoint_every=1000, log_every=10,
                      vision_pretrain_steps=20, vision_batch_size=16)
    t0 = time.time()
    log = train(model, processor, world, cfg, tmp_path, progress=False)
    assert time.time() - t0 < 60
    losses = [loss for _, loss in log["loss"]]
    assert [s for s, _ in log["loss"]] == [10, 20, 30, 40, 50, 60]
    assert losses[-1] < 0.8 * losses[0], losses  # it learns something
    assert log["vision_loss"][-1][1] < log["vision_loss"][0][1], log["vision_loss"]
    assert (tmp_path / "checkpoint" / "model.safetensors").exists()  # the last step is always checkpointed


@pytest.mark.parametrize("scale", [0.0, 0.5, 1.0])
def test_vision_tower_is_frozen_in_instruction_tuning_unless_scaled(world, processor, tmp_path, scale):
    model = build_model(processor, MICRO)
    cfg = TrainConfig(steps=3, batch_size=4, warmup_steps=1, checkpoint_every=1000, vision_pretrain_steps=2,
                      vision_batch_size=4, vision_lr_scale=scale)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    VisionPretrainer(model, processor, world, cfg, tmp_path / "stage0", progress=False).train()
    after_stage0 = {k: v.clone() for k, v in model.state_dict().items()}
    InstructionTrainer(model, processor, world, cfg, tmp_path, progress=False).train()
    end = model.state_dict()
    tower = [k for k in end if "vision_tower" in k]
    assert any(not torch.equal(after_stage0[k], start[k]) for k in tower)  # stage 0 trains the tower either way
    moved = [not torch.equal(end[k], after_stage0[k]) for k in tower]
    assert any(moved) if scale else not any(moved)
    assert all(not torch.equal(end[k], after_stage0[k]) for k in end if "multi_modal_projector" in k)
    assert all(p.requires_grad for p in model.parameters())  # left as it came


def test_train_config_checks():
    with pytest.raises(ValueError, match="task_mix"):
        TrainConfig(task_mix={"poetry": 1.0})
    with pytest.raises(ValueError, match="qa_mix"):
        TrainConfig(qa_mix={"existence": -1.0})
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="vision_lr_scale"):
        TrainConfig(vision_lr_scale=-1)
    with pytest.raises(ValueError, match="adam_betas"):
        TrainConfig(adam_betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="max_grad_norm"):
        TrainConfig(max_grad_norm=0)
    assert TrainConfig().paper()["venue"] == "NeurIPS 2023"
    assert set(TrainConfig.help()) == {f for f in TrainConfig().to_dict()}


def test_load_model_tiny_trains_once_then_reuses_the_cache(tmp_path, monkeypatch):
    import halluscope

    monkeypatch.setenv("HALLUSCOPE_CACHE", str(tmp_path))
    kwargs = dict(train_config=TrainConfig(**{**QUICK, "connector_steps": 2}), tiny_config=MICRO, progress=False)
    first = halluscope.load_model("tiny", **kwargs)
    (folder,) = tmp_path.iterdir()
    assert (folder / "halluscope.json").exists() and not (folder / "stages").exists()
    # the three stages: vision tower, connector alignment (projector on captions), instruction tuning
    log = json.loads((folder / "train_log.json").read_text())
    assert log["connector"]["config"]["contrastive_weight"] == 0 and log["connector"]["method"] == "hacl"
    assert log["connector"]["paper"]["venue"] == "CVPR 2024" and log["paper"]["venue"] == "NeurIPS 2023"
    assert [s for s, _ in log["loss"]] == [2, 4] and [s for s, _ in log["vision_loss"]] == [2, 4]
    assert first.yes_no_suffix == ""  # the built-in model is asked plain questions

    def no_training(*args, **kw):
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(InstructionTrainer, "train", no_training)
    second = halluscope.load_model("tiny", **kwargs)
    images = [s.image for s in World().sample("test", 2)]
    assert first.generate(images, ["Describe the image in detail."] * 2, max_new_tokens=5) == \
        second.generate(images, ["Describe the image in detail."] * 2, max_new_tokens=5)
    assert second.answer_yes_no(images, ["Is there a fork in the image?"] * 2)[0] in ("yes", "no")


@pytest.mark.parametrize("worker", [True, False], ids=["worker", "in-turn"])
@pytest.mark.parametrize("stage", ["stage0", "hacl", "instruct"])
def test_the_recipe_killed_in_any_stage_resumes_to_the_same_model(world, tmp_path, stage, worker, monkeypatch):
    from halluscope.training.hacl import HACLConfig, HACLTrainer

    monkeypatch.setattr(loop, "spare_core", lambda device: worker)  # batches built by a DataLoader worker or in turn

    cfg, hacl = TrainConfig(**QUICK), HACLConfig(steps=4, batch_size=2, warmup_steps=1, checkpoint_every=2)
    straight = zoo_tiny.train_tiny(world, cfg, MICRO, tmp_path / "straight", progress=False, hacl_config=hacl)
    trainer = {"stage0": VisionPretrainer, "hacl": HACLTrainer, "instruct": InstructionTrainer}[stage]
    real = trainer.train

    def killed_after_its_first_checkpoint(self):
        self.on_step = lambda done, loss: (_ for _ in ()).throw(KeyboardInterrupt) if done == 3 else None
        return real(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "train", killed_after_its_first_checkpoint)
        with pytest.raises(KeyboardInterrupt):
            zoo_tiny.train_tiny(world, cfg, MICRO, tmp_path / "resumed", progress=False, hacl_config=hacl)
    assert not (tmp_path / "resumed" / "halluscope.json").exists()
    resumed = zoo_tiny.train_tiny(world, cfg, MICRO, tmp_path / "resumed", progress=False, hacl_config=hacl)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_a, log_b = (json.loads((f / "train_log.json").read_text()) for f in (straight, resumed))
    for log in (log_a, log_b):
        log.pop("seconds")
        log["connector"]["log"].pop("seconds")
    assert log_a == log_b


def test_stage0_word_targets_put_visual_tokens_next_to_their_class_words(world, processor):
    """Stage 0 trains tower and projector (the word embeddings stay as they are) until an object's
    visual token is nearest to its own class word among the 16."""
    from halluscope.world import CLASSES, GRID

    model = build_model(processor, MICRO)
    embed = model.get_input_embeddings().weight.detach().clone()
    projector = {k: v.clone() for k, v in model.model.multi_modal_projector.state_dict().items()}
    # the word targets alone: with the position targets too, MICRO's 32 dimensions take longer than a test
    cfg = TrainConfig(vision_pretrain_steps=150, vision_batch_size=32, warmup_steps=5, lr=3e-3, position_targets=False)
    losses = sft.pretrain_vision(model, processor, world, cfg)
    assert len(losses) == 150 and losses[-1] < 0.5 * losses[0], losses[::10]
    assert torch.equal(model.get_input_embeddings().weight, embed)
    assert all(not torch.equal(v, projector[k]) for k, v in model.model.multi_modal_projector.state_dict().items())

    scenes = [world.scene("test", i) for i in range(20)]
    with torch.no_grad():
        tokens = visual_tokens(model, pixel_values=pixel_values(np.stack([world.render_array(s) for s in scenes])))
    words = torch.stack([embed[processor.tokenizer.convert_tokens_to_ids(c)] for c in CLASSES])
    hits = total = 0
    for scene, visual in zip(scenes, tokens):
        for o in scene.objects:
            sims = torch.nn.functional.cosine_similarity(visual[o.row * GRID + o.col][None], words)
            hits += int(sims.argmax()) == CLASSES.index(o.cls)
            total += 1
    assert hits / total > 0.5, (hits, total)  # chance: 1 / 16


def test_stage0_position_targets_keep_where_each_visual_token_is(world, processor):
    """With `position_targets` (the default), a linear probe reads each object's row and column off its visual
    token (chance: 1 / 4); the recipe names the field only when it is off."""
    from halluscope.diagnose.vision import probe_accuracy
    from halluscope.world import GRID

    assert "position_targets" not in TrainConfig().recipe()
    assert TrainConfig(position_targets=False).recipe()["position_targets"] is False
    with pytest.raises(ValueError, match="position_targets='maybe' is invalid: use True or False"):
        TrainConfig(position_targets="maybe")
    # MICRO's 32 dimensions learn where they are too slowly for a test; 64 learn it in 300 steps.
    model = build_model(processor, TinyConfig(vision_hidden=64, vision_layers=1, text_hidden=64, text_layers=1,
                                              heads=2))
    cfg = TrainConfig(vision_pretrain_steps=300, vision_batch_size=32, warmup_steps=5, lr=3e-3, position_targets=True)
    losses = sft.pretrain_vision(model, processor, world, cfg)
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    scenes = [world.scene("test", i) for i in range(150)]
    with torch.no_grad():
        tokens = visual_tokens(model, pixel_values=pixel_values(np.stack([world.render_array(s) for s in scenes])))
    objects = [(visual[o.row * GRID + o.col], o.row, o.col) for scene, visual in zip(scenes, tokens)
               for o in scene.objects]
    x = torch.stack([t for t, _, _ in objects])
    for axis in (1, 2):
        y = torch.tensor([o[axis] for o in objects])
        assert probe_accuracy(x, y) > 0.9


@pytest.mark.parametrize("tied", [True, False])
def test_embeddings_train_save_and_load_through_every_stage(world, tmp_path, tied):
    """Tied input and output embeddings share storage: every stage's checkpoint and the final save
    must still write them, and loading must keep them tied or not."""
    from dataclasses import replace

    from halluscope import load_model

    cfg = TrainConfig(**{**QUICK, "connector_steps": 1})
    folder = zoo_tiny.train_tiny(world, cfg, replace(MICRO, tie_embeddings=tied), out=tmp_path / "m", progress=False)
    model = load_model(str(folder)).model
    shared = model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert shared == tied


def test_old_names_warn_and_still_work(tmp_path, monkeypatch):
    import halluscope.models
    import halluscope.training.hacl

    monkeypatch.setenv("HALLUSCOPE_CACHE", str(tmp_path))
    with pytest.warns(DeprecationWarning, match="halluscope.zoo.tiny.cache_dir"):
        assert halluscope.models.cache_dir() == tmp_path
    with pytest.warns(DeprecationWarning, match="halluscope.load_model"):
        assert halluscope.models.load_model is halluscope.load_model
    with pytest.warns(DeprecationWarning):
        assert halluscope.models.train_tiny is zoo_tiny.train_tiny
    with pytest.warns(DeprecationWarning):
        assert halluscope.training.hacl.train_tiny_hacl is zoo_tiny.train_tiny_hacl
    with pytest.warns(DeprecationWarning, match="cosine_lr"):
        lr_at = sft.lr_at
    cfg = TrainConfig(steps=10, warmup_steps=2, lr=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from halluscope.training.loop import cosine_lr
    assert [lr_at(s, cfg) for s in range(10)] == [cosine_lr(s, 1.0, 2, 10) for s in range(10)]


def test_a_second_trainer_of_one_folder_waits_and_takes_the_finished_model(world, tmp_path):
    """While one process trains a folder, another waits for its lock, then returns what it finished
    instead of training it again from the first one's checkpoints."""
    import fcntl
    import threading

    from halluscope.models import MARKER
    from halluscope.zoo.tiny import train_tiny

    folder = tmp_path / "m"
    folder.mkdir()
    done = []
    with open(folder / ".train.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # "the other process" is training
        waiter = threading.Thread(target=lambda: done.append(train_tiny(
            world, TrainConfig(**QUICK), MICRO, out=folder, progress=False)))
        waiter.start()
        waiter.join(timeout=2)
        assert waiter.is_alive() and not done  # it waits for the lock
        (folder / MARKER).write_text("{}")  # the other process finishes...
        fcntl.flock(held, fcntl.LOCK_UN)  # ...and lets go
    waiter.join(timeout=60)
    assert done == [folder] and not (folder / "stages").exists()  # nothing trained again
