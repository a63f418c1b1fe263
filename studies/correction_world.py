"""Post-hoc correction on the world: the built-in model's captions of test images, corrected by the
Woodpecker-style pipeline with the model's own answers (self-check), by LogicCheck's loops, and with the
truth's answers (the oracle: the ceiling of the same pipeline); every stage scored against exact truth.

    python studies/correction_world.py --model tiny --out runs/correction [--n-images 300]

The captions come from `halluscope eval --tasks world-chair` (greedy unless --method), into OUT/ (resumable);
each correction from `halluscope correct`'s code, into OUT/world-chair/. Cost: generating and correcting
the same --cost-images captions, timed back to back in this process (a ratio, so the host's speed cancels).
The results with their provenance go to studies/results/correction_world/<date>_<git sha>.json.

`--calibrate N` first picks the self-check's `object_threshold` and `relation_margin` on N validation images
(their own captions, their truth; never the test images): the pair that removes the largest share of false
claims while coverage falls at most `--max-coverage-loss` (relative); the self-check then runs on the test
captions with that pair as well (spec `woodpecker:self`, in OUT/calibrated/, a copy of the run).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SPECS = "woodpecker:self,woodpecker:oracle,logiccheck:self"
KINDS = ("all", "object", "attribute", "count", "relation")


def cost(adapter, world, spec: str, n: int, batch_size: int, method: str, **config) -> dict[str, float]:
    """Seconds per caption of generating `n` captions and of correcting them (`config`: the corrector's
    settings), measured back to back."""
    from halluscope.correction import Item, make_corrector
    from halluscope.world import CAPTION_PROMPTS

    samples = world.sample("test", n)
    images = [s.image for s in samples]
    t0 = time.perf_counter()
    captions = []
    for i in range(0, n, batch_size):
        batch = images[i:i + batch_size]
        captions += adapter.generate(batch, [CAPTION_PROMPTS["detailed"]] * len(batch), method=method,
                                     max_new_tokens=64)
    gen = time.perf_counter() - t0
    corrector = make_corrector(spec, adapter=adapter, batch_size=batch_size, method=method, **config)
    t0 = time.perf_counter()
    for i in range(0, n, batch_size):
        corrector.correct([Item(im, c, s.truth) for im, c, s in zip(images[i:i + batch_size],
                                                                     captions[i:i + batch_size],
                                                                     samples[i:i + batch_size])])
    fix = time.perf_counter() - t0
    return {"generation_s_per_caption": gen / n, "correction_s_per_caption": fix / n, "ratio": fix / gen,
            "captions": n, **{f"questions_{k}": v / n for k, v in corrector.calls().items()}}


OBJECT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
RELATION_MARGINS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)


def calibrate(adapter, world, n: int, batch_size: int, method: str, max_coverage_loss: float) -> dict:
    """The self-check's (object_threshold, relation_margin) chosen on `n` validation images: the model captions
    them, the self-check asks its questions once, and every pair of the grid re-decides from those answers.
    Returns the choice and the grid's scores (false claims and coverage before and after, per pair)."""
    from halluscope.correction import Item, make_corrector
    from halluscope.correction.world import WoodpeckerDecider
    from halluscope.tasks.world import CAPTION_FROM_SUMS, CLAIMS_FROM_SUMS, claim_counts, metric_of
    from halluscope.world import CAPTION_PROMPTS
    from halluscope.world.claims import caption_claims

    samples = world.sample("val", n)
    items = []
    for i in range(0, n, batch_size):
        batch = samples[i:i + batch_size]
        captions = adapter.generate([s.image for s in batch], [CAPTION_PROMPTS["detailed"]] * len(batch),
                                    method=method, max_new_tokens=64)
        items += [Item(s.image, c, s.truth) for s, c in zip(batch, captions)]
    corrector = make_corrector("woodpecker:self", adapter=adapter, batch_size=batch_size, method=method)
    for i in range(0, n, batch_size):
        corrector.correct(items[i:i + batch_size])

    def score(captions: list[str]) -> tuple[float, float]:
        """(share of false claims, coverage), counted as world-chair counts them."""
        records = [{"claims": [c.to_dict() for c in caption_claims(caption, it.scene, world.config)],
                    "objects": it.scene.classes, "repeats_phrase": False} for it, caption in zip(items, captions)]
        counts = claim_counts(records)
        return metric_of(counts, CLAIMS_FROM_SUMS["all"]), metric_of(counts, CAPTION_FROM_SUMS["coverage"])

    base_false, base_cov = score([it.caption for it in items])
    grid = []
    for t in OBJECT_THRESHOLDS:
        for m in RELATION_MARGINS:
            decider = WoodpeckerDecider(0.5, True, t, m)
            captions = []
            for it in items:
                verdicts = decider.decide(it.claims, it.questions, it.answers)
                captions.append(corrector.rewriter.rewrite(it.caption, it.claims, verdicts)[0])
            false, cov = score(captions)
            grid.append({"object_threshold": t, "relation_margin": m, "false": false, "coverage": cov,
                         "reduction": 1 - false / base_false, "coverage_change": cov / base_cov - 1})
    allowed = [g for g in grid if g["coverage_change"] >= -max_coverage_loss]
    best = max(allowed, key=lambda g: g["reduction"])
    return {"n_images": n, "split": "val", "max_coverage_loss": max_coverage_loss, "original_false": base_false,
            "original_coverage": base_cov, "chosen": {k: best[k] for k in ("object_threshold", "relation_margin")},
            "chosen_scores": best, "grid": grid}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--out", default="runs/correction")
    ap.add_argument("--n-images", type=int, default=300)
    ap.add_argument("--specs", default=SPECS)
    ap.add_argument("--method", default="greedy")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--cost-images", type=int, default=48)
    ap.add_argument("--calibrate", type=int, default=0, metavar="N",
                    help="pick object_threshold and relation_margin on N validation images first")
    ap.add_argument("--max-coverage-loss", type=float, default=0.05,
                    help="--calibrate: the largest relative fall in coverage a choice may cost on val")
    args = ap.parse_args()

    from _provenance import model_hash, write_result

    from halluscope import World, load_model
    from halluscope.correction import correct_run, summary
    from halluscope.runner import run_tasks
    from halluscope.tasks.world import WorldCHAIR

    adapter, world = load_model(args.model), World()
    out = Path(args.out)
    run_tasks([WorldCHAIR(world, n_images=args.n_images)], adapter, out, method=args.method,
              batch_size=args.batch_size)
    rows, full = [], {}
    runs = [(spec, out, spec, {}) for spec in args.specs.split(",")]
    calibration = None
    if args.calibrate:
        import shutil

        calibration = calibrate(adapter, world, args.calibrate, args.batch_size, args.method, args.max_coverage_loss)
        print(f"calibrated on {args.calibrate} val images: {calibration['chosen']} "
              f"(val: {100 * calibration['chosen_scores']['reduction']:.1f} % fewer false claims, coverage "
              f"{100 * calibration['chosen_scores']['coverage_change']:+.1f} %)", flush=True)
        cal = out / "calibrated"
        if not cal.exists():  # the run's captions, without the corrections made with the default settings
            shutil.copytree(out, cal, ignore=lambda _, names: [n for n in names
                                                               if ".correct" in n or n == "calibrated"])
        runs.append(("woodpecker:self (calibrated on val)", cal, "woodpecker:self", calibration["chosen"]))
    for label, folder, spec, extra in runs:
        res = correct_run(folder, adapter if not spec.endswith(":oracle") else None, spec, method=args.method,
                          batch_size=args.batch_size, **extra)["world-chair"]
        s = res["scores"]
        full[label] = {"summary": summary(res), "extraction": s["extraction"], "validation": s["validation"],
                      "edits": s["edits"], "paired": s["paired"], "original": s["original"]["claims"],
                      "corrected": s["corrected"]["claims"], "coverage": [s["original"]["coverage"],
                                                                          s["corrected"]["coverage"]],
                      "config": res["config"], "run_cost": res["cost"]}
        if not spec.endswith(":oracle"):
            full[label]["cost"] = cost(adapter, world, spec, args.cost_images, args.batch_size, args.method, **extra)
        rows.append(label)
    print("| correction | " + " | ".join(f"false {k} % (orig → corr, reduction [CI])" for k in KINDS)
          + " | coverage change [CI] | cost ratio |")
    print("|---" * (len(KINDS) + 3) + "|")
    for spec in rows:
        p = full[spec]["paired"]
        cells = [f"{100 * p[k]['rate']['original']:.1f} → {100 * p[k]['rate']['corrected']:.1f}, "
                 f"{100 * p[k]['rate']['reduction']:.0f} % [{100 * p[k]['rate']['ci95'][0]:.0f}, "
                 f"{100 * p[k]['rate']['ci95'][1]:.0f}]" for k in KINDS]
        c = p["coverage"]
        ratio = full[spec].get("cost", {}).get("ratio")
        print(f"| {spec} | " + " | ".join(cells) + f" | {100 * c['change']:+.1f} % [{100 * c['ci95'][0]:+.1f}, "
              f"{100 * c['ci95'][1]:+.1f}] | {'-' if ratio is None else f'{ratio:.2f}'} |")
    path = write_result("correction_world", {"n_images": args.n_images, "method": args.method, "results": full,
                                             "calibration": calibration},
                        model_hash=model_hash(adapter.name))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
