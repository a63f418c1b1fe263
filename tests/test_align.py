"""Preference alignment (DPO, RLHF-V's DDPO, the supervised control) on tiny models: the inputs
equal the inference inputs, DDPO's token weights, world preference pairs, and `train_preference`
(gamma = 1 equals DPO, the vision tower stays, LoRA, finished folders, two processes, the old
`align` / `AlignConfig` names). Resume and the shared checks: tests/test_training_contract.py."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from halluscope.decoding import VLMAdapter
from halluscope.hallucinate import world_hallucinations
from halluscope.models.tiny import TinyConfig, build_model, build_processor
from halluscope.training.data import encode
from halluscope.training.preference import (
    DDPOConfig,
    DPOConfig,
    PairSFTConfig,
    pair_batch,
    preference_config,
    response_weights,
    train_preference,
    world_preference_pairs,
)

MICRO = TinyConfig(vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=2)
PROMPTS = ["Describe the image in detail.", "Is there a fork in the image?"]
RESPONSES = ["the image shows a red fork and a knife.", "no"]


# the micro models run fastest on one thread, and spin far less on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")


def micro_adapter(world, seed=0):
    processor = build_processor(world)
    return VLMAdapter(build_model(processor, MICRO, seed=seed), processor, name="micro", max_new_tokens=12)


def family_parts(model):
    """parameter name -> the part it belongs to (vision, projector, language, output)."""
    def part(name):
        if "multi_modal_projector" in name or ".merger." in name:
            return "projector"
        if "vision_tower" in name or ".visual." in name:
            return "vision"
        if "lm_head" in name:
            return "output"
        return "language"
    return {n: part(n) for n, _ in model.named_parameters(remove_duplicate=False)}  # tied names too


# ============================================================================ DPO / DDPO inputs
def test_encoded_prompts_are_the_inference_inputs(vlm):
    adapter, facts = vlm
    images = facts["images"]
    batch = encode(adapter.processor, images, PROMPTS, RESPONSES)
    tok = adapter.tokenizer
    for i, prompt in enumerate(PROMPTS):
        ref = adapter.build_inputs([images[i]], [prompt])
        n = ref["input_ids"].shape[1]
        assert batch["input_ids"][i, :n].tolist() == ref["input_ids"][0].tolist()
        assert (batch["labels"][i, :n] == -100).all()
        answer = tok(RESPONSES[i], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert batch["labels"][i, n : n + len(answer)].tolist() == answer
        assert (batch["labels"][i, n + len(answer):] == -100).all()
        assert batch["attention_mask"][i].sum() == n + len(answer)
        for k in ref:
            if k not in ("input_ids", "attention_mask") and ref[k].shape[:2] == ref["input_ids"].shape:
                assert batch[k][i, :n].tolist() == ref[k][0].tolist()
    with torch.no_grad():
        assert torch.isfinite(adapter.model(**batch).loss)


def test_response_weights_mark_the_corrected_tokens(world):
    adapter = micro_adapter(world)
    pair = {"scene": ["test", 0], "prompt": PROMPTS[0], "chosen": "the image shows a red fork and a knife.",
            "rejected": "the image shows a blue fork and a knife."}
    batch = pair_batch(adapter.processor, [pair, pair], world)
    dpo = response_weights(batch["labels"], 2, "dpo", 5.0, 3)
    ddpo = response_weights(batch["labels"], 2, "ddpo", 5.0, 3)
    mask = batch["labels"][:, 1:] != -100
    assert torch.equal(dpo, mask.float())
    tok = adapter.tokenizer
    for row, word in ((0, "red"), (2, "blue")):
        heavy = batch["labels"][row, 1:][ddpo[row] == 5.0].tolist()
        assert tok.convert_ids_to_tokens(heavy) == [word]
    assert torch.equal(ddpo > 0, mask)


class ScriptedAdapter:
    """An adapter whose captions are given: to test pair building without a trained model."""

    def __init__(self, captions):
        self.captions = captions

    def generate(self, images, prompts, max_new_tokens=None):
        return [self.captions.pop(0) for _ in images]


def test_world_pairs_reject_the_model_caption_and_choose_its_correction(world):
    scenes = [world.scene("train", i) for i in range(6)]
    said, expected = [], []
    for i, s in enumerate(scenes):
        if i == 5:
            said.append(world.caption(s))  # a true caption gives no pair
            continue
        hs = world_hallucinations(world, s, rng=i)
        h = hs[i % len(hs)]
        said.append(" ".join(h.text.replace(".", " .").replace(",", " ,").split()))  # as the model decodes
        expected.append((h.text, h.original))
    pairs = world_preference_pairs(ScriptedAdapter(said), world, 6, split="train", start=0, batch_size=4)
    assert [(p["rejected"], p["chosen"]) for p in pairs] == expected
    assert all(p["minimal"] and p["prompt"] == PROMPTS[0] for p in pairs)
    garbled = world_preference_pairs(ScriptedAdapter(["fork fork the"]), world, 1)
    assert garbled[0]["chosen"] == world.caption(world.scene("train", 0)) and not garbled[0]["minimal"]


# ============================================================================ train_preference
TINY_ALIGN = dict(steps=4, batch_size=3, lr=1e-3, warmup_steps=1, n_pairs=6, max_new_tokens=10, log_every=1,
                  checkpoint_every=2, generation_batch_size=6)


def weights_of(folder):
    """The saved model's parameters under the names the model uses in memory."""
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(folder).state_dict()


