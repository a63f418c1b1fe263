"""HACL (Jiang et al., CVPR 2024) on tiny models: the heads' module, its global vectors, which
parameters each stage trains, the alignment stage on world and on real-style captions, and the
built-in model trained with it. Resume and the shared checks: tests/test_training_contract.py."""

import json

import pytest
import torch
from safetensors.torch import load_file

from halluscope.decoding import VLMAdapter
from halluscope.models.parts import visual_tokens
from halluscope.models.tiny import TinyConfig, build_model, build_processor
from halluscope.training.hacl import HACLConfig, HACLModel, hacl_align, world_hacl_batch

MICRO = TinyConfig(vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=2)


# the micro models run fastest on one thread, and spin far less on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")


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
        feats = visual_tokens(hacl.model, **vision)
        eos = hacl.language_model.get_input_embeddings()(torch.tensor([adapter.tokenizer.eos_token_id]))
        for i, f in enumerate(feats):
            alone = hacl.language_model(inputs_embeds=torch.cat([f, eos])[None]).last_hidden_state[0, -1]
            assert torch.allclose(batched[i], alone, atol=1e-5)
        from halluscope.training.data import caption_tensors

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
    saved = json.loads((tmp_path / "hacl_log.json").read_text())
    assert saved["method"] == "hacl" and saved["paper"]["venue"] == "CVPR 2024" and saved["log"] == log
    assert not (tmp_path / "checkpoint").exists()
    assert all(p.requires_grad for p in adapter.model.parameters())  # left as it came


def test_tiny_model_with_hacl_trains_and_loads(world, tmp_path):
    import halluscope
    from halluscope.training.sft import TrainConfig
    from halluscope.zoo.tiny import train_tiny

    out = train_tiny(world, TrainConfig(steps=3, batch_size=4, warmup_steps=1, vision_pretrain_steps=2,
                                        vision_batch_size=4), MICRO, tmp_path / "tiny-hacl", progress=False,
                     hacl_config=HACLConfig(steps=2, batch_size=4, warmup_steps=1))
    marker = json.loads((out / "halluscope.json").read_text())
    assert marker["kind"] == "tiny" and marker["recipe"]["hacl"]["steps"] == 2
    connector = json.loads((out / "train_log.json").read_text())["connector"]
    assert connector["config"]["contrastive_weight"] == 1 and len(connector["log"]["contrastive_loss"]) == 1
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
    with pytest.raises(ValueError, match="adam_betas"):
        HACLConfig(adam_betas=(0.9,))
    assert HACLConfig().paper()["title"].startswith("Hallucination Augmented Contrastive Learning")
