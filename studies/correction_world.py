"""Post-hoc correction on the world: the built-in model's captions of test images, corrected by the
Woodpecker-style pipeline with the model's own answers (self-check), by LogicCheck's loops, and with the
truth's answers (the oracle: the ceiling of the same pipeline); every stage scored against exact truth.

    python studies/correction_world.py --model tiny --out runs/correction [--n-images 300]

The captions come from `halluscope eval --tasks world-chair` (greedy unless --method), into OUT/ (resumable);
each correction from `halluscope correct`'s code, into OUT/world-chair/. Cost: generating and correcting
the same --cost-images captions, timed back to back in this process (a ratio, so the host's speed cancels).
The results with their provenance go to studies/results/correction_world/<date>_<git sha>.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SPECS = "woodpecker:self,woodpecker:oracle,logiccheck:self"
KINDS = ("all", "object", "attribute", "count", "relation")


def cost(adapter, world, spec: str, n: int, batch_size: int, method: str) -> dict[str, float]:
    """Seconds per caption of generating `n` captions and of correcting them, measured back to back."""
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
    corrector = make_corrector(spec, adapter=adapter, batch_size=batch_size, method=method)
    t0 = time.perf_counter()
    for i in range(0, n, batch_size):
        corrector.correct([Item(im, c, s.truth) for im, c, s in zip(images[i:i + batch_size],
                                                                     captions[i:i + batch_size],
                                                                     samples[i:i + batch_size])])
    fix = time.perf_counter() - t0
    return {"generation_s_per_caption": gen / n, "correction_s_per_caption": fix / n, "ratio": fix / gen,
            "captions": n, **{f"questions_{k}": v / n for k, v in corrector.calls().items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--out", default="runs/correction")
    ap.add_argument("--n-images", type=int, default=300)
    ap.add_argument("--specs", default=SPECS)
    ap.add_argument("--method", default="greedy")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--cost-images", type=int, default=48)
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
    for spec in args.specs.split(","):
        res = correct_run(out, adapter if not spec.endswith(":oracle") else None, spec, method=args.method,
                          batch_size=args.batch_size)["world-chair"]
        s = res["scores"]
        full[spec] = {"summary": summary(res), "extraction": s["extraction"], "validation": s["validation"],
                      "edits": s["edits"], "paired": s["paired"], "original": s["original"]["claims"],
                      "corrected": s["corrected"]["claims"], "coverage": [s["original"]["coverage"],
                                                                          s["corrected"]["coverage"]],
                      "config": res["config"], "run_cost": res["cost"]}
        if not spec.endswith(":oracle"):
            full[spec]["cost"] = cost(adapter, world, spec, args.cost_images, args.batch_size, args.method)
        rows.append(spec)
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
    path = write_result("correction_world", {"n_images": args.n_images, "method": args.method, "results": full},
                        model_hash=model_hash(adapter.name))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
