"""Which step of a relation goes wrong: reads the world-qa:relation and world-chair records of evaluated runs (the
JSONL lines `halluscope eval` and `recipe_seeds.py` write) and checks each step the model writes against the one
before it, not against the image.

- Relation yes/no answers ("one three , four two , above , no"): whether the relation written agrees with the two
  places written (`scene.relation` of those cells), and whether the verdict agrees with the relation written (yes
  exactly when it is the one asked). Verdicts that contradict the model's own relation are split by what was
  asked beside what was written (asked "right of" having written "left of": the inverse).
- Detailed captions ("one three , four two . the book is above the pen ."): whether each relation sentence after a
  place sentence agrees with those places, by how far apart the places are (rows, columns).

    python studies/relation_steps.py runs/i19/g3/eval/s0 runs/i19/g3_qanoise01/eval/s0 ...

Writes studies/results/relation_steps/<date>_<sha>.json with its provenance.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def answers(path: Path) -> dict:
    """The relation yes/no answers of one run, step by step."""
    from halluscope.world.language import parse_place
    from halluscope.world.config import INVERSE
    from halluscope.world.scene import Cell, relation

    out, contradicted = Counter(), Counter()
    for line in path.open():
        r = json.loads(line)
        if r["form"] != "yes_no":
            continue
        steps = [s.strip() for s in r["raw"].split(",")]
        cells = [parse_place(s) for s in steps[:2]]
        if len(steps) != 4 or None in cells or steps[3] not in ("yes", "no"):
            out["not in the answer grammar"] += 1
            continue
        written, verdict = steps[2], steps[3]
        out["relation agrees with the places" if relation(*map(Cell._make, cells)) == written
            else "relation disagrees with the places"] += 1
        if (verdict == "yes") == (written == r["value"]):
            out["verdict agrees with the relation written"] += 1
            continue
        out["verdict contradicts the relation written"] += 1
        asked = r["value"]
        contradicted["the inverse asked" if INVERSE.get(written) == asked else
                     "the relation written asked" if written == asked else "another relation asked"] += 1
    return {"answers": sum(out[k] for k in ("relation agrees with the places", "relation disagrees with the places")),
            **dict(out), "verdicts that contradict the relation written": dict(contradicted)}


def captions(path: Path) -> dict:
    """The relation sentences after places in one run's captions, by rows and columns between the places."""
    from halluscope.world.claims import parse_claims
    from halluscope.world.scene import Cell, relation

    total, disagree = Counter(), Counter()
    for line in path.open():
        for c in parse_claims(json.loads(line)["caption"]).claims:
            if c.kind != "relation" or c.places is None:
                continue
            (r1, c1), (r2, c2) = c.places
            apart = f"{abs(r1 - r2)} rows, {abs(c1 - c2)} columns"
            total[apart] += 1
            disagree[apart] += relation(Cell(r1, c1), Cell(r2, c2)) != c.value[0]
    same = total.pop("0 rows, 0 columns", 0)  # one cell for both: no relation to read off
    disagree.pop("0 rows, 0 columns", None)
    n = sum(total.values())
    return {"relation sentences after places": n + same, "both places one cell": same,
            "disagreeing with their places (other cells)": sum(disagree.values()),
            "disagreeing %": round(100 * sum(disagree.values()) / n, 1) if n else None,
            "by distance": {k: {"sentences": total[k], "disagreeing": disagree[k]}
                            for k in sorted(total, key=lambda k: -disagree[k])}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="folders holding world-qa_relation.jsonl and world-chair.jsonl")
    args = ap.parse_args()
    from _provenance import write_result

    result = {run: {"relation answers": answers(Path(run) / "world-qa_relation.jsonl"),
                    "captions": captions(Path(run) / "world-chair.jsonl")} for run in args.runs}
    for run, r in result.items():
        a, c = r["relation answers"], r["captions"]
        print(run, "| answers:", a["answers"], "relation off its places:",
              a.get("relation disagrees with the places", 0), "verdict off its relation:",
              a.get("verdict contradicts the relation written", 0), a["verdicts that contradict the relation written"],
              "| captions: off their places", c["disagreeing with their places (other cells)"], "of",
              c["relation sentences after places"])
    write_result("relation_steps", {"runs": result})


if __name__ == "__main__":
    main()
