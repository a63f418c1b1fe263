"""`halluscope diagnose`: every analysis on the micro model and on tiny random LLaVA and Qwen2-VL (keys,
shapes, invariants: a model's base rank against itself is 0, masking nothing gives zero variance, the probe
AUC of identical inputs is 0.5), the built-in base LM's training, and the command on the world and on a
real-format model folder with stand-in images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from halluscope import World
from halluscope.cli import app
from halluscope.diagnose import (
    ANALYSES, BaseLMConfig, TextLMScorer, VLMScorer, attention_to_image, auc, base_rank, builtin_base_lm,
    cooccurrence_clusters, elbow_k, feature_stability, kinds, language_prior, logit_elbow, modality_gap,
    overgeneralization, position, probe_auc, world_neighbours,
)
from halluscope.decoding import get_method
from halluscope.diagnose._forced import token_ranks
from halluscope.diagnose.data import world_caption_records, world_questions
from halluscope.diagnose.vision import feature_variances
from halluscope.steering.demos import WorldHallucinator
from halluscope.world.claims import caption_claims

from micro_eval import micro_adapter
from tiny_vlms import BUILDERS


@pytest.fixture(scope="module")
def world():
    return World(seed=0)


@pytest.fixture(scope="module")
def micro(world):
    torch.set_num_threads(1)
    return micro_adapter(world)


def _captions(world, n):
    """True captions of the even images, hallucinated mirrors of the odd ones."""
    mirror = WorldHallucinator(world, 0)
    return [mirror(s) if i % 2 else world.caption(s.truth) for i, s in enumerate(world.sample("test", n))]


@pytest.fixture(scope="module")
def records(world, micro):
    return world_caption_records(micro, world, 6, captions=_captions(world, 6))


def _records_for(adapter, facts, world, n=4):
    """World captions (true and mirrored) of world scenes, on the model's own test images."""
    out = []
    for i, (s, caption) in enumerate(zip(world.sample("test", n), _captions(world, n))):
        claims = [c.to_dict() for c in caption_claims(caption, s.truth, world.config)]
        out.append({"id": s.truth.image_id, "image": facts["images"][i % len(facts["images"])],
                    "prompt": "Describe the image in detail.", "caption": caption, "claims": claims,
                    "objects": s.truth.classes, "scene": s.truth.scene_type})
    return out


# ------------------------------------------------------------------------------ claim analyses (no model)
def test_claim_analyses(records, world):
    k = kinds(records)
    assert set(k) == {"object", "attribute", "count", "relation", "all", "n_captions"}
    assert k["all"]["n"] == sum(len(r["claims"]) for r in records) and k["all"]["n_false"] >= 3
    assert all(0 <= k[x]["rate"] <= 1 and k[x]["ci95"][0] <= k[x]["ci95"][1] for x in ("object", "all"))
    p = position(records)
    assert sum(p["sentence"]["n"]) == sum(p["relative"]["n"]) == k["all"]["n"]
    assert len(p["relative"]["rate"]) == len(p["relative"]["edges"]) - 1
    o = overgeneralization(records, world.config.scenes)
    assert set(o) == set(world.config.scenes)
    assert all(e["images_in_scene"] + e["images_other"] == len(records) for e in o.values())
    clusters = cooccurrence_clusters([["fork", "knife"], ["fork", "knife", "cup"], ["car", "bus"], ["car", "bus"]], 2)
    assert sorted(map(sorted, clusters.values())) == [["bus", "car"], ["cup", "fork", "knife"]]


def test_probe_auc_of_identical_inputs_is_one_half():
    x = np.random.default_rng(0).normal(size=(20, 5))
    assert probe_auc(x, x.copy()) == 0.5
    assert probe_auc(x, x + 3.0) > 0.95
    assert auc([1, 1, 1], [0, 1, 0]) == 0.5 and auc([0, 1], [0, 1]) == 1.0


def test_probe_accuracy_reads_a_linear_code_and_not_noise():
    from halluscope.diagnose.vision import probe_accuracy

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (300,), generator=g)
    x = torch.randn(300, 16, generator=g)
    assert probe_accuracy(x, y) < 0.45  # chance: 1 / 4
    x[:, 3] += 8 * y  # one coordinate holds the label, linearly, 8 noise sigmas apart
    assert probe_accuracy(x, y) > 0.95
    with pytest.raises(ValueError, match="train_share"):
        probe_accuracy(x, y, train_share=1.0)


