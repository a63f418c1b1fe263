"""Paired comparisons of runs and the HTML report: the statistics on hand-made records, `report` and
`compare` on world runs and on a real-benchmark (POPE) run with stand-in images, and the page in a
real browser (headless Chromium through selenium)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from halluscope import World
from halluscope.cli import app
from halluscope.compare import compare_runs, image_counts, method_comparison, paired_difference, read_run
from halluscope.report.html import build_report, hallucinated_spans, marked
from halluscope.runner import run_benchmark
from halluscope.tasks import POPE, WorldCHAIR, WorldPOPE, WorldQA

from micro_eval import micro_adapter


def pope_records(correct: list[bool]) -> list[dict]:
    """One yes-labelled question per image, answered right where `correct` says."""
    return [{"id": i, "image_id": f"img{i}", "label": "yes", "prediction": "yes" if c else "no"}
            for i, c in enumerate(correct)]


def test_paired_difference_of_a_run_with_itself_is_exactly_zero():
    a = image_counts("world-pope:random", pope_records([True, False] * 20))
    d = paired_difference(a, a, "world-pope:random")
    assert d["value"] == 0 and d["ci"] == [0.0, 0.0] and not d["significant"] and d["better"] is None


def test_paired_difference_finds_a_better_run_and_says_which():
    rng = np.random.default_rng(0)
    good = image_counts("pope:random", pope_records(list(rng.random(200) < 0.9)))
    bad = image_counts("pope:random", pope_records(list(rng.random(200) < 0.6)))
    d = paired_difference(good, bad, "pope:random")
    assert d["significant"] and d["better"] == "a" and d["ci"][0] > 0 and d["n_images"] == 200
    # CHAIR_i counts hallucination: a higher value is the worse run
    caps = [{"id": i, "caption": "a fork and a cup", "objects": ["fork"], "breaks_bias": []} for i in range(50)]
    clean = [dict(c, caption="a fork") for c in caps]
    d = paired_difference(image_counts("world-chair", caps), image_counts("world-chair", clean), "world-chair")
    assert d["metric"] == "chair_i" and d["value"] == pytest.approx(0.5) and d["better"] == "b"


def test_paired_difference_uses_only_the_shared_images():
    a = image_counts("pope:random", pope_records([True] * 10))
    b = {k: v for k, v in image_counts("pope:random", pope_records([False] * 10)).items() if k in ("img1", "img2")}
    assert paired_difference(a, b, "pope:random")["n_images"] == 2
    with pytest.raises(ValueError, match="share no image"):
        paired_difference(a, {}, "pope:random")


def test_read_run_names_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match=f"{re.escape(str(tmp_path))}: not a run folder"):
        read_run(tmp_path)
    with pytest.raises(ValueError, match="no such folder"):
        read_run(tmp_path / "missing")


@pytest.fixture(scope="module")
def world_runs(tmp_path_factory):
    """greedy and vcd runs of the micro model on the world's POPE-adversarial and random, CHAIR and the
    relation questions."""
    root = tmp_path_factory.mktemp("runs")
    world, adapter = World(seed=0), micro_adapter(World(seed=0))
    for method in ("greedy", "vcd"):
        for task in (WorldPOPE(world, "adversarial", n_images=4), WorldPOPE(world, "random", n_images=4),
                     WorldCHAIR(world, n_images=4, max_new_tokens=8), WorldQA(world, "relation", n_images=4)):
            run_benchmark(task, adapter, root / method, method=method, batch_size=4, progress=False)
    return root


def test_compare_runs_and_the_method_comparison_agree(world_runs):
    out = compare_runs(world_runs / "vcd", world_runs / "greedy")
    assert set(out["benchmarks"]) == {"world-pope:adversarial", "world-pope:random", "world-chair",
                                      "world-qa:relation"}
    # world-qa's paired accuracy is the accuracy its own score gives
    qa = read_run(world_runs / "greedy")["world-qa:relation"].results["metrics"]
    assert "open" not in qa and out["benchmarks"]["world-qa:relation"]["accuracy"]["b"] == pytest.approx(qa["accuracy"])
    assert out["method_a"] == "vcd" and out["method_b"] == "greedy"
    comp = method_comparison({m: read_run(world_runs / m) for m in ("greedy", "vcd")})
    for bench, e in comp["vcd"].items():
        assert e["delta_vs_greedy"]["value"] == pytest.approx(out["benchmarks"][bench][e["metric"]]["value"])
        assert e["speed_ratio_vs_greedy"] is None  # no speed was measured for these runs
    assert "delta_vs_greedy" not in comp["greedy"]["world-chair"]


def test_report_of_world_runs_draws_the_images_and_marks_hallucinations(world_runs, tmp_path):
    figures = build_report([world_runs / "greedy", world_runs / "vcd"], tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    for section in ("profile", "kinds", "comparison", "benchmarks", "gallery", "false-positives"):
        assert f'id="{section}"' in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    assert page.count("data:image/png;base64,") >= 2 + 4  # two figures, the gallery's images
    assert {"forest", "cost_benefit"} <= set(figures) and figures["forest"]["rows"]


def test_marking_by_claims_spans_and_by_hallucinated_objects(world_runs):
    task = read_run(world_runs / "greedy")["world-chair"]
    record = {"id": "test-000000", "caption": "a fork and two cups", "objects": ["fork"], "breaks_bias": []}
    assert hallucinated_spans(task, record) == [(15, 19, "object")]
    claims = dict(record, claims=[{"kind": "count", "span": [11, 14], "true": False},
                                  {"kind": "object", "span": [2, 6], "true": True}])
    assert hallucinated_spans(task, claims) == [(11, 14, "count")]
    mark = '<mark class="object" title="object hallucination">cup</mark>'
    assert marked("a <b> cup", [(6, 9, "object")]) == "a &lt;b&gt; " + mark


def test_report_and_compare_on_a_real_pope_run_with_stand_in_images(tmp_path):
    questions = [{"question_id": i, "image": f"im{i // 2}.jpg", "text": "Is there a cup in the image?",
                  "label": "yes" if i % 2 else "no"} for i in range(8)]
    qfile = tmp_path / "q.json"
    qfile.write_text("\n".join(json.dumps(q) for q in questions))
    (tmp_path / "img").mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(tmp_path / "img" / f"im{i}.jpg")
    adapter = micro_adapter(World(seed=0))
    for method in ("greedy", "m3id"):
        run_benchmark(POPE("adversarial", images=str(tmp_path / "img"), questions=str(qfile)), adapter,
                      tmp_path / method, method=method, batch_size=4, progress=False)
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(tmp_path / "m3id"), str(tmp_path / "greedy")])
    assert result.exit_code == 0, result.output
    assert "pope:adversarial:" in result.output and "(4 images)" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "greedy"), str(tmp_path / "m3id"),
                                 "--output", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    assert 'id="comparison"' in page and "pope:adversarial" in page
    assert json.loads((tmp_path / "report.figures.json").read_text())["forest"]["rows"]


def _browser_script():
    script = Path(__file__).resolve().parents[1] / "docs" / "make_report_screenshot.py"
    if not script.exists():
        pytest.skip("no docs/ beside the tests")
    spec = importlib.util.spec_from_file_location("make_report_screenshot", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_renders_in_a_real_browser(world_runs, tmp_path):
    """CI (HALLUSCOPE_BROWSER_TEST=1, set by .ci/run, which installs Chromium) fails if no browser is there."""
    script = _browser_script()
    if script.chromium() is None:
        if os.environ.get("HALLUSCOPE_BROWSER_TEST") == "1":
            pytest.fail("no chromium and chromedriver on PATH: apt-get install chromium chromium-driver")
        pytest.skip("no chromium/chromedriver (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium")
    build_report([world_runs / "greedy", world_runs / "vcd"], tmp_path / "report.html")
    seen = script.browse(tmp_path / "report.html")
    assert [m for m in seen["console"] if m["level"] in ("SEVERE", "WARNING")] == []
    assert seen["image_widths"] and all(w > 0 for w in seen["image_widths"]), seen["image_widths"]
    assert {"profile", "comparison", "benchmarks", "gallery", "false-positives"} <= set(seen["sections"])
