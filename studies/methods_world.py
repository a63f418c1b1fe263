"""Every mitigation method against its baselines on the built-in model's test split, in one run:
POPE random / popular / adversarial (score mode: yes vs no under the method's first-step scores)
and CHAIR on detailed captions, with 95 % bootstrap confidence intervals over images, and the
difference to greedy and to sampling at temperature 1 with a paired bootstrap CI (same images).

    python studies/methods_world.py --model tiny --out runs/methods [--pope-images 300 --chair-images 500]

Each arm's per-sample JSONL and results go to OUT/<arm>/ (a rerun resumes); the table goes to
OUT/methods.md, the results with their provenance to
studies/results/methods_world/<date>_<git sha>.json. VTI arms need directions: `--directions FILE` (fitted with
`halluscope steer fit`), or they are fitted into OUT/directions.safetensors first.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ARMS = {  # name: (method, args, also run CHAIR under sampling at temperature 1)
    "greedy": ("greedy", {}, False),
    "sample": ("sample", {"temperature": 1.0, "seed": 0}, False),
    "vcd": ("vcd", {}, True),
    "icd": ("icd", {}, True),
    "m3id": ("m3id", {}, True),
    "vdgd": ("vdgd", {"description_max_new_tokens": 64}, True),
    "vti": ("vti", {}, True),
    "vti+vcd": ("vti", {"base": "vcd"}, True),
}
SAMPLING = {"sample": True, "temperature": 1.0, "seed": 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--out", default="runs/methods")
    ap.add_argument("--pope-images", type=int, default=300)
    ap.add_argument("--chair-images", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {list(ARMS)}")
    ap.add_argument("--directions", default=None, help="VTI directions file (default: fitted into OUT)")
    args = ap.parse_args()

    import _arms
    from _provenance import model_hash, write_result

    from halluscope import World, load_model
    from halluscope.runner import read_jsonl, run_benchmark
    from halluscope.tasks.world import WorldCHAIR, WorldPOPE
    from halluscope.world import POPE_SPLITS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    adapter, world = load_model(args.model), World()
    arms = args.arms.split(",")
    directions = args.directions
    if any(ARMS[a][0] == "vti" for a in arms) and directions is None:
        from halluscope.steering import FitConfig, fit_directions

        directions = out / "directions.safetensors"
        if not directions.exists():
            t0 = time.time()
            fit_directions(adapter, FitConfig(), world=world).save(directions)
            (out / "directions.fit_seconds").write_text(f"{time.time() - t0:.1f}")
    runs = []  # (arm label, benchmark name, folder)
    for arm in arms:
        method, margs, chair_sampled = ARMS[arm]
        margs = dict(margs, directions=str(directions)) if method == "vti" else margs
        for split in POPE_SPLITS:
            bench = WorldPOPE(world, split, n_images=args.pope_images)
            run_benchmark(bench, adapter, out / arm, method=method, method_args=margs, batch_size=args.batch_size)
            runs.append((arm, bench.name, out / arm))
        bench = WorldCHAIR(world, n_images=args.chair_images)
        run_benchmark(bench, adapter, out / arm, method=method, method_args=margs, batch_size=args.batch_size)
        runs.append((arm, bench.name, out / arm))
        if chair_sampled:
            if method != "vti":
                sampled = dict(margs, **SAMPLING)
            elif margs.get("base", "greedy") == "greedy":  # VTI over plain sampling
                sampled = dict(margs, base="sample", base_args={"temperature": 1.0, "seed": 0})
            else:
                sampled = dict(margs, base_args=SAMPLING)
            run_benchmark(bench, adapter, out / f"{arm}-sampled", method=method, method_args=sampled,
                          batch_size=args.batch_size)
            runs.append((f"{arm}-sampled", bench.name, out / f"{arm}-sampled"))

    def grouped(folder: Path, name: str) -> dict:
        return _arms.by_image(read_jsonl(folder / f"{name.replace(':', '_')}.jsonl"))

    table = []
    folders = {(label, name): folder for label, name, folder in runs}
    for label, name, folder in runs:
        res = json.loads((folder / f"{name.replace(':', '_')}.results.json").read_text())
        m = res["metrics"]
        key = "accuracy" if "pope" in name else "chair_i"
        row = {"arm": label, "benchmark": name, key: m[key],
               "ci95": m["ci95"][key], "seconds": res["timing"]["seconds_this_run"]}
        if "chair" in name:
            row |= {"chair_s": m["chair_s"], "recall": m["recall"]}
        for base in ("greedy", "sample"):
            if (base, name) in folders and label != base:
                row[f"vs_{base}"] = _arms.paired_diff_ci(grouped(folder, name), grouped(folders[(base, name)], name),
                                                         name)
        table.append(row)
    fit_seconds = out / "directions.fit_seconds"  # written when the directions were fitted into OUT
    fitted_here = args.directions is None and fit_seconds.exists()
    result = {"model": adapter.name, "pope_images": args.pope_images, "chair_images": args.chair_images,
              "directions": str(directions) if directions else None,
              "directions_fit_seconds": float(fit_seconds.read_text()) if fitted_here else None,
              "rows": table}
    path = write_result("methods_world", result, model_hash=model_hash(adapter.name))
    lines = ["| arm | benchmark | value % [95 % CI] | vs greedy (points) | vs sample T=1 (points) |",
             "|---|---|---|---|---|"]
    for r in table:
        key = "accuracy" if "pope" in r["benchmark"] else "chair_i"
        diff = {b: (f"{100 * r[f'vs_{b}'][0]:+.1f} [{100 * r[f'vs_{b}'][1][0]:+.1f}, {100 * r[f'vs_{b}'][1][1]:+.1f}]"
                    if f"vs_{b}" in r else "") for b in ("greedy", "sample")}
        lines.append(f"| {r['arm']} | {r['benchmark']} {key} | {100 * r[key]:.1f} [{100 * r['ci95'][0]:.1f}, "
                     f"{100 * r['ci95'][1]:.1f}] | {diff['greedy']} | {diff['sample']} |")
    (out / "methods.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