def test_elbow():
    assert elbow_k(torch.tensor([0.97] + [0.001] * 30)) == 1
    assert elbow_k(torch.tensor([0.45, 0.45] + [0.002] * 30)) == 2


# ------------------------------------------------------------------------------ every analysis, every model
def _check_every_analysis(adapter, recs, world):
    claims = sum(len(r["claims"]) for r in recs)
    b = base_rank(recs, VLMScorer(adapter, image=False), world_neighbours(world, 50, 3))
    assert b["hallucinated"]["n"] + b["correct"]["n"] == claims and b["hallucinated"]["n"] >= 1
    assert abs(sum(b["attribution"].values()) - 1) < 1e-9
    e = logit_elbow(adapter, recs)
    assert e["hallucinated"]["n"] + e["correct"]["n"] == claims and e["correct"]["mean"] >= 1
    f = feature_stability(adapter, [r["image"] for r in recs], [0.0, 0.5, 0.1, 0.2][: len(recs)], trials=3)
    assert len(f["relative_variance"]) == len(recs) and min(f["variance"]) > 0 and 0 <= f["share_high"] <= 1
    g = modality_gap(adapter, [r["image"] for r in recs], [r["caption"] for r in recs[::2]],
                     [r["caption"] for r in recs[1::2]])
    assert len(g["projection"]["image"]) == len(recs) and len(g["projection"]["correct"]) == len(recs[::2])
    assert 0 <= g["probe_auc"] <= 1 and g["centroid_distance"]["image_correct"] > 0
    questions = [{"image": r["image"], "text": "Is there a fork in the image?", "label": "no"} for r in recs]
    lp = language_prior(adapter, questions, batch_size=2)
    assert lp["n"] == len(recs) and set(lp["yes_rate"]) == {"image", "no_image", "noise"}
    assert all(0 <= v <= 1 for v in lp["agreement_with_image"].values())
    a = attention_to_image(adapter, recs[:2])
    assert a["eager"] and 0 <= a["all_tokens"]["mean"] <= 1 and len(a["along_caption"]["mean"]) == 5
    assert a["hallucinated"]["n"] + a["correct"]["n"] == sum(len(r["claims"]) for r in recs[:2])


def test_every_analysis_on_the_micro_model(micro, records, world):
    _check_every_analysis(micro, records[:4], world)


def test_every_analysis_on_tiny_llava_and_qwen2vl(vlm, world):
    adapter, facts = vlm
    _check_every_analysis(adapter, _records_for(adapter, facts, world), world)


# ------------------------------------------------------------------------------ invariants on every model
def _invariants(adapter, images, prompt="Describe the image in detail."):
    # a model's greedy tokens rank 0 under the model itself (generated with the KV-cache engine, ranked by
    # one teacher-forced pass), up to the first special token a random model may emit
    special = set(adapter.tokenizer.all_special_ids) | {adapter.image_token_id}
    for image in images:
        decoder = get_method("greedy")
        ids = decoder.generate(adapter, adapter.decode_inputs(decoder, [image], [prompt]), 6)[0].tolist()
        ids = ids[: next((j for j, t in enumerate(ids) if t in special), len(ids))]
        if ids:
            assert token_ranks(adapter, image, prompt, ids) == [0] * len(ids)
    # masking nothing leaves the vision features unchanged
    assert all(v["variance"] == 0 for v in feature_variances(adapter, images, trials=3, mask_ratio=0.0))


def test_base_rank_of_a_caption_against_its_own_model_is_zero(micro, world):
    """Through the text: the micro model's greedy captions (word-level tokens round-trip through text)."""
    prompt = "Describe the image in detail."
    for s in world.sample("test", 2):
        caption = micro.generate([s.image], [prompt], max_new_tokens=6)[0]
        record = {"image": s.image, "prompt": prompt, "caption": caption}
        starts = [a for a, b in micro.tokenizer(caption, add_special_tokens=False,
                                               return_offsets_mapping=True)["offset_mapping"] if b > a]
        assert starts and VLMScorer(micro, image=True).ranks(record, starts) == [0] * len(starts)


def test_invariants_on_the_micro_model(micro, world):
    _invariants(micro, [s.image for s in world.sample("test", 2)])


def test_invariants_on_tiny_llava_and_qwen2vl(vlm):
    adapter, facts = vlm
    _invariants(adapter, facts["images"])


