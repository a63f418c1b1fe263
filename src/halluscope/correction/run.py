"""Correcting a finished run's captions: `halluscope correct --run RUN_DIR` and `halluscope eval --correct`.

For each caption task of the run (world-chair; COCO chair), every record's caption goes through the
corrector in batches, and one JSON line per caption is appended, resumably, to
`<task>.corrected.<pipeline>-<validator>.jsonl` beside the run's `<task>.jsonl`: the original caption,
the corrected one, each claim with its truth (on the world), questions, answers and verdict, and the edits.
`<task>.correction.<pipeline>-<validator>.json` holds the config, the cost and, on the world, every stage's
scores (`scores.py`).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from ..compare import RunTask, read_run
from ..images import load_image
from ..runner import append_in_batches, package_versions, read_jsonl, write_json
from ..world import World, caption_parts, parse_world_caption
from ..world.claims import caption_claims, judge, parse_claims
from .pipeline import Corrector, make_corrector, parse_spec
from .stages import Item, Question
from .world import truth_answer

CAPTION_TASKS = {"world-chair": "world", "chair": "real"}


def file_stem(task: str, spec: str) -> tuple[str, str]:
    """The names of a task's corrected records and results for a spec: ('world-chair.corrected.woodpecker-self.jsonl',
    'world-chair.correction.woodpecker-self.json')."""
    name, validator = parse_spec(spec)
    s = task.replace(":", "_")
    return f"{s}.corrected.{name}-{validator}.jsonl", f"{s}.correction.{name}-{validator}.json"


def corrected_files(folder: str | Path) -> list[tuple[Path, Path]]:
    """(records, results) of every correction in a run folder or one level down."""
    folder = Path(folder)
    found = sorted(folder.glob("*.correction.*.json")) + sorted(folder.glob("*/*.correction.*.json"))
    return [(p.with_name(p.name.replace(".correction.", ".corrected.") + "l"), p) for p in found]


def _world(task: RunTask) -> World:
    args = task.task_args.get("world")
    if not args:
        raise ValueError(f"{task.folder}: the run records no world (task_args.world); rerun it with this version")
    return World(args["seed"], **args["knobs"])


def _claim_truth(claim, scene, config) -> bool | None:
    """The claim's verdict against the scene (None for a colour or number of an absent class)."""
    judged = judge([copy.copy(claim)], scene, config)
    return judged[0].true if judged else None


def _fix_true(claim, verdict, scene) -> bool | None:
    """Whether a fixed value is true (the oracle's answer to the fixed claim's question)."""
    if verdict.action != "fix":
        return None
    if claim.kind == "attribute":
        q = Question(0, "attribute", "yes_no", "", claim.cls, verdict.fix)
    elif claim.kind == "count":
        q = Question(0, "count", "yes_no", "", claim.cls, int(verdict.fix))
    elif claim.kind == "relation":
        q = Question(0, "relation", "yes_no", "", claim.cls, verdict.fix[0], verdict.fix[1])
    else:
        return None
    return truth_answer(scene, q).text == "yes"


def world_record(record: dict[str, Any], item: Item, world: World) -> dict[str, Any]:
    """The corrected record of one world-CHAIR caption (see the module docstring)."""
    scene, config = item.scene, world.config
    checks = []
    for i, (c, v) in enumerate(zip(item.claims, item.verdicts)):
        asked = [q.to_dict() | (a.to_dict() if a is not None else {"answer": None})
                 for q, a in zip(item.questions, item.answers) if q.claim == i]
        entry = {"kind": c.kind, "text": c.text, "span": list(c.span), "class": c.cls,
                 "true": _claim_truth(c, scene, config), "questions": asked, "verdict": v.to_dict()}
        if c.kind == "attribute":
            entry["attribute"] = c.attribute
        ft = _fix_true(c, v, scene)
        if ft is not None:
            entry["fix_true"] = ft
        checks.append(entry)
    claims = caption_claims(item.corrected, scene, config)
    return {"id": record["id"], "caption": item.corrected, "original": item.caption,
            "objects": record["objects"], "breaks_bias": record["breaks_bias"],
            "claims": [c.to_dict() for c in claims],
            "repeats_phrase": any(c.kind == "count" and c.repeat for c in parse_claims(item.corrected).claims),
            "original_claims": record.get("claims") or [c.to_dict() for c in caption_claims(item.caption, scene,
                                                                                             config)],
            "original_repeats_phrase": bool(record.get("repeats_phrase", False)),
            "grammatical": parse_world_caption(item.caption) is not None,
            "unparsed": [list(s) for s in item.unparsed], "checks": checks, "edits": item.edits,
            "questions": len(item.questions), "truth": caption_parts(scene).render()}


def real_record(record: dict[str, Any], item: Item) -> dict[str, Any]:
    checks = []
    for i, (c, v) in enumerate(zip(item.claims, item.verdicts)):
        asked = [q.to_dict() | (a.to_dict() if a is not None else {"answer": None})
                 for q, a in zip(item.questions, item.answers) if q.claim == i]
        checks.append({"kind": c.kind, "text": c.text, "span": list(c.span), "class": c.cls, "true": None,
                       "questions": asked, "verdict": v.to_dict()})
    return {"id": record["id"], "image_id": record.get("image_id", record["id"]), "image": record.get("image"),
            "caption": item.corrected, "original": item.caption, "checks": checks, "edits": item.edits,
            "questions": len(item.questions)}


