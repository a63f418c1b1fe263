"""Training-based mitigation on tiny models: HACL's module and alignment stage, DPO/DDPO inputs,
preference pairs, the alignment loop (resume, gamma = 1 equals DPO, LoRA, two processes)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from halluscope.hallucinate import world_hallucinations
from halluscope.models import VLMAdapter
from halluscope.models.tiny import TinyConfig, build_model, build_processor
from halluscope.training import align as align_module
from halluscope.training.align import AlignConfig, align, encode, pair_batch, response_weights, world_preference_pairs
from halluscope.training.hacl import HACLConfig, HACLModel, hacl_align, world_hacl_batch

MICRO = TinyConfig(vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=2)
PROMPTS = ["Describe the image in detail.", "Is there a fork in the image?"]
RESPONSES = ["the image shows a red fork and a knife.", "no"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def micro_adapter(world, seed=0):
    processor = build_processor(world)
    return VLMAdapter(build_model(processor, MICRO, seed=seed), processor, name="micro", max_new_tokens=12)


def family_parts(model):
    """parameter name -> the part it belongs to (vision, projector, language, output, heads)."""
    def part(name):
        if name.startswith("heads."):
            return "heads"
        if "multi_modal_projector" in name or ".merger." in name:
            return "projector"
        if "vision_tower" in name or ".visual." in name:
            return "vision"
        if "lm_head" in name:
            return "output"
        return "language"
    return {n: part(n) for n, _ in model.named_parameters(remove_duplicate=False)}  # tied names too


# ============================================================================ HACL
def hacl_cases(world, vlm):
    adapter, _ = vlm
    return [("vlm", adapter), ("micro built-in", micro_adapter(world))]


@pytest.mark.parametrize("stage,weight,trained", [("align", 1.0, {"projector", "heads"}),
                                                  ("align", 0.0, {"projector"}),  # the no-HACL control
                                                  ("instruct", 1.0, {"projector", "language", "output"})])
def test_hacl_gradients_reach_only_the_parameters_the_stage_trains(world, vlm, stage, weight, trained):
    for _, adapter in hacl_cases(world, vlm):
        cfg = HACLConfig(batch_size=3, contrastive_weight=weight)
        hacl = HACLModel(adapter.model, adapter.tokenizer.eos_token_id, config=cfg)
        batch = world_hacl_batch(world, adapter.processor, cfg, step=0)
        assert batch["hallucinated_ids"].shape[0] == 3
        hacl.set_stage(stage)
        hacl.zero_grad(set_to_none=True)
        losses = hacl(batch)
        assert all(torch.isfinite(v) for v in losses.values())
        if not weight:
            assert losses["loss"] is losses["gen_loss"] and losses["contrastive_loss"] == 0
        losses["loss"].backward()
        parts = family_parts(hacl)
        reached = {parts[n] for n, p in hacl.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        model = adapter.model  # tied output embeddings are the input ones, a "language" parameter
        tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
        want = trained - {"output"} if tied else trained
        assert reached == want, (stage, reached)
        assert {parts[n] for n, p in hacl.named_parameters() if p.requires_grad} == want
        for p in adapter.model.parameters():
            p.requires_grad_(True)
            p.grad = None


def test_hacl_global_vectors_are_eos_states_of_each_sample_alone(world, vlm):
    """Batched (padded) image and caption vectors equal those computed one sample at a time."""
    adapter, facts = vlm
    hacl = HACLModel(adapter.model, adapter.tokenizer.eos_token_id)
    images = facts["images"]
    vision = {k: v for k, v in adapter.build_inputs(images, ["x"] * len(images)).items()
              if k in ("pixel_values", "image_grid_thw")}
    with torch.no_grad():
        batched = hacl.image_states(vision)
        feats = hacl._image_features(vision)
        eos = hacl.language_model.get_input_embeddings()(torch.tensor([adapter.tokenizer.eos_token_id]))
        for i, f in enumerate(feats):
            alone = hacl.language_model(inputs_embeds=torch.cat([f, eos])[None]).last_hidden_state[0, -1]
            assert torch.allclose(batched[i], alone, atol=1e-5)
        from halluscope.training.hacl import caption_tensors

        ids, lengths = caption_tensors(adapter.tokenizer, ["a fork", "a red cup and a fork on a plate"])
        assert (ids[torch.arange(2), lengths - 1] == adapter.tokenizer.eos_token_id).all()
        text = hacl.text_states(ids, lengths)
        for i in range(2):
            alone = hacl.language_model(input_ids=ids[i : i + 1, : lengths[i]]).last_hidden_state[0, -1]
            assert torch.allclose(text[i], alone, atol=1e-5)


def test_hacl_temperature_is_clamped(world):
    adapter = micro_adapter(world)
    cfg = HACLConfig(batch_size=2)
    hacl = HACLModel(adapter.model, adapter.tokenizer.eos_token_id, config=cfg)
    assert hacl.heads.temperature.item() == pytest.approx(0.07)
    assert hacl.heads.image.out_features == MICRO.text_hidden // 4
    with torch.no_grad():
        hacl.heads.temperature.fill_(3.0)
    hacl(world_hacl_batch(world, adapter.processor, cfg, 0))
    assert hacl.heads.temperature.item() == pytest.approx(0.5)


def test_hacl_alignment_stage_trains_projector_and_heads_only(world, tmp_path):
    adapter = micro_adapter(world)
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    cfg = HACLConfig(steps=3, batch_size=4, lr=1e-2, warmup_steps=1, log_every=1)
    log = hacl_align(adapter.model, adapter.processor, world, cfg, tmp_path, progress=False)
    assert len(log["contrastive_loss"]) == 3
    parts = family_parts(adapter.model)
    for name, value in adapter.model.state_dict().items():
        changed = not torch.equal(value, before[name])
        assert changed == (parts[name] == "projector"), name
    heads = load_file(tmp_path / "hacl_heads.safetensors")
    assert set(heads) == {"image.weight", "image.bias", "text.weight", "text.bias", "temperature"}
    assert all(p.requires_grad for p in adapter.model.parameters())  # left as it came


def test_hacl_alignment_resumes_to_the_same_weights(world, tmp_path, monkeypatch):
    from halluscope.training import sft

    cfg = HACLConfig(steps=4, batch_size=3, warmup_steps=1, checkpoint_every=2)
    straight = micro_adapter(world).model
    hacl_align(straight, build_processor(world), world, cfg, tmp_path / "straight", progress=False)
    real = sft.lr_at

    def crash_at_3(step, cfg_):
        if step == 3:
            raise KeyboardInterrupt
        return real(step, cfg_)

    monkeypatch.setattr(sft, "lr_at", crash_at_3)
    with pytest.raises(KeyboardInterrupt):
        hacl_align(micro_adapter(world).model, build_processor(world), world, cfg, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(sft, "lr_at", real)
    resumed = micro_adapter(world, seed=7).model  # another init: everything must come from the checkpoint
    hacl_align(resumed, build_processor(world), world, cfg, tmp_path / "resumed", progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert torch.equal(load_file(tmp_path / "straight" / "hacl_heads.safetensors")["image.weight"],
                       load_file(tmp_path / "resumed" / "hacl_heads.safetensors")["image.weight"])


def test_tiny_model_with_hacl_trains_and_loads(world, tmp_path):
    import halluscope
    from halluscope.training.hacl import train_tiny_hacl
    from halluscope.training.sft import TrainConfig

    out = train_tiny_hacl(world, TrainConfig(steps=3, batch_size=4, warmup_steps=1, vision_pretrain_steps=2,
                                             vision_batch_size=4), MICRO,
                          HACLConfig(steps=2, batch_size=4, warmup_steps=1), tmp_path / "tiny-hacl", progress=False)
    marker = json.loads((out / "halluscope.json").read_text())
    assert marker["kind"] == "tiny" and marker["recipe"]["hacl"]["steps"] == 2
    adapter = halluscope.load_model(str(out), device="cpu")
    assert adapter.yes_no_suffix == ""
    image = world.render(world.scene("test", 0))
    assert adapter.answer_yes_no([image], ["Is there a fork in the image?"])[0] in ("yes", "no")


def test_hacl_alignment_on_real_style_captions_with_rule_mirrors(vlm, tmp_path):
    from halluscope.hallucinate import RuleHallucinator
    from halluscope.training.hacl import hacl_batch

    adapter, facts = vlm
    captions = ["A man riding a horse next to two dogs.", "A red car parked behind a bus."]
    objects = [["person", "horse", "dog"], ["car", "bus"]]
    rules = RuleHallucinator(seed=0)
    mirrors = [h.text for c, o in zip(captions, objects) for h in rules(c, o, kinds=["object", "count"])]
    assert len(mirrors) == 3  # the second caption has no number

    def data(k):
        return hacl_batch(adapter.processor, facts["images"], ["Describe the image."] * 2, captions, mirrors)

    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    log = hacl_align(adapter.model, adapter.processor, config=HACLConfig(steps=2, batch_size=2, log_every=1),
                     out_dir=tmp_path, progress=False, data=data)
    assert len(log["loss"]) == 2
    parts = family_parts(adapter.model)
    changed = {parts[k] for k, v in adapter.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"projector"}
    adapter.model.load_state_dict(before)  # the fixture is shared by the module


def test_hacl_config_checks():
    with pytest.raises(ValueError, match="batch_size"):
        HACLConfig(batch_size=1)
    with pytest.raises(ValueError, match="temperature"):
        HACLConfig(temperature=0.9)
    with pytest.raises(ValueError, match="hallucination_kinds"):
        HACLConfig(hallucination_kinds=("colour",))


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


# ============================================================================ the alignment loop
TINY_ALIGN = dict(steps=4, batch_size=3, lr=1e-3, warmup_steps=1, n_pairs=6, max_new_tokens=10, log_every=1,
                  checkpoint_every=2, generation_batch_size=6)


def weights_of(folder):
    """The saved model's parameters under the names the model uses in memory."""
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(folder).state_dict()