def test_ddpo_with_gamma_1_trains_exactly_like_dpo(world, tmp_path):
    dpo = train_preference(micro_adapter(world), DPOConfig(**TINY_ALIGN), tmp_path / "dpo", world, progress=False)
    pairs = [json.loads(line) for line in (dpo / "pairs.jsonl").read_text().splitlines()]
    ddpo = train_preference(micro_adapter(world), DDPOConfig(**TINY_ALIGN, gamma=1.0, beta=0.1, average_logps=False),
                            tmp_path / "ddpo", world, pairs=pairs, progress=False)
    a, b = weights_of(dpo), weights_of(ddpo)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = train_preference(micro_adapter(world), DDPOConfig(**TINY_ALIGN, beta=0.1, average_logps=False),
                             tmp_path / "ddpo5", world, pairs=pairs, progress=False)
    assert not all(torch.allclose(a[k], weights_of(other)[k], atol=1e-6) for k in a)
    log = json.loads((dpo / "align_log.json").read_text())
    assert log["method"] == "dpo" and log["paper"]["venue"] == "NeurIPS 2023"
    assert log["config"]["beta"] == 0.1 and log["config"]["average_logps"] is False  # DPO's paper defaults
    assert len(log["log"]["loss"]) == 4 and not (dpo / "checkpoint").exists()
    assert json.loads((ddpo / "align_log.json").read_text())["paper"]["venue"] == "CVPR 2024"


def test_alignment_moves_preferences_and_keeps_the_vision_tower(world, tmp_path):
    adapter = micro_adapter(world)
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    cfg = DDPOConfig(**{**TINY_ALIGN, "steps": 8, "lr": 3e-3})
    out = train_preference(adapter, cfg, tmp_path, world, progress=False)
    log = json.loads((out / "align_log.json").read_text())["log"]
    assert log["margin"][-1][1] > 0 and log["loss"][-1][1] < log["loss"][0][1]
    after = weights_of(out)
    parts = family_parts(adapter.model)
    for name, value in before.items():
        assert torch.equal(value, after[name]) == (parts[name] == "vision"), name
    reloaded = __import__("halluscope").load_model(str(out), device="cpu")
    assert reloaded.generate([world.render(world.scene("test", 0))], PROMPTS[:1], max_new_tokens=3)


def test_a_finished_folder_is_returned_as_it_is_and_refuses_another_config(world, tmp_path):
    cfg = DDPOConfig(**TINY_ALIGN)
    out = train_preference(micro_adapter(world), cfg, tmp_path, world, progress=False)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert train_preference(micro_adapter(world), cfg, tmp_path, world, progress=False) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="another method or config"):
        train_preference(micro_adapter(world), DPOConfig(**TINY_ALIGN), tmp_path, world, progress=False)
    with pytest.raises(TypeError, match="load_model"):
        train_preference("tiny", cfg, tmp_path / "other")


def test_lora_alignment_trains_adapters_on_the_language_model_only(world, tmp_path):
    pytest.importorskip("peft")
    adapter = micro_adapter(world)
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    out = train_preference(adapter, DDPOConfig(**TINY_ALIGN, lora=True, lora_r=4), tmp_path, world, progress=False)
    after = weights_of(out)
    assert set(after) == set(before)  # merged back into a plain model
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("language_model" in k and k.endswith("proj.weight") for k in changed), changed


