"""Cause studies: each level changes what it claims to change, the study recipe's pieces (connectors,
resolution, annotation noise) build, train, save and load, the summary's arithmetic, the command line, and a
killed study that resumes to the same results."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from halluscope import load_model
from halluscope.causes import (CAUSES, METRICS, StudyConfig, arm_recipe, mean_ci, run_arm, run_study, summarize,
                               verdict)
from halluscope.models import MARKER
from halluscope.models.tiny import TinyConfig, build_model, build_processor, image_token_count
from halluscope.hallucinate.world import cooccurring
from halluscope.training.sft import (Batcher, TrainConfig, _cooccurring_yes, batch_for_step, make_example,
                                     pixel_values)
from halluscope.world import QUESTION_TEMPLATES
from halluscope.world.config import INVERSE, RELATIONS
from halluscope.world.claims import caption_claims
from halluscope.zoo.tiny import tiny_path, tiny_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

MICRO = dict(vision_hidden=32, text_hidden=32, text_layers=1, heads=2)
MICRO_STUDY = StudyConfig(model=MICRO, train=dict(steps=6, vision_pretrain_steps=4, batch_size=4, vision_batch_size=8,
                                                  checkpoint_every=3, warmup_steps=2),
                          pope_images=3, chair_images=4, prior_images=2, batch_size=8)


def test_every_cause_has_four_levels_its_baseline_and_clear_errors():
    assert {"cooccurrence", "yes-bias", "annotation-noise", "color-prior", "spatial-prior", "count-prior",
            "resolution", "connector", "lm-size", "temperature", "top-p"} <= set(CAUSES)
    for cause in CAUSES.values():
        assert len(cause.levels) >= 4 and cause.baseline in cause.levels
        assert cause.parse_levels(",".join(map(str, cause.levels))) == list(cause.levels)
        assert set(cause.expect) <= set(METRICS)
    with pytest.raises(ValueError, match="cause 'yes-bias'.*e.g. --levels 0.5,0.6"):
        CAUSES["yes-bias"].parse_levels("0.5,1.5")
    with pytest.raises(ValueError, match="query-K"):
        CAUSES["connector"].parse_levels("mlp,query-0")


@pytest.mark.parametrize("name,level,where,field,value", [
    ("cooccurrence", 0.5, "world", "cooccurrence_strength", 0.5),
    ("yes-bias", 0.8, "world", "yes_bias", 0.8),
    ("color-prior", 0.25, "world", "color_prior_strength", 0.25),
    ("spatial-prior", 0.0, "world", "spatial_prior_strength", 0.0),
    ("count-prior", 0.5, "world", "count_prior_strength", 0.5),
    ("annotation-noise", 0.2, "train", "caption_noise", 0.2),
    ("resolution", 16, "model", "image_size", 16),
    ("connector", "query-4", "model", "connector", "query-4"),
    ("lm-size", 2, "model", "text_layers", 2),
])
def test_a_training_level_sets_its_knob_and_nothing_else(name, level, where, field, value):
    world, tiny, train, arm = arm_recipe(CAUSES[name], level, 7, StudyConfig())
    got = {"world": world.config, "model": tiny, "train": train}[where]
    assert getattr(got, field) == value and arm.trains and train.seed == 7
    base_world, base_tiny, base_train, _ = arm_recipe(CAUSES["connector"], "mlp", 7, StudyConfig())
    changed = {k for k, v in world.config.to_dict().items() if v != base_world.config.to_dict()[k]}
    changed |= {k for k, v in tiny.to_dict().items() if v != base_tiny.to_dict()[k]}
    changed |= {k for k, v in train.to_dict().items() if v != base_train.to_dict()[k]}
    assert changed <= {field}


@pytest.mark.parametrize("name,level,method,args", [
    ("temperature", 0.0, "greedy", {}), ("temperature", 1.5, "sample", {"temperature": 1.5}),
    ("top-p", 0.8, "sample", {"temperature": 1.0, "top_p": 0.8}),
])
def test_a_decoding_level_decodes_the_study_recipe_s_model(name, level, method, args):
    world, tiny, train, arm = arm_recipe(CAUSES[name], level, 0, StudyConfig())
    assert not arm.trains and arm.method == method and arm.method_args == args and arm.yes_no == "generate"
    base_world, base_tiny, base_train, _ = arm_recipe(CAUSES["connector"], "mlp", 0, StudyConfig())
    assert tiny_recipe(world, train, tiny) == tiny_recipe(base_world, base_train, base_tiny)


@pytest.mark.parametrize("k", [2, 4, 8, 16])
def test_the_query_connector_gives_k_visual_tokens(world, k):
    cfg = TinyConfig(**MICRO, connector=f"query-{k}")
    processor = build_processor(world, cfg)
    model = build_model(processor, cfg)
    pixels = pixel_values(np.stack([world.render_array(world.scene("test", i)) for i in range(3)]))
    features = model.model.get_image_features(pixel_values=pixels).pooler_output
    assert [f.shape for f in features] == [torch.Size([k, 32])] * 3
    inputs = processor(images=[world.render(world.scene("test", 0))], text=["USER: <image>\nhi ASSISTANT:"],
                       return_tensors="pt")
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == k == image_token_count(processor)
    batch = batch_for_step(world, Batcher(processor), TrainConfig(batch_size=2), 0)
    assert (batch["input_ids"] == model.config.image_token_id).sum() == 2 * k
    assert torch.isfinite(model(**batch).loss)


def test_tiny_config_names_the_fix_for_a_bad_size_or_connector():
    for bad in ({"image_size": 12}, {"image_size": 0}, {"image_size": 128}):
        with pytest.raises(ValueError, match="TinyConfig.image_size=.*divisors"):
            TinyConfig(**bad)
    with pytest.raises(ValueError, match="TinyConfig.connector=.*query-8"):
        TinyConfig(connector="qformer")


def test_the_linear_connector_is_one_linear_map(world):
    cfg = TinyConfig(**MICRO, connector="linear")
    model = build_model(build_processor(world, cfg), cfg)
    assert isinstance(model.model.multi_modal_projector, torch.nn.Linear)


@pytest.mark.parametrize("size", [32, 16, 8])
def test_lower_resolution_keeps_16_patches_and_training_pixels_equal_the_processor_s(world, size):
    cfg = TinyConfig(**MICRO, image_size=size)
    processor = build_processor(world, cfg)
    model = build_model(processor, cfg)
    images = [world.render(world.scene("test", i)) for i in range(4)]
    from_processor = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    ours = pixel_values(np.stack([np.asarray(im) for im in images]), size)
    assert ours.shape == (4, 3, size, size) and torch.allclose(ours, from_processor, atol=1e-6)
    assert image_token_count(processor) == 16
    assert model.model.get_image_features(pixel_values=ours).pooler_output[0].shape[0] == 16
    # Box filtering averages neighbouring pixels: fewer distinct levels survive than at full resolution.
    full = pixel_values(np.stack([np.asarray(im) for im in images]))
    assert len(torch.unique(ours[:, 0])) < len(torch.unique(full[:, 0]))


@pytest.mark.parametrize("connector", ["linear", "query-4"])
def test_a_model_with_another_connector_saves_and_loads(world, tmp_path, connector):
    cfg = TinyConfig(**MICRO, connector=connector, image_size=32)
    processor = build_processor(world, cfg)
    model = build_model(processor, cfg).eval()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    (tmp_path / MARKER).write_text("{}")
    adapter = load_model(str(tmp_path))
    inputs = processor(images=[world.render(world.scene("test", 1))], text=["USER: <image>\nhi ASSISTANT:"],
                       return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, adapter.model(**inputs).logits)
    assert type(adapter.model.model.multi_modal_projector) is type(model.model.multi_modal_projector)


def test_annotation_noise_puts_the_asked_share_of_wrong_captions_into_training(world):
    cfg = TrainConfig(task_mix={"detailed": 1.0}, caption_noise=0.3)
    gen, wrong = np.random.default_rng(3), []
    for _ in range(400):
        probe = np.random.default_rng()
        probe.bit_generator.state = gen.bit_generator.state  # make_example's first draw picks the scene
        truth = world.scene("train", int(probe.integers(world.config.train_size)))
        _, turns = make_example(world, gen, cfg)
        wrong.append(any(not c.true for c in caption_claims(turns[0][1], truth, world.config)))
    assert abs(sum(wrong) / len(wrong) - 0.3) < 0.07, sum(wrong) / len(wrong)
    # Without noise the data is what it always was: no draw is spent on it.
    gen_a, gen_b = np.random.default_rng(5), np.random.default_rng(5)
    plain = TrainConfig(task_mix={"detailed": 1.0})
    assert [make_example(world, gen_a, plain)[1] for _ in range(20)] == [
        make_example(world, gen_b, TrainConfig(task_mix={"detailed": 1.0}, caption_noise=0.0))[1] for _ in range(20)]


def test_question_noise_answers_yes_to_absent_cooccurring_classes_only(world):
    def answers(cfg, seed=4, n=300):
        gen, out = np.random.default_rng(seed), []
        for _ in range(n):
            probe = np.random.default_rng()
            probe.bit_generator.state = gen.bit_generator.state  # make_example's first draw picks the scene
            scene = world.scene("train", int(probe.integers(world.config.train_size)))
            out += [(scene, q.split()[3], a) for q, a in make_example(world, gen, cfg)[1]]
        return out

    mix = {"task_mix": {"qa": 1.0}, "qa_mix": {"existence": 1.0}}
    noisy = answers(TrainConfig(**mix, qa_noise=0.3))
    wrong = [(scene, cls) for scene, cls, a in noisy if a == "yes" and cls not in scene.classes]
    assert wrong and all(any(cls in cooccurring(world, c) for c in scene.classes) for scene, cls in wrong)
    # The partner comes before the scene-mates.
    partners, template = world.config.partners(), QUESTION_TEMPLATES["existence"]
    lone = next(scene for scene, *_ in noisy if any(partners.get(c) not in (None, *scene.classes)
                                                    for c in scene.classes))
    missing = {partners[c] for c in lone.classes if partners.get(c) not in (None, *lone.classes)}
    first = _cooccurring_yes(world, lone, np.random.default_rng(0), set())
    assert first["answer"] == "yes" and first["question"].split()[3] in missing
    then = _cooccurring_yes(world, lone, np.random.default_rng(0), {template.format(c) for c in missing})
    assert then["question"].split()[3] not in missing | set(lone.classes)
    absent = sum(cls not in scene.classes for scene, cls, _ in noisy)  # the questions that would be answered no
    assert 0.2 < len(wrong) / absent <= 0.3, len(wrong) / absent  # under 0.3 where no such class is left to ask
    assert all(cls in scene.classes for scene, cls, a in answers(TrainConfig(**mix, qa_noise=0.0)) if a == "yes")
    with pytest.raises(ValueError, match="qa_noise"):
        TrainConfig(qa_noise=1.5)


def test_relation_hard_negatives_ask_the_inverse(world):
    def relations(cfg, seed=3, n=600):
        gen, out = np.random.default_rng(seed), []
        for _ in range(n):
            for q, a in make_example(world, gen, cfg)[1]:
                asked = next((r for r in RELATIONS if f" {r} the " in q), None)
                if asked is None:  # a scene without two single objects gets an existence question
                    continue
                out.append((asked, a.split(" , ")[2], a.split(" , ")[3]))  # asked, true (the answer says), verdict
        return out

    # one turn each: a conversation skips a question it has asked, which an all-relation one often repeats
    mix = {"task_mix": {"qa": 1.0}, "qa_mix": {"relation": 1.0}, "qa_turns": 1}
    for share in (0.0, 0.8):
        asked = relations(TrainConfig(**mix, relation_inverse=share))
        assert all((a == t) == (v == "yes") for a, t, v in asked)  # the verdict stays the truth
        no = [(a, t) for a, t, v in asked if v == "no"]
        inverse = sum(INVERSE[t] == a for a, t in no) / len(no)
        expected = share + (1 - share) / 3  # the uniform draw of the other three finds it a third of the time
        assert abs(inverse - expected) < 0.08, (share, inverse)
    assert "relation_inverse" not in TrainConfig().recipe()
    with pytest.raises(ValueError, match="relation_inverse"):
        TrainConfig(relation_inverse=-0.1)


def test_new_fields_at_their_defaults_leave_cached_model_names_alone():
    assert "connector" not in TinyConfig().recipe() and "image_size" not in TinyConfig().recipe()
    assert "caption_noise" not in TrainConfig().recipe()
    assert TinyConfig(connector="linear").recipe()["connector"] == "linear"
    # grammar 3 (places before relations and counts, captions in CAPTION_ORDER), then the question noise
    # (TrainConfig.qa_noise, a recipe field since its default is 0.1), named every model anew
    assert tiny_path(tiny_recipe()).name == "tiny-35a672102fd7"


def test_mean_ci_and_verdicts():
    e = mean_ci([0.1, 0.2, 0.3])
    assert e["mean"] == pytest.approx(0.2) and e["ci95"][1] - 0.2 == pytest.approx(4.303 * 0.1 / math.sqrt(3), rel=1e-3)
    assert mean_ci([0.5])["ci95"] is None and mean_ci([None])["mean"] is None
    assert verdict({"mean": 0.1, "ci95": [0.05, 0.15]}, 1) == "agrees"
    assert verdict({"mean": 0.1, "ci95": [0.05, 0.15]}, -1) == "disagrees"
    assert verdict({"mean": 0.1, "ci95": [-0.05, 0.25]}, 1) == "no clear effect"
    assert verdict({"mean": 0.1, "ci95": [0.05, 0.15]}, None) == "rises"


def test_summary_pairs_levels_by_seed():
    cause = CAUSES["cooccurrence"]
    arms = {}
    for level, base in (("0.0", 0.10), ("0.8", 0.20)):
        for seed, noise in ((0, 0.0), (1, 0.05), (2, -0.02)):
            arms[(level, seed)] = {"metrics": {"chair_i": base + noise, "pope_random": 0.9 - base}}
    s = summarize(cause, [0.0, 0.8], [0, 1, 2], arms)
    eff = s["effects"]["chair_i"]
    assert eff["mean"] == pytest.approx(0.10) and eff["ci95"][0] == pytest.approx(0.10)  # same seed noise: exact
    assert eff["verdict"] == "agrees" and s["effects"]["pope_random"]["verdict"] == "agrees"
    assert s["baseline"] == "0.8"  # the study recipe's level
    assert s["levels"]["0.0"]["chair_i"]["diff_vs_baseline"]["mean"] == pytest.approx(-0.10)


def test_a_killed_study_resumes_to_the_same_results(tmp_path, monkeypatch):
    monkeypatch.setenv("HALLUSCOPE_CACHE", str(tmp_path / "cache"))
    import halluscope.runner as runner

    whole = run_study("annotation-noise", [0.0, 0.5], [0], tmp_path / "whole", MICRO_STUDY, progress=False, plots=False)

    real, calls = runner.run_benchmark, []

    def dies_in_the_second_arm(task, adapter, out, **kw):
        calls.append(task.name)
        if "0.5" in str(out) and task.name == "world-chair":
            real(task, adapter, out, **{**kw, "limit": 2})  # two captions written, then the process dies
            raise KeyboardInterrupt
        return real(task, adapter, out, **kw)

    monkeypatch.setattr(runner, "run_benchmark", dies_in_the_second_arm)
    with pytest.raises(KeyboardInterrupt):
        run_study("annotation-noise", [0.0, 0.5], [0], tmp_path / "killed", MICRO_STUDY, progress=False, plots=False)
    first = (tmp_path / "killed" / "arms" / "0.0" / "s0" / "arm.json").stat().st_mtime_ns
    monkeypatch.setattr(runner, "run_benchmark", real)
    partial = run_study("annotation-noise", [0.0, 0.5], [0], tmp_path / "killed", MICRO_STUDY, progress=False,
                        plots=False, train=False)  # the finished arm only, the unfinished one listed
    assert [a["level"] for a in partial["arms"]] == [0.0] and partial["missing_arms"] == ["0.5/s0"]
    assert partial["summary"]["levels"]["0.0"] == whole["summary"]["levels"]["0.0"]
    resumed = run_study("annotation-noise", [0.0, 0.5], [0], tmp_path / "killed", MICRO_STUDY, progress=False,
                        plots=False)
    assert (tmp_path / "killed" / "arms" / "0.0" / "s0" / "arm.json").stat().st_mtime_ns == first  # not redone
    assert [a["metrics"] for a in resumed["arms"]] == [a["metrics"] for a in whole["arms"]]
    assert resumed["summary"] == whole["summary"]
    # an arm finished before a caption measure existed gets it from its saved caption results
    arm_json = tmp_path / "killed" / "arms" / "0.0" / "s0" / "arm.json"
    record = json.loads(arm_json.read_text())
    del record["metrics"]["repeats_phrase"]
    arm_json.write_text(json.dumps(record))
    backfilled = run_arm("annotation-noise", 0.0, 0, tmp_path / "killed", MICRO_STUDY)
    assert backfilled["metrics"] == whole["arms"][0]["metrics"]
    other = StudyConfig(**{**MICRO_STUDY.to_dict(), "chair_images": 5})
    with pytest.raises(ValueError, match="another study recipe or evaluation.*new --output"):
        run_study("annotation-noise", [0.0, 0.5], [0], tmp_path / "killed", other, progress=False, plots=False)
    changed = StudyConfig(**{**MICRO_STUDY.to_dict(), "knobs": {"yes_bias": 0.7}})
    with pytest.raises(ValueError, match="another study recipe or evaluation"):
        run_study("annotation-noise", [0.0, 0.5], [0], tmp_path / "killed", changed, progress=False, plots=False)


def test_study_command_writes_json_plots_and_page(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from halluscope.cli import app

    monkeypatch.setenv("HALLUSCOPE_CACHE", str(tmp_path / "cache"))
    args = ["study", "connector", "--levels", "linear,query-2", "--seeds", "0,1", "--output", str(tmp_path / "s"),
            "--model-args", ",".join(f"{k}={v}" for k, v in MICRO.items()),
            "--train-args", "steps=4,vision_pretrain_steps=2,batch_size=4,vision_batch_size=8",
            "--study-args", "pope_images=2,chair_images=3,prior_images=2,batch_size=8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert study["levels"] == ["linear", "query-2"] and len(study["arms"]) == 4
    assert {a["arm"]["model"]["connector"] for a in study["arms"]} == {"linear", "query-2"}
    assert (tmp_path / "s" / "plots" / "overview.png").stat().st_size > 1000
    assert (tmp_path / "s" / "plots" / "chair_i.png").exists()
    assert "| CHAIR_i |" in (tmp_path / "s" / "study.md").read_text()
    bad = CliRunner().invoke(app, ["study", "resolution", "--levels", "64,0"])
    assert bad.exit_code != 0 and "--levels" in bad.output and "e.g. --levels 64,32,16,8" in bad.output
