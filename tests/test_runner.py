import json

import pytest

from halluscope import World
from halluscope.benchmarks.world import WorldCHAIR, WorldPOPE
from halluscope.models import VLMAdapter
from halluscope.models.tiny import TinyConfig, build_model, build_processor
from halluscope.runner import read_jsonl, run_benchmark


@pytest.fixture(scope="module")
def world():
    return World(seed=0)


@pytest.fixture(scope="module")
def adapter(world):
    processor = build_processor(world)
    model = build_model(processor, TinyConfig(vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=2))
    return VLMAdapter(model, processor, name="micro-random", max_new_tokens=12)


def test_results_json_and_one_line_per_sample(world, adapter, tmp_path):
    res = run_benchmark(WorldPOPE(world, "random", n_images=4), adapter, tmp_path, batch_size=5, progress=False)
    lines = read_jsonl(tmp_path / "world-pope_random.jsonl")
    assert len(lines) == 24 and sorted(r["id"] for r in lines) == list(range(1, 25))
    saved = json.loads((tmp_path / "world-pope_random.results.json").read_text())
    assert saved["metrics"]["accuracy"] == res["metrics"]["accuracy"]
    assert set(saved["config"]) >= {"model", "method", "batch_size", "seed"}
    assert set(saved["versions"]) >= {"halluscope", "torch", "transformers"}
    assert (tmp_path / "world-pope_random.done").exists()
    for k in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
        assert 0 <= res["metrics"][k] <= 1


def test_rerun_after_interruption_skips_finished_ids(world, adapter, tmp_path):
    bench = WorldCHAIR(world, n_images=6, max_new_tokens=12)
    full = run_benchmark(bench, adapter, tmp_path / "full", batch_size=4, progress=False)
    # Simulate a kill: 3 finished lines and a torn fourth one.
    part = tmp_path / "part"
    part.mkdir()
    lines = (tmp_path / "full" / "world-chair.jsonl").read_text().splitlines()
    (part / "world-chair.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    resumed = run_benchmark(bench, adapter, part, batch_size=4, progress=False)
    records = read_jsonl(part / "world-chair.jsonl")
    assert [r["id"] for r in records] == [r["id"] for r in read_jsonl(tmp_path / "full" / "world-chair.jsonl")]
    assert resumed["timing"]["samples_this_run"] == 3
    assert {k: v for k, v in resumed["metrics"].items()} == full["metrics"]


def test_greedy_scores_do_not_depend_on_batch_size(world, adapter, tmp_path):
    a = run_benchmark(WorldPOPE(world, "adversarial", n_images=4), adapter, tmp_path / "b1", batch_size=1, progress=False)
    b = run_benchmark(WorldPOPE(world, "adversarial", n_images=4), adapter, tmp_path / "b16", batch_size=16, progress=False)
    assert a["metrics"] == b["metrics"]
    c1 = run_benchmark(WorldCHAIR(world, n_images=5, max_new_tokens=12), adapter, tmp_path / "b1", batch_size=1, progress=False)
    c16 = run_benchmark(WorldCHAIR(world, n_images=5, max_new_tokens=12), adapter, tmp_path / "b16", batch_size=16, progress=False)
    caps = lambda d: [r["caption"] for r in read_jsonl(tmp_path / d / "world-chair.jsonl")]  # noqa: E731
    assert caps("b1") == caps("b16")
    assert c1["metrics"] == c16["metrics"]
