import json
import time

import numpy as np
import pytest
import torch

from halluscope import World
from halluscope.models.tiny import TinyConfig, build_model, build_processor
from halluscope.training import sft
from halluscope.training.sft import Batcher, TrainConfig, batch_for_step, pixel_values, train

MICRO = TinyConfig(vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=2)


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
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": [{"type": "text", "text": a}]}]
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


def test_micro_model_trains_in_under_a_minute(world, processor, tmp_path):
    model = build_model(processor, MICRO)
    cfg = TrainConfig(steps=60, batch_size=16, lr=3e-3, warmup_steps=5, checkpoint_every=1000, log_every=10,
                      vision_pretrain_steps=20, vision_batch_size=16)
    t0 = time.time()
    log = train(model, processor, world, cfg, tmp_path, progress=False)
    assert time.time() - t0 < 60
    losses = [loss for _, loss in log["loss"]]
    assert losses[-1] < 0.8 * losses[0], losses  # it learns something
    assert (tmp_path / "checkpoint" / "model.safetensors").exists()


def test_resume_after_interruption_gives_the_same_weights(world, processor, tmp_path, monkeypatch):
    cfg = TrainConfig(steps=8, batch_size=4, warmup_steps=2, checkpoint_every=4, vision_pretrain_steps=3,
                      vision_batch_size=4)
    straight = build_model(processor, MICRO)
    train(straight, processor, world, cfg, tmp_path / "straight", progress=False)

    real = sft.lr_at

    def crash_at_6(step, cfg_):  # called by the training loop at every step, in this process
        if step == 6:
            raise KeyboardInterrupt
        return real(step, cfg_)

    monkeypatch.setattr(sft, "lr_at", crash_at_6)
    with pytest.raises(KeyboardInterrupt):
        train(build_model(processor, MICRO), processor, world, cfg, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(sft, "lr_at", real)
    resumed = build_model(processor, MICRO, seed=123)  # different init: everything must come from the checkpoint
    log = train(resumed, processor, world, cfg, tmp_path / "resumed", progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert log["loss"] is not None


@pytest.mark.parametrize("scale", [0.0, 0.5, 1.0])
def test_vision_tower_is_frozen_in_instruction_tuning_unless_scaled(world, processor, tmp_path, monkeypatch, scale):
    model = build_model(processor, MICRO)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    after_stage0 = {}

    def spy(model_, *args, **kwargs):
        losses = real(model_, *args, **kwargs)
        after_stage0.update({k: v.clone() for k, v in model_.state_dict().items()})
        return losses

    real = sft.pretrain_vision
    monkeypatch.setattr(sft, "pretrain_vision", spy)
    cfg = TrainConfig(steps=3, batch_size=4, warmup_steps=1, checkpoint_every=1000, vision_pretrain_steps=2,
                      vision_batch_size=4, vision_lr_scale=scale)
    train(model, processor, world, cfg, tmp_path, progress=False)
    end = model.state_dict()
    tower = [k for k in end if "vision_tower" in k]
    assert any(not torch.equal(after_stage0[k], start[k]) for k in tower)  # stage 0 trains the tower either way
    moved = [not torch.equal(end[k], after_stage0[k]) for k in tower]
    assert any(moved) if scale else not any(moved)
    assert all(not torch.equal(end[k], after_stage0[k]) for k in end if "multi_modal_projector" in k)
    assert all(p.requires_grad for p in model.parameters())  # left as it came


def test_resume_refuses_another_config(world, processor, tmp_path):
    cfg = TrainConfig(steps=2, batch_size=2, warmup_steps=1, checkpoint_every=1, vision_pretrain_steps=0)
    train(build_model(processor, MICRO), processor, world, cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match="another training config"):
        train(build_model(processor, MICRO), processor, world, TrainConfig(steps=3, batch_size=2, vision_pretrain_steps=0),
              tmp_path, progress=False)


def test_train_config_checks():
    with pytest.raises(ValueError, match="task_mix"):
        TrainConfig(task_mix={"poetry": 1.0})
    with pytest.raises(ValueError, match="qa_mix"):
        TrainConfig(qa_mix={"existence": -1.0})
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="vision_lr_scale"):
        TrainConfig(vision_lr_scale=-1)


def test_load_model_tiny_trains_once_then_reuses_the_cache(tmp_path, monkeypatch):
    import halluscope
    from halluscope.training import sft as sft_module

    monkeypatch.setenv("HALLUSCOPE_CACHE", str(tmp_path))
    kwargs = dict(train_config=TrainConfig(steps=3, batch_size=4, warmup_steps=1, vision_pretrain_steps=2,
                                           vision_batch_size=4, connector_steps=2), tiny_config=MICRO, progress=False)
    first = halluscope.load_model("tiny", **kwargs)
    (folder,) = tmp_path.iterdir()
    assert (folder / "halluscope.json").exists() and not (folder / "checkpoint").exists()
    # the three stages: vision tower, connector alignment (projector on captions), instruction tuning
    assert json.loads((folder / "connector" / "hacl_log.json").read_text())["config"]["contrastive_weight"] == 0
    assert first.yes_no_suffix == ""  # the built-in model is asked plain questions

    def no_training(*args, **kw):
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(sft_module, "train", no_training)
    second = halluscope.load_model("tiny", **kwargs)
    images = [s.image for s in World().sample("test", 2)]
    assert first.generate(images, ["Describe the image in detail."] * 2, max_new_tokens=5) == \
        second.generate(images, ["Describe the image in detail."] * 2, max_new_tokens=5)
    assert second.answer_yes_no(images, ["Is there a fork in the image?"] * 2)[0] in ("yes", "no")


def test_stage0_word_targets_put_visual_tokens_next_to_their_class_words(world, processor):
    """With `word_targets`, stage 0 trains tower and projector (the word embeddings stay as they
    are) until an object's visual token is nearest to its own class word among the 16."""
    from halluscope.world import CLASSES
    from halluscope.world import GRID

    model = build_model(processor, MICRO)
    embed = model.get_input_embeddings().weight.detach().clone()
    projector = {k: v.clone() for k, v in model.model.multi_modal_projector.state_dict().items()}
    cfg = TrainConfig(vision_pretrain_steps=150, vision_batch_size=32, warmup_steps=5, lr=3e-3)
    losses = sft.pretrain_vision(model, processor, world, cfg)
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert torch.equal(model.get_input_embeddings().weight, embed)
    assert all(not torch.equal(v, projector[k]) for k, v in model.model.multi_modal_projector.state_dict().items())

    scenes = [world.scene("test", i) for i in range(20)]
    with torch.no_grad():
        tokens = model.model.get_image_features(pixel_values(np.stack([world.render_array(s) for s in scenes])))
    tokens = getattr(tokens, "pooler_output", tokens)
    words = torch.stack([embed[processor.tokenizer.convert_tokens_to_ids(c)] for c in CLASSES])
    hits = total = 0
    for scene, visual in zip(scenes, tokens):
        for o in scene.objects:
            sims = torch.nn.functional.cosine_similarity(visual[o.row * GRID + o.col][None], words)
            hits += int(sims.argmax()) == CLASSES.index(o.cls)
            total += 1
    assert hits / total > 0.5, (hits, total)  # chance: 1 / 16


@pytest.mark.parametrize("tied", [True, False])
def test_embeddings_train_save_and_load_through_every_stage(world, tmp_path, tied):
    """Tied input and output embeddings share storage: every stage's save must still write them."""
    from dataclasses import replace

    from halluscope import load_model
    from halluscope.models import train_tiny

    cfg = TrainConfig(steps=2, batch_size=2, warmup_steps=1, vision_pretrain_steps=1, vision_batch_size=2,
                      connector_steps=1, checkpoint_every=1)
    folder = train_tiny(world, cfg, replace(MICRO, tie_embeddings=tied), out=tmp_path / "m", progress=False)
    assert (folder / "stage0.safetensors").exists() and (folder / "stage1.safetensors").exists()
    model = load_model(str(folder)).model
    shared = model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert shared == tied
