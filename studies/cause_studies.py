"""The lab's cause studies (docs/studies/causes.md): each cause at its levels, trained on several seeds with the
study recipe, through `halluscope.causes.run_study` (the same as `halluscope study CAUSE`), with the results
copied to studies/results/causes/<cause>.json with their provenance (command, commit, versions, CPU, the hash of
every arm's model).

    python studies/cause_studies.py --causes cooccurrence,yes-bias [--seeds 0,1,2 --out runs/causes]

Arms already finished in OUT/<cause>/ are read, not redone, so the command resumes a study that stopped.
`--workers N` trains N arms side by side, each process on cores/N torch threads, taking arms from one list in the
order given (on 2 cores, two one-thread workers train about 1.3x the arms an hour of one two-thread process; each
arm takes longer, so arm costs are measured with one worker).
`--check` instead evaluates the study recipe (each seed) and the built-in model with the demo's profile checks,
to show that the smaller recipe hallucinates the same way (studies/results/causes/study_recipe_checks.json).
`--page` writes the results part of docs/studies/causes.md (between its markers) and one figure per cause into
docs/studies/causes/, from the results files alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--causes", default=None, help="comma-separated causes (default: all)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/causes")
    ap.add_argument("--check", action="store_true", help="profile checks of the study recipe against the default")
    ap.add_argument("--page", action="store_true", help="write the results part of docs/studies/causes.md")
    ap.add_argument("--finished-only", action="store_true",
                    help="train nothing: summarize the finished arms and list the missing ones")
    ap.add_argument("--workers", type=int, default=1, help="arms trained side by side (each on cores/N threads)")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.page:
        return page()

    from _provenance import model_hash, write_result

    from halluscope.causes import CAUSES, StudyConfig, run_study

    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    if args.check:
        return check(seeds, out)
    names = args.causes.split(",") if args.causes else list(CAUSES)
    if args.worker is not None:
        return work(names, seeds, out, args.workers)
    extra = {"workers": args.workers}
    if args.workers > 1 and not args.finished_only:
        t0 = time.time()
        shutil.rmtree(out / ".claims", ignore_errors=True)  # claims of a run that stopped: their arms redo
        procs = [subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--worker", str(i)])
                 for i in range(args.workers)]
        if any([p.wait() for p in procs]):
            sys.exit("a worker failed (its error is above); run the same command again to resume")
        extra["wall_seconds_workers"] = round(time.time() - t0)
    for name in names:
        t0 = time.time()
        result = run_study(name, None, seeds, out / name, StudyConfig(), train=not args.finished_only)
        hashes = {f"{a['level']}/s{a['seed']}": model_hash(a["model"]) for a in result["arms"]}
        path = write_result("causes", result | extra | {"wall_seconds_this_run": round(time.time() - t0)},
                            path=Path(__file__).parent / "results" / "causes" / f"{name}.json", model_hash=hashes)
        print(f"{name}: wrote {path}", flush=True)


def work(names: list[str], seeds: list[int], out: Path, workers: int) -> None:
    """One of `workers` processes: every arm of `names` that no other worker has claimed (an O_EXCL file)."""
    import torch

    from halluscope.causes import CAUSES, StudyConfig, run_arm

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    (out / ".claims").mkdir(parents=True, exist_ok=True)
    for name in names:
        for level in CAUSES[name].levels:
            for seed in seeds:
                try:
                    os.close(os.open(out / ".claims" / f"{name}-{level}-s{seed}", os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    continue
                t0 = time.time()
                run_arm(name, level, seed, out / name, StudyConfig(), progress=False)
                print(f"{name} {level} s{seed}: {time.time() - t0:.0f} s", flush=True)


def check(seeds: list[int], out: Path) -> None:
    """The demo's profile checks (POPE random and adversarial, co-occurrence false positives, CHAIR on
    bias-breaking images) of the study recipe on each seed and of the built-in model, at the study's sizes."""
    import _arms
    from _provenance import model_hash, write_result

    from halluscope import World, load_model
    from halluscope.causes import StudyConfig, study_recipe
    from halluscope.zoo.tiny import tiny_model_path, train_tiny

    cfg = StudyConfig()
    rows = []
    models = {"built-in model": str(tiny_model_path())}
    for seed in seeds:
        world, tiny, train = study_recipe(cfg, seed)
        models[f"study recipe s{seed}"] = str(train_tiny(world, train, tiny))
    for name, folder in models.items():
        checks, chair = _arms.profile_checks(load_model(folder), World(), out / "check" / Path(folder).name,
                                             cfg.pope_images, cfg.chair_images)
        rows.append({"model": name, "folder": folder, "checks": checks, "chair_i": chair["chair_i"]})
        print(name, [("met" if c["holds"] else "missed") + ": " + c["value"] for c in checks], flush=True)
    path = write_result("causes", {"config": cfg.to_dict(), "rows": rows},
                        path=Path(__file__).parent / "results" / "causes" / "study_recipe_checks.json",
                        model_hash={r["model"]: model_hash(r["folder"]) for r in rows})
    print(f"wrote {path}")


