"""The published benchmarks (POPE, CHAIR, AMBER, MME) end to end through the runner and the CLI:
the real question and ground-truth files from tests/data and the package, stand-in images written
here under the names the benchmarks expect, the micro random model. The metrics themselves are
checked against the official figures in test_metrics_parity.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from halluscope import World
from halluscope.runner import read_jsonl, run_benchmark
from halluscope.tasks import make_benchmark
from halluscope.tasks.real import POPE_FILES

from micro_eval import micro_adapter

DATA = Path(__file__).with_name("data")


@pytest.fixture(scope="module")
def adapter():
    return micro_adapter(World(seed=0))


def write_images(folder: Path, names) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(folder / name)
    return folder


def run(bench, adapter, out, limit):
    return run_benchmark(bench, adapter, out, batch_size=4, limit=limit, progress=False)


@pytest.mark.parametrize("mode", ["score", "generate"])
def test_pope_on_packaged_questions(adapter, tmp_path, mode):
    bench = make_benchmark("pope:adversarial", images=str(tmp_path / "img"), pope_mode=mode)
    with pytest.raises(FileNotFoundError, match="--images"):
        bench.samples()
    write_images(tmp_path / "img", {json.loads(line)["image"] for line in
                                    POPE_FILES["adversarial"].read_text().splitlines()[:12]})
    res = run(bench, adapter, tmp_path / "out", 12)
    records = read_jsonl(tmp_path / "out" / "pope_adversarial.jsonl")
    assert [r["question_id"] for r in records] == list(range(1, 13))
    assert res["n_errors"] == 0 and res["metrics"]["n"] == 12 and res["metrics"]["parser"] == "official"
    assert {r["label"] for r in records} == {"yes", "no"}
    assert ("raw" in records[0]) == (mode == "generate")


def test_pope_missing_images_are_errors(adapter, tmp_path):
    (tmp_path / "img").mkdir()
    res = run(make_benchmark("pope:random", images=str(tmp_path / "img")), adapter, tmp_path / "out", 6)
    assert res["n_errors"] == 6 and res["n_samples"] == 0
    assert "does not exist" in res["errors"][0]["error"]


@pytest.mark.parametrize("parity", [True, False])
def test_chair_on_coco_ground_truth(adapter, tmp_path, parity, request):
    if parity:
        request.getfixturevalue("nltk_data")
    gt = json.loads((DATA / "chair" / "gt_objects_pattern.json").read_text())
    some = dict(sorted(gt.items())[:3])
    (tmp_path / "gt.json").write_text(json.dumps(some))
    write_images(tmp_path / "img", [f"COCO_val2014_{int(i):012d}.jpg" for i in some])
    bench = make_benchmark("chair", images=str(tmp_path / "img"), data=str(tmp_path / "gt.json"))
    bench.max_new_tokens, bench.parity = 16, parity
    res = run(bench, adapter, tmp_path / "out", None)
    assert res["n_samples"] == 3 and res["n_errors"] == 0
    assert {"chair_s", "chair_i", "recall"} <= set(res["metrics"])
    assert res["metrics"]["backend"] == ("nltk" if parity else "builtin")


def test_amber_generative_and_discriminative(adapter, tmp_path, nltk_data):
    # these six entries of AMBER's query_all.json (see tests/data/README.md)
    picked = json.loads((DATA / "amber" / "query_all_subset.json").read_text())
    ids = [1, 2, 1005, 1006, 1007, 1008]
    assert [q["id"] for q in picked] == ids
    data = tmp_path / "amber"
    data.mkdir()
    (data / "query_all.json").write_text(json.dumps(picked))
    (data / "annotations.json").symlink_to(DATA / "amber" / "annotations.json")
    write_images(tmp_path / "img", {q["image"] for q in picked})
    bench = make_benchmark("amber", images=str(tmp_path / "img"), data=str(data))
    bench.max_new_tokens = 16
    res = run(bench, adapter, tmp_path / "out", None)
    responses = {r["id"]: r["response"] for r in read_jsonl(tmp_path / "out" / "amber_all.jsonl")}
    assert set(responses) == set(ids)
    assert all(responses[i] in ("Yes", "No") for i in ids if i > 1004)
    assert {"chair", "cover", "hal", "cog", "f1", "amber_score"} <= set(res["metrics"])


def test_mme_existence(adapter, tmp_path):
    lines = (DATA / "mme" / "existence.txt").read_text().splitlines()[:6]
    write_images(tmp_path / "img", {line.split("\t")[0] for line in lines})
    (tmp_path / "q.txt").write_text("\n".join(lines))
    res = run(make_benchmark("mme:existence", images=str(tmp_path / "img"), data=str(tmp_path / "q.txt")),
              adapter, tmp_path / "out", None)
    assert res["n_samples"] == 6
    assert 0 <= res["metrics"]["score"] <= 200 and set(res["metrics"]) >= {"acc", "acc_plus", "score"}


def test_cli_names_the_missing_images_option(tmp_path):
    from halluscope.cli import app

    result = CliRunner().invoke(app, ["eval", "--benchmark", "pope:random", "--output", str(tmp_path)])
    assert result.exit_code != 0 and "--images" in result.output
    result = CliRunner().invoke(app, ["eval", "--benchmark", "mme:weather", "--images", str(tmp_path), "--data", "x"])
    assert result.exit_code != 0 and "mme" in result.output.lower()
