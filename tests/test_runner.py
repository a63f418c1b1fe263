import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from halluscope.tasks.world import WorldCHAIR, WorldPOPE
from halluscope.runner import ERRORS_KEPT, read_jsonl, run_benchmark
from halluscope.tasks import Request, Task, answer, generate, yes_no

from micro_eval import benchmark, micro_adapter

MICRO_EVAL = str(Path(__file__).with_name("micro_eval.py"))


@pytest.fixture(scope="module")
def adapter(world):
    return micro_adapter(world)


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


def test_resume_refuses_the_records_of_another_run(world, adapter, tmp_path):
    pope = WorldPOPE(world, "random", n_images=2)
    run_benchmark(pope, adapter, tmp_path, batch_size=4, progress=False)
    again = run_benchmark(pope, adapter, tmp_path, batch_size=2, progress=False)  # another batch size resumes
    assert again["timing"]["samples_this_run"] == 0
    # more images resume too (the demo's greedy run after its method comparison): the first two's are kept
    more = run_benchmark(WorldPOPE(world, "random", n_images=3), adapter, tmp_path, progress=False)
    assert more["timing"]["samples_this_run"] == 6 and more["n_samples"] == 18
    with pytest.raises(ValueError, match=r"pope_random\.jsonl holds the records of another run \(seed was 0, now 1"):
        run_benchmark(pope, adapter, tmp_path, seed=1, progress=False)
    # A folder written before the config file was: the results name the run.
    (tmp_path / "world-pope_random.config.json").unlink()
    with pytest.raises(ValueError, match="seed was 0, now 2"):
        run_benchmark(pope, adapter, tmp_path, seed=2, progress=False)
    assert len(read_jsonl(tmp_path / "world-pope_random.jsonl")) == 18  # nothing was appended or rewritten


def test_resume_refuses_a_model_retrained_under_the_same_name(world, adapter, tmp_path):
    import torch

    pope = WorldPOPE(world, "random", n_images=2)
    run_benchmark(pope, adapter, tmp_path, progress=False)
    last = list(adapter.model.parameters())[-1]
    before, saved = adapter.fingerprint(), last.detach().clone()
    with torch.no_grad():
        last.add_(1e-3)  # as a retrained model in the same folder: the name stays, the weights do not
    try:
        assert adapter.fingerprint() != before
        with pytest.raises(ValueError, match="another run \\(weights was"):
            run_benchmark(pope, adapter, tmp_path, progress=False)
    finally:
        with torch.no_grad():
            last.copy_(saved)
    assert adapter.fingerprint() == before
    assert run_benchmark(pope, adapter, tmp_path, progress=False)["timing"]["samples_this_run"] == 0


def test_greedy_scores_do_not_depend_on_batch_size(world, adapter, tmp_path):
    pope = WorldPOPE(world, "adversarial", n_images=4)
    a = run_benchmark(pope, adapter, tmp_path / "b1", batch_size=1, progress=False)
    b = run_benchmark(pope, adapter, tmp_path / "b16", batch_size=16, progress=False)
    assert a["metrics"] == b["metrics"]
    chair = WorldCHAIR(world, n_images=5, max_new_tokens=12)
    c1 = run_benchmark(chair, adapter, tmp_path / "b1", batch_size=1, progress=False)
    c16 = run_benchmark(chair, adapter, tmp_path / "b16", batch_size=16, progress=False)
    caps = lambda d: [r["caption"] for r in read_jsonl(tmp_path / d / "world-chair.jsonl")]  # noqa: E731
    assert caps("b1") == caps("b16")
    assert c1["metrics"] == c16["metrics"]


