"""Evaluation throughput, measured in one run on the built-in model:

1. POPE answered by fast scoring (one forward pass, yes vs no next-token log-probability) against
   generation with the official parser, same questions, same batch size;
2. the runner with 2 processes (`accelerate launch --multi_gpu --num_processes 2`, gloo on CPU)
   against 1 process, same benchmark, through the CLI.

Runs alternate between the two arms (the machine is noisy) and the ratios of their median
throughputs are printed and written as JSON with their provenance to
studies/results/eval_throughput/<date>_<git sha>.json (or --out).

    python studies/eval_throughput.py [--model tiny] [--images 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def pope_modes(model: str, images: int, repeats: int, batch_size: int) -> dict:
    from halluscope import World, load_model
    from halluscope.runner import run_benchmark
    from halluscope.tasks.world import WorldPOPE

    adapter, world = load_model(model), World()
    rates: dict[str, list[float]] = {"score": [], "generate": []}
    for _ in range(repeats):
        for mode, rate in rates.items():
            with tempfile.TemporaryDirectory() as out:
                bench = WorldPOPE(world, "random", n_images=images, mode=mode)
                res = run_benchmark(bench, adapter, out, batch_size=batch_size, progress=False)
                rate.append(res["timing"]["samples_per_second"])
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"model_path": adapter.name, "samples_per_second": rates, "median": med,
            "score_over_generate": med["score"] / med["generate"]}


def processes(model: str, images: int, repeats: int, batch_size: int) -> dict:
    eval_args = ["eval", "--model", model, "--benchmark", "world-pope:random", "--pope-mode", "generate",
                 "--n-images", str(images), "--batch-size", str(batch_size)]
    commands = {
        "1 process": [sys.executable, "-m", "halluscope", *eval_args],
        "2 processes": ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "halluscope", *eval_args],
    }
    rates: dict[str, list[float]] = {k: [] for k in commands}
    walls: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(repeats):
        for name, cmd in commands.items():
            with tempfile.TemporaryDirectory() as out:
                t0 = time.time()
                subprocess.run([*cmd, "--output", out], check=True, capture_output=True, env=dict(os.environ))
                walls[name].append(time.time() - t0)
                res = json.loads((Path(out) / "world-pope_random.results.json").read_text())
                assert res["config"]["num_processes"] == (2 if name == "2 processes" else 1)
                rates[name].append(res["timing"]["samples_per_second"])
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"samples_per_second": rates, "wall_seconds": walls, "median": med,
            "two_over_one": med["2 processes"] / med["1 process"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--images", type=int, default=100, help="POPE images (6 questions each)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default=None,
                    help="results file (default: studies/results/eval_throughput/<date>_<git sha>.json)")
    args = ap.parse_args()
    from _provenance import model_hash, write_result

    result = {"model": args.model, "images": args.images, "batch_size": args.batch_size, "cpus": os.cpu_count(),
              "pope_modes": pope_modes(args.model, args.images, args.repeats, args.batch_size),
              "processes": processes(args.model, args.images, args.repeats, args.batch_size)}
    path = write_result("eval_throughput", result, path=args.out,
                        model_hash=model_hash(result["pope_modes"]["model_path"]))
    ratio = result["pope_modes"]["score_over_generate"]
    print(f"POPE fast scoring vs generation: {ratio:.2f}x the questions per second")
    print(f"runner, 2 processes vs 1 process: {result['processes']['two_over_one']:.2f}x the samples per second")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
