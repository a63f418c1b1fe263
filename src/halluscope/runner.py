"""Batched, resumable, data-parallel evaluation: one JSON line per finished sample, appended as it
finishes; a rerun skips the ids already there; a results JSON records metrics, config, seed,
versions, timing and errors.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._version import __version__
from .images import load_image


def package_versions() -> dict[str, str]:
    import numpy
    import torch
    import transformers


    # The CPU's vector extension and the thread count set the speed of a CPU run: this project's
    # 2-core machine ran the same training half as fast on an AVX2-only host as on other days.
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


def run_benchmark(benchmark, adapter, output_dir: str | Path, method: str = "greedy",
                  method_args: dict[str, Any] | None = None, batch_size: int = 16, limit: int | None = None,
                  seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Run `benchmark` (see `benchmarks/`) with `adapter` and `method`; returns the results.

    Under `accelerate launch --num_processes N` each process takes every N-th unfinished sample
    and appends to its own part file; rank 0 merges the parts into `<name>.jsonl` and scores.
    A sample whose image is missing or corrupt gets an error record; the run goes on, the summary
    counts the errors, and a rerun tries those samples again.
    """
    import torch

    state = distributed_state()
    rank, world_size = (state.process_index, state.num_processes) if state else (0, 1)
    method_args = dict(method_args or {})
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = benchmark.name.replace(":", "_")
    results_path = out / f"{stem}.results.json"
    config = {"benchmark": benchmark.name, "model": adapter.name, "method": method, "method_args": method_args,
              "batch_size": batch_size, "limit": limit, "seed": seed, "num_processes": world_size}
    samples = benchmark.samples()
    if limit is not None:
        samples = samples[:limit]
    finished = {r["id"] for r in _records(out, stem) if "error" not in r}
    if state:
        state.wait_for_everyone()  # every rank has read the same state before anyone writes
    pending = [s for s in samples if s["id"] not in finished]
    todo = pending[rank::world_size]
    part = out / f"{stem}.part-{rank}.jsonl"
    _rewrite_whole_lines(part)
    torch.manual_seed(seed + rank)
    t0 = time.time()
    bar = None
    if progress and todo and rank == 0:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        label = f"{benchmark.name} [{method}]" + (f" rank 0 of {world_size}" if world_size > 1 else "")
        bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        task = bar.add_task("eval", total=len(todo))
        bar.start()
    try:
        with part.open("a") as f:
            for batch in _chunks(todo, batch_size):
                ok, errors = _load_images(batch)
                records = benchmark.predict(adapter, ok, method, method_args) if ok else []
                for record in errors + records:
                    f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
                if bar is not None:
                    bar.update(task, advance=len(batch))
    finally:
        if bar is not None:
            bar.stop()
    seconds = time.time() - t0
    if state:
        state.wait_for_everyone()
    results = None
    if rank == 0:
        records = _merge(out, stem, samples)
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
            "n_errors": len(errors),
            "errors": errors[:20],
        }
        write_json(results_path, results)
        (out / f"{stem}.done").write_text(str(len(good)))
    if state:
        state.wait_for_everyone()
        if rank != 0:
            results = json.loads(results_path.read_text())
    return results


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
