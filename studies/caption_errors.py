"""Where in a caption the built-in model goes wrong: reads world-chair records (the JSONL lines `halluscope eval`
and `recipe_seeds.py` write, with every claim judged) and counts, per run folder,

- captions repeating a class phrase, and false object claims (absent classes) per object claim;
- where the false objects stand: the caption's last phrase or before it;
- how far each false object is, in a class list, from the class named just before it (+1: the next class of
  the list, which in a fixed-order grammar is the one the model should skip if absent). `--order` picks the
  list, as `recipe_caption_order.py` does: the world's class list (default) or one class of each scene in turn.

    python studies/caption_errors.py runs/i19/order/eval/s0 runs/recipe/eval/s0 ... [--order interleaved]

Writes studies/results/caption_errors/<date>_<sha>.json with its provenance.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def caption_errors(path: Path, order: list[str]) -> dict:
    captions = repeats = objects = false = 0
    where, step = Counter(), Counter()
    for line in path.open():
        record = json.loads(line)
        captions += 1
        repeats += bool(record["repeats_phrase"])
        named = [c for c in record["claims"] if c["kind"] == "object"]
        objects += len(named)
        for i, claim in enumerate(named):
            if claim["true"]:
                continue
            false += 1
            where["last phrase" if i == len(named) - 1 else "before the last"] += 1
            if i:
                step[str(order.index(claim["class"]) - order.index(named[i - 1]["class"]))] += 1
    steps = dict(sorted(step.items(), key=lambda kv: int(kv[0])))
    return {"captions": captions, "repeating a class phrase": repeats, "object claims": objects,
            "false object claims": false, "false objects by place": dict(where),
            "false objects by class-list step from the class before": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="folders holding world-chair.jsonl")
    from recipe_caption_order import ORDERS, class_order

    ap.add_argument("--order", choices=ORDERS, default="class", help="the class list steps are counted in")
    args = ap.parse_args()
    from _provenance import write_result

    order = class_order(args.order)
    result = {run: caption_errors(Path(run) / "world-chair.jsonl", order) for run in args.runs}
    for run, counts in result.items():
        print(run, counts)
    write_result("caption_errors", {"order": order, "runs": result})


if __name__ == "__main__":
    main()
