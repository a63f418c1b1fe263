"""Batched, resumable, data-parallel evaluation: one JSON line per finished sample, appended as it
finishes; a rerun skips the ids already there; a results JSON records metrics, config, seed,
versions, timing and errors.

    run_benchmark(make_task("world-pope:adversarial"), adapter, "runs/m")   # one task into runs/m
    run_tasks([make_task("pope_adv"), make_task("chair", ...)], adapter, "runs/m")  # runs/m/<task>/ each,
                                                                            # and runs/m/results.json
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._version import __version__
from .images import load_image
from .progress import progress as progress_bar
from .tasks import Task, answer

# Error records kept in a results JSON (all of them stay in the JSONL file); n_errors counts them all.
ERRORS_KEPT = 20


def package_versions() -> dict[str, str]:
    import numpy
    import torch
    import transformers

    # The CPU's vector extension and the thread count set the speed of a CPU run, so a timing
    # is comparable only with the same two.
    return {"halluscope": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads()}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Finished records; a last line cut short by a kill is dropped (and rewritten on resume)."""
    if not path.exists():
        return []
    out = []
    with path.open() as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _load_images(batch: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(samples whose image loaded, error records for those whose image is missing or corrupt)."""

    ok, errors = [], []
    for s in batch:
        try:
            if isinstance(s.get("image"), str | os.PathLike):  # kept, so a report can show the image
                ok.append(dict(s, image=load_image(s["image"]), image_path=str(s["image"])))
            else:
                ok.append(dict(s, image=load_image(s["image"])) if "image" in s else s)
        except (OSError, ValueError) as e:
            errors.append({"id": s["id"], "error": str(e)})
    return ok, errors


def distributed_state():
    """accelerate's process state when launched with several processes, else None.

    On a machine without GPUs, `accelerate launch --multi_gpu --num_processes N` (or torchrun)
    starts the processes and they talk over gloo."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def task_args(task: Task) -> dict[str, Any]:
    """What rebuilds a task's samples (and its images) later, for a report or a comparison: a
    dataclass task's plain fields; a world as its seed and knobs."""
    import dataclasses

    if not dataclasses.is_dataclass(task):
        return {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(task):
        value = getattr(task, f.name)
        if f.name == "world":
            out["world"] = {"seed": value.seed, "knobs": value.config.to_dict()}
        elif value is None or isinstance(value, str | int | float | bool):
            out[f.name] = value
    return out


def stem(task: Task) -> str:
    """The file-name stem of a task's outputs: 'world-pope:random' -> 'world-pope_random'."""
    return task.name.replace(":", "_")


def run_benchmark(benchmark: Task, adapter, output_dir: str | Path, method: str = "greedy",
                  method_args: dict[str, Any] | None = None, batch_size: int = 16, limit: int | None = None,
                  seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Run task `benchmark` (see `halluscope.tasks`) with `adapter` and `method`; returns the results,
    also written to `<name>.results.json` beside the per-sample `<name>.jsonl` in `output_dir`.

    Under `accelerate launch --num_processes N` each process takes every N-th unfinished sample
    and appends to its own part file; rank 0 merges the parts into `<name>.jsonl` and scores.
    A sample whose image is missing or corrupt gets an error record; the run goes on, the summary
    counts the errors, and a rerun tries those samples again. A rerun resumes only its own records: a folder
    whose `<name>.config.json` (or results) names another model (or the same folder with other weights), method,
    method arguments, seed, task or load arguments raises `OtherRunError`.
    """
    import torch

    state = distributed_state()
    rank, world_size = (state.process_index, state.num_processes) if state else (0, 1)
    method_args = dict(method_args or {})
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = stem(benchmark)
    results_path = out / f"{name}.results.json"
    fingerprint = getattr(adapter, "fingerprint", None)
    config = {"benchmark": benchmark.name, "model": adapter.name, "weights": fingerprint() if fingerprint else None,
              "method": method, "method_args": method_args,
              "batch_size": batch_size, "limit": limit, "seed": seed, "num_processes": world_size,
              "task_args": task_args(benchmark),
              # how `load_model` loaded it (dtype, device, device_map, trust_remote_code, ...), where it did
              "load_args": dict(getattr(adapter, "load_args", None) or {})}
    samples = benchmark.samples()
    n_original = len(samples)
    if limit is not None:
        samples = samples[:limit]
    records = _records(out, name)
    if records:
        _check_same_run(out, name, config)
    finished = {r["id"] for r in records if "error" not in r}
    if state:
        state.wait_for_everyone()  # every rank has read the same state before anyone writes
    if rank == 0:
        write_json(out / f"{name}.config.json", config)
    pending = [s for s in samples if s["id"] not in finished]
    part = out / f"{name}.part-{rank}.jsonl"
    _rewrite_whole_lines(part)
    torch.manual_seed(seed + rank)
    label = f"{benchmark.name} [{method}]" + (f" rank 0 of {world_size}" if world_size > 1 else "")
    t0 = time.time()
    _append(benchmark, adapter, pending[rank::world_size], part, batch_size, method, method_args,
            label if progress and rank == 0 else None)
    seconds = time.time() - t0
    if state:
        state.wait_for_everyone()
    results = None
    if rank == 0:
        records = _merge(out, name, samples)
        good = [r for r in records if "error" not in r]
        errors = [r for r in records if "error" in r]
        results = {
            "benchmark": benchmark.name,
            "metrics": benchmark.score(good),
            "config": config,
            "versions": package_versions(),
            "timing": {"seconds_this_run": round(seconds, 3), "samples_this_run": len(pending),
                       "samples_per_second": round(len(pending) / seconds, 2) if pending and seconds > 0 else None},
            "n_samples": len(good),
            "n_samples_original": n_original,
            "n_errors": len(errors),
            "errors": errors[:ERRORS_KEPT],
        }
        write_json(results_path, results)
        (out / f"{name}.done").write_text(str(len(good)))
    if state:
        state.wait_for_everyone()
        if rank != 0:
            results = json.loads(results_path.read_text())
    return results


def append_in_batches(path: Path, todo: list, batch_size: int, label: str | None,
                      answer_batch: Callable[[list], list[dict[str, Any]]]) -> None:
    """`answer_batch` on `todo` batch by batch, appending the records it returns to the JSON lines of
    `path` and syncing them to disk before the next batch, so a kill loses at most the batch in flight.
    `label`: show a progress bar."""
    bar = progress_bar() if label and todo else None
    if bar is not None:
        bar_task = bar.add_task(label, total=len(todo))
        bar.start()
    try:
        with path.open("a") as f:
            for batch in _chunks(todo, batch_size):
                for record in answer_batch(batch):
                    f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
                if bar is not None:
                    bar.update(bar_task, advance=len(batch))
    finally:
        if bar is not None:
            bar.stop()


def _append(task: Task, adapter, todo: list[dict[str, Any]], part: Path, batch_size: int, method: str,
            method_args: dict[str, Any], label: str | None) -> None:
    """Answer `todo` into `part`, batch by batch (`append_in_batches`); image loading errors become
    records of their own."""
    def answer_batch(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ok, errors = _load_images(batch)
        records = answer(task, adapter, ok, method, method_args) if ok else []
        for s, r in zip(ok, records):
            if "image_path" in s:
                r.setdefault("image", s["image_path"])
        return errors + records

    append_in_batches(part, todo, batch_size, label, answer_batch)


def run_tasks(tasks: list[Task], adapter, output_dir: str | Path, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """`run_benchmark` for each task, into `output_dir/<task>/` (e.g. `runs/m/pope_adversarial/`), then
    `output_dir/results.json` over all of them in lmms-eval's layout (`results`, `configs`, `versions`,
    `n-samples`), which its dashboards and loggers read. Returns {task name: results}."""
    out = Path(output_dir)
    results = {t.name: run_benchmark(t, adapter, out / stem(t), **kwargs) for t in tasks}
    state = distributed_state()
    if state is None or state.is_main_process:
        write_json(out / "results.json", lmms_eval_summary(results))
    return results


def lmms_eval_summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{task: run_benchmark's results} in lmms-eval's results layout: per task its scalar metrics as
    "metric,none" (lmms-eval's metric,filter keys; no filter here), its config, version and sample counts;
    then the run's config and halluscope's package versions."""
    first = next(iter(results.values()), {"config": {}, "versions": {}})
    run = {k: first["config"].get(k) for k in ("model", "method", "method_args", "batch_size", "limit", "seed")}
    return {
        "results": {name: {"alias": name, **{f"{k},none": v for k, v in r["metrics"].items()
                                             if isinstance(v, int | float | str) and not isinstance(v, bool)}}
                    for name, r in results.items()},
        "configs": {name: r["config"] for name, r in results.items()},
        "versions": {name: __version__ for name in results},
        "n-samples": {name: {"original": r.get("n_samples_original", r["n_samples"]), "effective": r["n_samples"]}
                      for name, r in results.items()},
        "config": {**run, "model_args": f"pretrained={run['model']}", "gen_kwargs": run["method_args"]},
        "package_versions": first["versions"],
        "date": time.time(),
    }


class OtherRunError(ValueError):
    """An output folder holds the records of another run; the command line shows it as a one-line error."""


# What makes two runs' records interchangeable. Batch size, process count, limit and a task's n_images may change
# on resume: a task draws its images in order, so a smaller run's samples are the first of a larger one's (the demo
# compares methods on 100 images, then greedy on 500 into the same folder).
# `weights` tells a model retrained into the same folder (the built-in model's cache) from the one before.
RUN_IDENTITY = ("benchmark", "model", "weights", "method", "method_args", "seed", "task_args", "load_args")


def _check_same_run(out: Path, stem: str, config: dict[str, Any]) -> None:
    """Refuse to resume records that another run wrote (another model, method, seed or task): they would be
    scored as this run's. The earlier run's config is in `<stem>.config.json`, or, from before that file was
    written, in its results."""
    saved = out / f"{stem}.config.json"
    if not saved.exists():
        saved = out / f"{stem}.results.json"
        if not saved.exists():
            return
    saved_config = json.loads(saved.read_text())
    if saved.name.endswith(".results.json"):
        saved_config = saved_config.get("config", saved_config)
    before, now = _identity(saved_config), _identity(config)
    for key in before:
        if before[key] != now[key]:
            raise OtherRunError(f"{out / (stem + '.jsonl')} holds the records of another run ({key} was "
                                f"{_short(before[key])}, now {_short(now[key])}): pass another output folder, or "
                                f"delete this one to start over")


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """The `RUN_IDENTITY` fields `config` has, as JSON reads them back, without the task's n_images."""
    from .training.loop import jsonable

    out = {k: v for k, v in jsonable(config).items() if k in RUN_IDENTITY}
    if isinstance(out.get("task_args"), dict):
        out["task_args"] = {k: v for k, v in out["task_args"].items() if k != "n_images"}
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _records(out: Path, stem: str) -> list[dict[str, Any]]:
    """Every record written so far: the merged file, then any part files of an interrupted run."""
    records = read_jsonl(out / f"{stem}.jsonl")
    for part in sorted(out.glob(f"{stem}.part-*.jsonl")):
        records += read_jsonl(part)
    return records


def _rewrite_whole_lines(path: Path) -> None:
    """Drop a line torn by a kill, so appends never follow it."""
    if path.exists():
        path.write_text("".join(json.dumps(r) + "\n" for r in read_jsonl(path)))


def _merge(out: Path, stem: str, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per sample, in benchmark order (a later record of an id replaces an earlier
    one: a retried error), written to `<stem>.jsonl`; the part files are removed."""
    by_id: dict[Any, dict[str, Any]] = {}
    for r in _records(out, stem):
        if r["id"] not in by_id or "error" in by_id[r["id"]]:
            by_id[r["id"]] = r
    order = [s["id"] for s in samples]
    wanted = set(order)
    merged = [by_id[i] for i in order if i in by_id]
    merged += [r for i, r in by_id.items() if i not in wanted]  # from a larger earlier run: kept, not scored
    jsonl = out / f"{stem}.jsonl"
    tmp = jsonl.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in merged))
    os.replace(tmp, jsonl)
    for part in out.glob(f"{stem}.part-*.jsonl"):
        part.unlink()
    return [r for r in merged if r["id"] in wanted]
