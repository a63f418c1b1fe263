"""Batched, resumable evaluation: one JSON line per finished sample, appended as it finishes; a
rerun skips the ids already there; a results JSON records metrics, config, seed, versions, timing.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def package_versions() -> dict[str, str]:
    import numpy
    import torch
    import transformers

    from . import __version__

    return {"halluscope": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__}


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


def run_benchmark(benchmark, adapter, output_dir: str | Path, method: str = "greedy",
                  method_args: dict[str, Any] | None = None, batch_size: int = 16, limit: int | None = None,
                  seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Run `benchmark` (see `benchmarks.world`) with `adapter` and `method`; returns the results."""
    import torch

    method_args = dict(method_args or {})
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = benchmark.name.replace(":", "_")
    jsonl, results_path = out / f"{stem}.jsonl", out / f"{stem}.results.json"
    config = {"benchmark": benchmark.name, "model": adapter.name, "method": method, "method_args": method_args,
              "batch_size": batch_size, "limit": limit, "seed": seed}
    samples = benchmark.samples()
    if limit is not None:
        samples = samples[:limit]
    done = read_jsonl(jsonl)
    if done:
        # Rewrite the file with whole lines only, so appends never follow a torn line.
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in done))
    finished = {r["id"] for r in done}
    todo = [s for s in samples if s["id"] not in finished]
    torch.manual_seed(seed)
    t0 = time.time()
    bar = None
    if progress and todo:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn(f"{benchmark.name} [{method}]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        task = bar.add_task("eval", total=len(samples), completed=len(samples) - len(todo))
        bar.start()
    try:
        with jsonl.open("a") as f:
            for batch in _chunks(todo, batch_size):
                for record in benchmark.predict(adapter, batch, method, method_args):
                    f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
                if bar is not None:
                    bar.update(task, advance=len(batch))
    finally:
        if bar is not None:
            bar.stop()
    seconds = time.time() - t0
    wanted = {s["id"] for s in samples}
    records = [r for r in read_jsonl(jsonl) if r["id"] in wanted]
    results = {
        "benchmark": benchmark.name,
        "metrics": benchmark.score(records),
        "config": config,
        "versions": package_versions(),
        "timing": {"seconds_this_run": round(seconds, 3), "samples_this_run": len(todo),
                   "samples_per_second": round(len(todo) / seconds, 2) if todo and seconds > 0 else None},
        "n_samples": len(records),
    }
    write_json(results_path, results)
    (out / f"{stem}.done").write_text(str(len(records)))
    return results