def test_world_questions_and_noise(micro, world):
    qs = world_questions(world, 2)
    assert len(qs) == 12 and {q["label"] for q in qs} == {"yes", "no"}


# ------------------------------------------------------------------------------ the built-in base LM
def test_builtin_base_lm_trains_caches_and_ranks(world, records, tmp_path, monkeypatch):
    monkeypatch.setenv("HALLUSCOPE_CACHE", str(tmp_path))
    cfg = BaseLMConfig(steps=3, batch_size=2, warmup_steps=1, checkpoint_every=2, log_every=1)
    path = builtin_base_lm(world, cfg, progress=False)
    assert path.parent == tmp_path and (path / "model.safetensors").exists()
    assert builtin_base_lm(world, cfg, progress=False) == path  # cached
    scorer = TextLMScorer.load(path)
    ranks = scorer.ranks(records[0], [0, 4])
    assert all(isinstance(r, int) and r >= 0 for r in ranks)
    assert scorer.prefix("Describe the image in detail.").startswith("USER:")


# ------------------------------------------------------------------------------ the command
def _ok(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_diagnose_command_on_the_world(micro_folder, tmp_path):
    out = tmp_path / "diag"
    _ok("diagnose", "--model", micro_folder, "--limit", "2", "--diagnose-args", "n_train=50", "--output", out / "alone")
    _ok("report", out / "alone", "--output", tmp_path / "alone.html")  # a diagnosis folder alone
    assert 'alt="modality_gap"' in (tmp_path / "alone.html").read_text()
    # a run folder that also holds a diagnosis: the report shows both
    _ok("eval", "--model", micro_folder, "--tasks", "world-pope:random", "--n-images", "2", "--output", out)
    _ok("diagnose", "--model", micro_folder, "--limit", "3", "--diagnose-args", "n_train=50", "--output", out)
    diagnosis = json.loads((out / "diagnosis.json").read_text())
    assert list(diagnosis) == list(ANALYSES)
    assert {p.stem for p in out.glob("*.png")} == set(ANALYSES)
    assert "## Reliance on the language prior" in (out / "diagnosis.md").read_text()
    assert 'id="diagnosis"' in (out / "diagnosis.html").read_text()
    _ok("report", out, "--output", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert 'alt="modality_gap"' in page and "world-pope:random" in page


def test_diagnose_command_on_a_real_model_folder_with_stand_in_images(tmp_path):
    folder = tmp_path / "llava"
    BUILDERS["llava"](folder)  # a tiny random LLaVA saved as a model folder (SDPA: attention switches to eager)
    (tmp_path / "img").mkdir()
    ids = list(range(1, 7))
    for i in ids:
        Image.fromarray(np.full((64, 64, 3), 30 * i, np.uint8)).save(tmp_path / "img" / f"COCO_val2014_{i:012d}.jpg")
    gt = {str(i): ["dog", "cup"] if i % 2 else ["car", "bus"] for i in ids}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    questions = [{"question_id": q, "image": f"COCO_val2014_{1 + q // 2:012d}.jpg", "text": "Is there a cup in the "
                  "image?", "label": "yes" if q % 2 else "no"} for q in range(12)]
    (tmp_path / "q.json").write_text("\n".join(json.dumps(q) for q in questions))
    out = tmp_path / "diag"
    _ok("diagnose", "--model", folder, "--tasks", "pope:adversarial,chair", "--images", tmp_path / "img",
        "--data", f"pope={tmp_path / 'q.json'},chair={tmp_path / 'gt.json'}", "--limit", "20",
        "--diagnose-args", "max_new_tokens=8", "--output", out)
    diagnosis = json.loads((out / "diagnosis.json").read_text())
    assert list(diagnosis) == list(ANALYSES)
    assert diagnosis["language_prior"]["n"] == 12 and diagnosis["kinds"]["n_captions"] == 6
    assert diagnosis["attention_to_image"]["eager"]
    assert json.loads((out / "diagnosis.meta.json").read_text())["data"] == "pope:adversarial,chair"


@pytest.mark.parametrize("args, option", [
    (["--tasks", "world-chair"], "--tasks"),
    (["--images", "."], "--tasks"),
    (["--tasks", "chair", "--images", ".", "--data", "amber=x"], "--data"),
    (["--diagnose-args", "trials=0"], "--diagnose-args"),
])
def test_bad_input_is_one_line(args, option):
    result = CliRunner().invoke(app, ["diagnose", *args])
    assert result.exit_code == 2 and option in result.output, result.output