def correct_records(corrector: Corrector, task: RunTask, out: Path, batch_size: int = 16, limit: int | None = None,
                    progress: bool = True) -> tuple[list[dict[str, Any]], float, int]:
    """Correct the task's records not yet in `out` (appending each batch), returning (all corrected records
    in run order, seconds this call, captions this call)."""
    domain = CAPTION_TASKS[task.benchmark.partition(":")[0]]
    world = _world(task) if domain == "world" else None
    records = [r for r in task.records if "error" not in r and isinstance(r.get("caption"), str)]
    if limit is not None:
        records = records[:limit]
    done = {r["id"]: r for r in read_jsonl(out)}
    todo = [r for r in records if r["id"] not in done]
    t0 = time.time()

    def correct_batch(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items = []
        for r in batch:
            if world is not None:
                split, _, index = str(r["id"]).rpartition("-")
                scene = world.scene(split, int(index))
                items.append(Item(world.render(scene), r["caption"], scene))
            else:
                path = r.get("image")
                if path and not Path(path).is_absolute() and task.task_args.get("images"):
                    path = str(Path(task.task_args["images"]) / path)
                items.append(Item(load_image(path), r["caption"]))
        corrector.correct(items)
        corrected = [world_record(r, it, world) if world is not None else real_record(r, it)
                     for r, it in zip(batch, items)]
        done.update((rec["id"], rec) for rec in corrected)
        return corrected

    append_in_batches(out, todo, batch_size, f"{task.benchmark} [correct {corrector.name}]" if progress else None,
                      correct_batch)
    return [done[r["id"]] for r in records if r["id"] in done], time.time() - t0, len(todo)


def correct_run(run: str | Path, adapter=None, spec: str = "woodpecker:self", limit: int | None = None,
                progress: bool = True, **config: Any) -> dict[str, dict[str, Any]]:
    """Correct every caption task of run folder `run` (see the module docstring); returns {task: results}.
    The self-check answers with the run's decoding method and arguments unless `config` names `method`."""
    from .scores import correction_scores

    tasks = {n: t for n, t in read_run(run).items() if n.partition(":")[0] in CAPTION_TASKS}
    if not tasks:
        raise ValueError(f"{run}: no caption task in the run (correction reads {', '.join(CAPTION_TASKS)} runs)")
    results = {}
    for name, task in tasks.items():
        domain = CAPTION_TASKS[name.partition(":")[0]]
        cfg = dict(config)
        if "method" not in cfg:
            cfg["method"] = task.method if task.method != "?" else "greedy"
            cfg.setdefault("method_args", task.results.get("config", {}).get("method_args") or {})
        corrector = make_corrector(spec, adapter=adapter, domain=domain, **cfg)
        records_name, results_name = file_stem(task.benchmark, spec)
        records, seconds, n_new = correct_records(corrector, task, task.folder / records_name,
                                                  corrector.config.batch_size, limit, progress)
        timing = task.results.get("timing", {})
        gen = (timing.get("seconds_this_run") or 0) / timing["samples_this_run"] if timing.get(
            "samples_this_run") else None
        per = seconds / n_new if n_new else None
        out = {"task": name, "spec": corrector.name, "run": str(run), "config": corrector.config.to_dict(),
               "paper": corrector.config.paper(), "n": len(records), "versions": package_versions(),
               "cost": {"seconds_per_caption": per, "generation_seconds_per_caption": gen,
                        "ratio_to_generation": per / gen if per and gen else None,
                        "questions_per_caption": sum(r["questions"] for r in records) / len(records) if records
                        else 0.0, "calls_this_run": corrector.calls(), "captions_this_run": n_new}}
        if domain == "world" and records:
            out["scores"] = correction_scores(records)
        else:
            out["edited_captions"] = sum(r["caption"] != r["original"] for r in records)
        write_json(task.folder / results_name, out)
        results[name] = out
    return results


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline of a correction's results: per kind the false-claim rates and relative reduction with
    its interval, coverage, cost ratio."""
    s = results.get("scores")
    out: dict[str, Any] = {"task": results["task"], "spec": results["spec"], "n": results["n"],
                           "cost_ratio": results["cost"]["ratio_to_generation"]}
    if s:
        p = s["paired"]
        for k in ("all", "object", "attribute", "count", "relation"):
            r = p[k]["rate"]
            out[f"false_{k}"] = [round(r["original"], 4), round(r["corrected"], 4)]
            out[f"reduction_{k}"] = [round(r["reduction"], 4), [round(x, 4) for x in r["ci95"]]]
        c = p["coverage"]
        out["coverage"] = [round(c["original"], 4), round(c["corrected"], 4)]
        out["coverage_change"] = [round(c["change"], 4), [round(x, 4) for x in c["ci95"]]]
    return out


__all__ = ["CAPTION_TASKS", "correct_records", "correct_run", "corrected_files", "file_stem", "summary"]