def test_ddpo_with_gamma_1_trains_exactly_like_dpo(world, tmp_path):
    dpo = align(micro_adapter(world), "dpo", AlignConfig(**TINY_ALIGN), tmp_path / "dpo", world, progress=False)
    pairs = [json.loads(line) for line in (dpo / "pairs.jsonl").read_text().splitlines()]
    ddpo = align(micro_adapter(world), "ddpo", AlignConfig(**TINY_ALIGN, gamma=1.0, beta=0.1, average_logps=False),
                 tmp_path / "ddpo", world, pairs=pairs, progress=False)
    a, b = weights_of(dpo), weights_of(ddpo)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    other = align(micro_adapter(world), "ddpo", AlignConfig(**TINY_ALIGN, beta=0.1, average_logps=False),
                  tmp_path / "ddpo5", world, pairs=pairs, progress=False)
    assert not all(torch.allclose(a[k], weights_of(other)[k], atol=1e-6) for k in a)
    log = json.loads((dpo / "align_log.json").read_text())
    assert log["config"]["beta"] == 0.1 and log["config"]["average_logps"] is False  # DPO's paper defaults
    assert len(log["log"]["loss"]) == 4 and not (dpo / "checkpoint").exists()


def test_alignment_moves_preferences_and_keeps_the_vision_tower(world, tmp_path):
    adapter = micro_adapter(world)
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    cfg = AlignConfig(**{**TINY_ALIGN, "steps": 8, "lr": 3e-3})
    out = align(adapter, "ddpo", cfg, tmp_path, world, progress=False)
    log = json.loads((out / "align_log.json").read_text())["log"]
    assert log["margin"][-1][1] > 0 and log["loss"][-1][1] < log["loss"][0][1]
    after = weights_of(out)
    parts = family_parts(adapter.model)
    for name, value in before.items():
        assert torch.equal(value, after[name]) == (parts[name] == "vision"), name
    reloaded = __import__("halluscope").load_model(str(out), device="cpu")
    assert reloaded.generate([world.render(world.scene("test", 0))], PROMPTS[:1], max_new_tokens=3)


