"""Does the built-in model check a claim against what it sees? It names an object's colour right when asked
openly, yet answers "Is the dog red?" at chance. This study continues the instruction tuning of a trained
model on yes/no questions of one kind (the rest existence questions, so that it keeps its object checks)
and measures, before and after, on the world-qa questions of that kind:

- yes/no accuracy on items whose class (or pair) has a prior and conforms to it, on items that break it, and
  on items without a prior, where only looking can answer;
- for colour and count, the open question's accuracy on the same groups: what the model perceives;
- existence yes/no accuracy, which the continued training must not lose.

A model that learns to check its yes/no answers against the image gains on all three groups; one that learns
the prior gains on conforming items and falls to near 0 % on breaking ones, with no gain where there is no
prior.

    python studies/verification_gap.py --model runs/i19/pos/s0 --kind attribute --steps 400 --out runs/vgap/attr

`--no-prior-pairs` trains relation questions only on pairs without a spatial prior, where the prior cannot
answer and only looking can (the benchmark still asks all pairs).

Trains into OUT and keeps the benchmark's answers in OUT/before and OUT/after (resumable); writes
studies/results/verification_gap/<date>_<sha>.json with its provenance.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

YES_NO_TYPE = {"attribute": "attribute_yes_no", "count": "count_yes_no", "relation": "relation"}


def group(record: dict) -> str:
    if record["breaks"]:
        return "breaking"
    return "prior, conforming" if record.get("prior") is not None else "no prior"


def evaluate(adapter, world, kind: str, n_images: int, out: Path) -> dict:
    """Accuracy by group and form (yes/no, open) on the first `n_images` world-qa images of `kind`, answered and
    parsed by the benchmark itself (`WorldQA`), its records kept in `out`."""
    from halluscope.runner import read_jsonl, run_benchmark
    from halluscope.tasks.world import WorldQA, read_qa_answers

    task = WorldQA(world, kind, n_images=n_images)
    run_benchmark(task, adapter, out, batch_size=32, progress=False)
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in read_qa_answers(read_jsonl(out / f"world-qa_{kind}.jsonl")):
        for key in (f"{r['form']}, {group(r)}", f"{r['form']}, all"):
            hits[key][0] += r["prediction"] == r["label"]
            hits[key][1] += 1
    return {k: {"n": n, "accuracy": round(100 * c / n, 1)} for k, (c, n) in sorted(hits.items())}


def train_on_pairs_without_prior(world_cls) -> None:
    """Make the training relation questions (train split only) skip the spatial priors' pairs."""
    from halluscope.world.scene import Scene

    prior = {frozenset((a, b)) for a, _, b in world_cls().config.spatial_priors}
    question, relations = world_cls.question, Scene.relations

    def without_prior(scene):
        return [r for r in relations(scene) if frozenset((r[0], r[2])) not in prior]

    def patched(self, scene, qtype, rng):
        if qtype != "relation" or scene.split != "train":
            return question(self, scene, qtype, rng)
        Scene.relations = without_prior
        try:
            return question(self, scene, qtype, rng)
        finally:
            Scene.relations = relations

    world_cls.question = patched


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a trained built-in model folder")
    ap.add_argument("--kind", required=True, choices=sorted(YES_NO_TYPE))
    ap.add_argument("--out", required=True, help="folder for the continued model")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32, help="conversations per step")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--share", type=float, default=0.5, help="share of the questions that are the kind's yes/no ones")
    ap.add_argument("--no-prior-pairs", action="store_true", help="relation: train on pairs without a prior only")
    ap.add_argument("--n-images", type=int, default=150, help="world-qa images evaluated")
    args = ap.parse_args()

    import torch
    from _provenance import model_hash, write_result

    from halluscope import World, load_model
    from halluscope.training.sft import InstructionTrainer, TrainConfig

    torch.set_num_threads(1)
    if args.no_prior_pairs:
        train_on_pairs_without_prior(World)
    world, out = World(), Path(args.out)
    adapter = load_model(args.model)
    kinds = [args.kind, "existence"]  # existence: the object checks the continued training must keep
    before = {k: evaluate(adapter, world, k, args.n_images, out / "before") for k in kinds}
    print("before", before, flush=True)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=20,
                         weight_decay=args.weight_decay, seed=1,
                         task_mix={"qa": 1.0},
                         qa_mix={YES_NO_TYPE[args.kind]: args.share, "existence": 1 - args.share})
    start = time.time()
    log = InstructionTrainer(adapter.model, adapter.processor, world, config, out / "stages", progress=False).train()
    adapter.model.eval()
    after = {k: evaluate(adapter, world, k, args.n_images, out / "after") for k in kinds}
    print("after", after, flush=True)
    write_result("verification_gap", {
        "kind": args.kind, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay,
        "share": args.share, "no_prior_pairs": args.no_prior_pairs, "n_images": args.n_images,
        "train_seconds": round(time.time() - start, 1),
        "final_loss": log["loss"][-1], "before": before, "after": after,
    }, model_hash=model_hash(args.model))


if __name__ == "__main__":
    main()