RESULTS = Path(__file__).parent / "results" / "causes"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "studies"
START, END = "<!-- results:start (python studies/cause_studies.py --page) -->", "<!-- results:end -->"


def _cell(e: dict) -> str:
    """A level's mean with its interval, clipped to [0, 100] % (a t-interval over 3 seeds can reach past them)."""
    if e["mean"] is None:
        return "-"
    ci = e.get("ci95")
    lo, hi = (None, None) if ci is None else (max(0.0, ci[0]), min(1.0, ci[1]))
    return f"{100 * e['mean']:.1f}" + ("" if ci is None else f" [{100 * lo:.1f}, {100 * hi:.1f}]")


def _effect(e: dict) -> str:
    if e["mean"] is None:
        return "-"
    ci = e.get("ci95")
    return f"{100 * e['mean']:+.1f}" + ("" if ci is None else f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]")


def page() -> None:
    """The results section of docs/studies/causes.md: a verdict table over every studied cause, then per cause its
    overview figure and its table of level means; causes without a results file are listed as not run."""
    import json

    from halluscope.causes import CAUSES
    from halluscope.causes.plots import plot_overview
    from halluscope.matplot import png

    (DOCS / "causes").mkdir(parents=True, exist_ok=True)
    verdicts = ["| cause | metric | literature | effect, first to last level, points [95 % CI] | lab |",
                "|---|---|---|---|---|"]
    sections, missing = [], []
    for name in CAUSES:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            missing.append(name)
            continue
        r = json.loads(path.read_text())
        s, levels = r["summary"], r["levels"]
        claimed = [m for m in r["metric_names"] if s["effects"][m]["expected_sign"] is not None]
        for m in claimed:
            e = s["effects"][m]
            arrow = "rises" if e["expected_sign"] > 0 else "falls"
            verdicts.append(f"| {name} ({levels[0]} -> {levels[-1]}) | {r['metric_names'][m]} | {arrow} | "
                            f"{_effect(e)} | {e['verdict']} |")
        (DOCS / "causes" / f"{name}.png").write_bytes(png(plot_overview(r, claimed), dpi=80))
        secs = [a["seconds"]["this_run_training"] + a["seconds"]["this_run_evaluation"] for a in r["arms"]]
        trained = [a["seconds"]["this_run_training"] for a in r["arms"] if a["seconds"]["this_run_training"] > 1]
        link = f"[`{path.name}`](../../studies/results/causes/{path.name})"
        lines = [f"### {name}", "", f"Varies {r['sets']}; levels {', '.join(levels)}; seeds "
                 f"{', '.join(map(str, r['seeds']))}. Results: {link}.",
                 "", f"![{name}](causes/{name}.png)", "",
                 "| metric, % (mean over seeds [95 % t-interval, within 0-100]) | " + " | ".join(levels)
                 + " | literature | lab |",
                 "|---|" + "---|" * (len(levels) + 2)]
        for m, title in r["metric_names"].items():
            e = s["effects"][m]
            if all(s["levels"][lv][m]["mean"] is None for lv in levels):
                continue
            lit = {1: "rises", -1: "falls", None: ""}[e["expected_sign"]]
            lines.append(f"| {title} | " + " | ".join(_cell(s["levels"][lv][m]) for lv in levels)
                         + f" | {lit} | {e['verdict']} |")
        cost = (f"Arm wall time in the run that made it (2 CPU cores, {r['provenance']['cpu'].get('model', 'CPU')}"
                + (f", {r['workers']} arms side by side on one thread each: not the arm cost, see Method"
                   if r.get("workers", 1) > 1 else "")
                + f"): median {sorted(secs)[len(secs) // 2]:.0f} s, max {max(secs):.0f} s")
        cost += (f"; training where it ran: {min(trained):.0f}-{max(trained):.0f} s." if trained else
                 " (every model was cached: decoding levels, or a rerun).")
        if r.get("missing_arms"):
            cost += f" Not run yet: {', '.join(r['missing_arms'])} (level/seed); the means above leave them out."
        sections.append("\n".join(lines + ["", cost, ""]))
    text = ["## Results", "", "Every claim the literature makes that the lab tested, from the first to the last level "
            "(the effect is paired by seed; 'agrees' or 'disagrees' when its interval excludes 0):", "",
            *verdicts, "", *sections]
    if missing:
        text.append("Not run yet: " + ", ".join(missing) + " (`python studies/cause_studies.py --causes "
                    + ",".join(missing) + "`).")
    page_path = DOCS / "causes.md"
    old = page_path.read_text()
    head, _, rest = old.partition(START)
    _, _, tail = rest.partition(END)
    page_path.write_text(head + START + "\n" + "\n".join(text) + "\n" + END + tail)
    print(f"wrote {page_path}")


if __name__ == "__main__":
    main()