def test_alignment_resumes_to_the_same_weights(world, tmp_path, monkeypatch):
    cfg = AlignConfig(**TINY_ALIGN)
    straight = align(micro_adapter(world), "ddpo", cfg, tmp_path / "straight", world, progress=False)
    real = align_module.lr_at

    def crash_at_3(step, cfg_):
        if step == 3:
            raise KeyboardInterrupt
        return real(step, cfg_)

    monkeypatch.setattr(align_module, "lr_at", crash_at_3)
    with pytest.raises(KeyboardInterrupt):
        align(micro_adapter(world), "ddpo", cfg, tmp_path / "resumed", world, progress=False)
    assert json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())["step"] == 2
    monkeypatch.setattr(align_module, "lr_at", real)
    resumed = align(micro_adapter(world), "ddpo", cfg, tmp_path / "resumed", world, progress=False)
    a, b = weights_of(straight), weights_of(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # a finished folder is returned as it is, and refuses another config
    assert align(micro_adapter(world), "ddpo", cfg, tmp_path / "resumed", world, progress=False) == resumed
    with pytest.raises(ValueError, match="another method or config"):
        align(micro_adapter(world), "dpo", cfg, tmp_path / "resumed", world, progress=False)
    (tmp_path / "resumed" / "align_log.json").unlink()
    with pytest.raises(ValueError, match="another method or config"):
        (tmp_path / "resumed" / "checkpoint").mkdir()
        (tmp_path / "resumed" / "checkpoint" / "state.json").write_text(json.dumps(
            {"step": 1, "log": {}, "method": "dpo", "config": cfg.resolved("dpo").to_dict()}))
        align(micro_adapter(world), "ddpo", cfg, tmp_path / "resumed", world, progress=False)


def test_lora_alignment_trains_adapters_on_the_language_model_only(world, tmp_path):
    pytest.importorskip("peft")
    adapter = micro_adapter(world)
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    out = align(adapter, "ddpo", AlignConfig(**TINY_ALIGN, lora=True, lora_r=4), tmp_path, world, progress=False)
    after = weights_of(out)
    assert set(after) == set(before)  # merged back into a plain model
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("language_model" in k and k.endswith("proj.weight") for k in changed), changed


def test_align_config_checks_and_paper_defaults():
    with pytest.raises(ValueError, match="gamma"):
        AlignConfig(gamma=0)
    with pytest.raises(ValueError, match="alignment method"):
        AlignConfig().resolved("ppo")
    assert AlignConfig().resolved("ddpo").beta == 0.5 and AlignConfig().resolved("ddpo").average_logps is True
    assert AlignConfig(beta=0.2).resolved("dpo").beta == 0.2


SCRIPT = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_align import micro_adapter, TINY_ALIGN
from halluscope import World
from halluscope.training.align import AlignConfig, align
world = World(seed=0)
align(micro_adapter(world), "ddpo", AlignConfig(**dict(TINY_ALIGN, batch_size={batch})), sys.argv[1], world,
      progress=False)
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate's launcher is not installed")
def test_two_processes_train_like_one_process_with_twice_the_batch(world, tmp_path):
    one = align(micro_adapter(world), "ddpo", AlignConfig(**dict(TINY_ALIGN, batch_size=4)), tmp_path / "one", world,
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