def test_lora_from_a_peft_config_and_its_initial_adapters_follow_the_seed(world, tmp_path):
    peft = pytest.importorskip("peft")
    pairs = [{"scene": ["train", i], "prompt": PROMPTS[0], "chosen": h.original, "rejected": h.text}
             for i in range(4) for h in world_hallucinations(world, world.scene("train", i), rng=i)[:1]]
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    runs = []
    for name in ("a", "b"):
        torch.manual_seed(len(runs))  # whatever state the process's generator is in
        runs.append(train_preference(micro_adapter(world), DPOConfig(**TINY_ALIGN), tmp_path / name, world, pairs,
                                     progress=False, peft_config=config))
    a, b = weights_of(runs[0]), weights_of(runs[1])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((runs[0] / "align_log.json").read_text())["peft_config"]["r"] == 2
    with pytest.raises(ValueError, match="lora"):
        train_preference(micro_adapter(world), DPOConfig(**TINY_ALIGN, lora=True), tmp_path / "c", world, pairs,
                         progress=False, peft_config=config)


def test_preference_configs_carry_their_papers_defaults_and_check_their_fields():
    assert (DPOConfig().beta, DPOConfig().average_logps) == (0.1, False)
    assert (DDPOConfig().beta, DDPOConfig().average_logps, DDPOConfig().gamma, DDPOConfig().min_match) == (
        0.5, True, 5.0, 3)
    assert PairSFTConfig().average_logps is True and not hasattr(PairSFTConfig(), "beta")
    assert preference_config("ddpo", steps=3).steps == 3
    assert DDPOConfig.paper()["title"].startswith("RLHF-V") and DPOConfig.paper()["url"].endswith("2305.18290")
    with pytest.raises(ValueError, match="gamma"):
        DDPOConfig(gamma=0)
    with pytest.raises(ValueError, match="beta"):
        DPOConfig(beta=-1)
    with pytest.raises(ValueError, match="preference method"):
        preference_config("ppo")


def test_the_old_align_names_still_work(world, tmp_path):
    from halluscope.training import align as old

    with pytest.warns(DeprecationWarning):
        cfg = old.AlignConfig(**TINY_ALIGN)
    assert old.AlignConfig(beta=0.2).resolved("dpo").beta == 0.2
    assert cfg.resolved("ddpo") == DDPOConfig(**TINY_ALIGN) and cfg.resolved("dpo") == DPOConfig(**TINY_ALIGN)
    assert cfg.resolved("sft") == PairSFTConfig(**TINY_ALIGN)
    with pytest.raises(ValueError, match="gamma"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.AlignConfig(gamma=0)
    with pytest.raises(ValueError, match="alignment method"):
        cfg.resolved("ppo")
    with pytest.warns(DeprecationWarning, match="train_preference"):
        out = old.align(micro_adapter(world), "dpo", cfg, tmp_path / "old", world, progress=False)
    new = train_preference(micro_adapter(world), DPOConfig(**TINY_ALIGN), tmp_path / "new", world, progress=False)
    a, b = weights_of(out), weights_of(new)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.warns(DeprecationWarning, match="training.data.encode"):
        assert old.encode is encode


SCRIPT = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_align import micro_adapter, TINY_ALIGN
from halluscope import World
from halluscope.training.preference import DDPOConfig, train_preference
world = World(seed=0)
train_preference(micro_adapter(world), DDPOConfig(**dict(TINY_ALIGN, batch_size={batch})), sys.argv[1], world,
                 progress=False)
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate's launcher is not installed")
def test_two_processes_train_like_one_process_with_twice_the_batch(world, tmp_path):
    one = train_preference(micro_adapter(world), DDPOConfig(**dict(TINY_ALIGN, batch_size=4)), tmp_path / "one", world,
                           progress=False)
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(Path(__file__).parent), batch=2)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no", str(script), str(tmp_path / "two")],
                   check=True, env=env, timeout=300, stdout=sys.stdout)
    log = json.loads((tmp_path / "two" / "align_log.json").read_text())
    assert log["processes"] == 2
    a, b = weights_of(one), weights_of(tmp_path / "two")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