def test_sigkill_midway_then_rerun_equals_uninterrupted(world, adapter, tmp_path):
    full = run_benchmark(benchmark(world, "chair", 40), adapter, tmp_path / "full", batch_size=2, progress=False)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, MICRO_EVAL, str(killed), "chair", "40"])
    part = killed / "world-chair.part-0.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not part.exists() or len(part.read_text().splitlines()) < 10):
        assert proc.poll() is None, "the run finished before it could be killed; make it longer"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "world-chair.done").exists()
    n_before = len(read_jsonl(part))
    assert 10 <= n_before < 40
    resumed = run_benchmark(benchmark(world, "chair", 40), adapter, killed, batch_size=2, progress=False)
    assert resumed["timing"]["samples_this_run"] == 40 - n_before
    records = read_jsonl(killed / "world-chair.jsonl")
    assert [r["id"] for r in records] == [r["id"] for r in read_jsonl(tmp_path / "full" / "world-chair.jsonl")]
    assert records == read_jsonl(tmp_path / "full" / "world-chair.jsonl")
    assert resumed["metrics"] == full["metrics"]


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate's launcher is not installed")
def test_two_processes_give_the_one_process_results(world, adapter, tmp_path):
    one = run_benchmark(benchmark(world, "pope", 6), adapter, tmp_path / "one", batch_size=2, progress=False)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # Without GPUs, accelerate spawns processes only on its multi-process path (then gloo on CPU).
    subprocess.run(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no", MICRO_EVAL, str(tmp_path / "two"), "pope",
                    "6"],
                   check=True, env=env, timeout=300)
    two = json.loads((tmp_path / "two" / "world-pope_random.results.json").read_text())
    assert two["config"]["num_processes"] == 2
    assert two["metrics"] == json.loads(json.dumps(one["metrics"]))
    records = "world-pope_random.jsonl"
    assert read_jsonl(tmp_path / "two" / records) == read_jsonl(tmp_path / "one" / records)
    assert not list((tmp_path / "two").glob("*.part-*"))


def test_missing_and_corrupt_images_are_errors_and_the_run_goes_on(world, adapter, tmp_path):
    class FromFiles(WorldCHAIR):
        def samples(self):
            out = []
            for s in super().samples():
                path = tmp_path / "images" / f"{s['id']}.png"
                path.parent.mkdir(exist_ok=True)
                s["image"].save(path)
                out.append(dict(s, image=str(path)))
            return out

    bench = FromFiles(world, n_images=5, max_new_tokens=8)
    samples = bench.samples()
    bench.samples = lambda: samples
    Path(samples[1]["image"]).unlink()
    Path(samples[3]["image"]).write_bytes(b"not a png")
    res = run_benchmark(bench, adapter, tmp_path / "out", batch_size=2, progress=False)
    assert res["n_errors"] == 2 and res["n_samples"] == 3
    errors = {e["id"]: e["error"] for e in res["errors"]}
    assert "does not exist" in errors[samples[1]["id"]] and "could not be decoded" in errors[samples[3]["id"]]
    # Fixed images are retried on the next run; finished samples are not.
    world.render(world.scene("test", 1)).save(samples[1]["image"])
    world.render(world.scene("test", 3)).save(samples[3]["image"])
    again = run_benchmark(bench, adapter, tmp_path / "out", batch_size=2, progress=False)
    assert again["timing"]["samples_this_run"] == 2 and again["n_errors"] == 0 and again["n_samples"] == 5
    assert len(read_jsonl(tmp_path / "out" / "world-chair.jsonl")) == 5


class Mixed:
    """The smallest task: half yes/no questions, half captions, scored by counting."""

    name = "mixed"

    def __init__(self, world, n: int):
        self.items = [{"id": i, "image": s.image} for i, s in enumerate(world.sample("test", n))]

    def samples(self):
        return self.items

    def request(self, sample) -> Request:
        return yes_no("Is there a fork?") if sample["id"] % 2 else generate("Describe the image in detail.", 5)

    def record(self, sample, answer):
        return {"id": sample["id"], **answer}

    def score(self, records):
        return {"n": len(records), "yes": sum(r.get("prediction") == "yes" for r in records)}


def test_a_task_needs_only_the_protocol(world, adapter, tmp_path):
    task = Mixed(world, 4)
    assert isinstance(task, Task)
    records = answer(task, adapter, task.samples())
    assert [sorted(r) for r in records] == [["id", "text"], ["id", "logprob_yes_no", "prediction"]] * 2
    # One call per kind: the same answers as asking each kind on its own.
    captions = adapter.generate([s["image"] for s in task.items[::2]], ["Describe the image in detail."] * 2,
                                max_new_tokens=5)
    assert [r["text"] for r in records[::2]] == captions
    res = run_benchmark(task, adapter, tmp_path, batch_size=3, progress=False)
    assert res["metrics"]["n"] == 4 and res["n_samples_original"] == 4


def test_only_the_first_errors_are_kept_in_the_results(world, adapter, tmp_path):
    task = Mixed(world, ERRORS_KEPT + 5)
    for s in task.items:
        s["image"] = str(tmp_path / f"missing-{s['id']}.png")
    res = run_benchmark(task, adapter, tmp_path / "out", batch_size=8, progress=False)
    assert res["n_errors"] == ERRORS_KEPT + 5 and len(res["errors"]) == ERRORS_KEPT
    assert res["metrics"] == {"n": 0, "yes": 0}
    assert len(read_jsonl(tmp_path / "out" / "mixed.jsonl")) == ERRORS_KEPT + 5
