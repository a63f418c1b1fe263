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

`--kind relation_open` asks for the relation itself instead of checking one: "Is the fork the cup?" (the
relation question with its relation left out, so that every word is in the built-in vocabulary) answered
"left of", "right of", "above" or "below" (chance 25 %). It separates perceiving a relation from checking a
stated one, as the open and yes/no colour questions do; it is evaluated on up to 4 pairs of each of the first
`--n-images` test images, by the greedy answer.

`--kind position` teaches the step a relation needs first, fetching one named object's place: "What is the fork
in?" -> "two three" (its row and column, one to four, for a class the scene holds once), at `--share` of the
questions, beside the relation yes/no questions at `--relation-share`. Does knowing where each object is carry
over to relating two? Evaluated on the relation benchmark as always and on the position question itself (up to
4 objects of each of the first `--n-images` test images: row and column right, row right, column right).

`--kind relation_cot` answers the relation yes/no question by first saying where both objects are: "Is the fork
left of the cup?" -> "one three , two one , no". Each place is one fetch, and the comparison is then between
words the model has just written. Evaluated by generating the answer (up to the library's
`YES_NO_MAX_NEW_TOKENS`) and reading it with POPE's parser, as the benchmark reads any free-text answer; the
places the model wrote are scored too.

`--position-table` adds a learned vector per row and per column to each visual token as it leaves the projector
(initialised at random, at half the tokens' mean norm), so that where each token sits is plainly in the
language model's input, whatever the vision tower kept of it: does the model relate objects once their
positions are given?

`--full-mix` continues on the default recipe's whole mix (captions and every question type) with the kind's yes/no
questions at `--share`: is what the concentrated training buys the concentration, or the continuation itself?

`--steps 0` only evaluates (e.g. `--kind relation_cot` on a model trained from scratch with such answers).

Trains into OUT and keeps the benchmark's answers in OUT/before and OUT/after (resumable); writes
studies/results/verification_gap/<date>_<sha>.json with its provenance.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

YES_NO_TYPE = {"attribute": "attribute_yes_no", "count": "count_yes_no", "relation": "relation",
               "relation_open": "relation", "relation_cot": "relation", "position": "position"}
OPEN_RELATION = "Is the {} the {}?"
POSITION = "What is the {} in?"
# The words of a place, its row's then its column's: the built-in number words, or words of their own
# (`use_place_words("own")`), which a probe can also make stage 0's position targets.
PLACE_WORDS = {"numbers": (("one", "two", "three", "four"),) * 2,
               "own": (("row1", "row2", "row3", "row4"), ("col1", "col2", "col3", "col4"))}
ROWS, COLUMNS = PLACE_WORDS["numbers"]


def use_place_words(name: str) -> None:
    """Places are written in PLACE_WORDS[name]; with "own", the world's vocabulary (so a new tokenizer) has them."""
    global ROWS, COLUMNS
    ROWS, COLUMNS = PLACE_WORDS[name]
    if name == "own":
        from halluscope import World
        from halluscope.world import language

        vocabulary = World.vocabulary
        World.vocabulary = lambda self: sorted({*vocabulary(self), *ROWS, *COLUMNS})
        language.place = place  # the library's relation answers and captions say places in them too


def group(record: dict) -> str:
    if record["breaks"]:
        return "breaking"
    return "prior, conforming" if record.get("prior") is not None else "no prior"


def evaluate(adapter, world, kind: str, n_images: int, out: Path, generate: bool = False) -> dict:
    """Accuracy by group and form (yes/no, open) on the first `n_images` world-qa images of `kind`, answered and
    parsed by the benchmark itself (`WorldQA`), its records kept in `out`. `generate`: yes/no answers are
    generated and parsed instead of scored, and the places a relation answer states are scored."""
    from halluscope.runner import read_jsonl, run_benchmark
    from halluscope.tasks.world import WorldQA, read_qa_answers

    task = WorldQA(world, kind, n_images=n_images, **({"mode": "generate"} if generate else {}))
    run_benchmark(task, adapter, out, batch_size=32, progress=False)
    raw = read_jsonl(out / f"world-qa_{kind}.jsonl")
    records = read_qa_answers(raw)
    result = tally((r["form"], group(r), r["prediction"] == r["label"]) for r in records)
    if generate and kind == "relation":
        rows = []
        for r, parsed in zip(raw, records):
            places = stated_places(world, r)
            rows += [("stated places", group(r), right) for right in places]
            if all(places):
                rows.append(("verdict where both places are right", group(r), parsed["prediction"] == r["label"]))
            if (follows := verdict_follows_places(r["raw"], r["value"], parsed["prediction"])) is not None:
                rows.append(("verdict follows the stated places", group(r), follows))
        result |= tally(rows)
    return result


def place(obj) -> str:
    """An object's row and column in the place words ("one three" or "row1 col3")."""
    return f"{ROWS[obj.row]} {COLUMNS[obj.col]}"


def single(scene, cls: str):
    return next(o for o in scene.objects if o.cls == cls)


def said_places(raw: str) -> list[list[str]]:
    """The two places ("one three", "two one") at the start of a chain-of-thought relation answer, as words."""
    from halluscope.world.language import tokenize_words

    words = tokenize_words(raw)
    return [words[0:2], words[3:5]]


def stated_places(world, record: dict) -> list[bool]:
    """Whether each of the two places a chain-of-thought relation answer states is the object's."""
    scene = world.scene("test", int(record["image_id"].split("-")[1]))
    return [" ".join(said) == place(single(scene, c))
            for said, c in zip(said_places(record["raw"]), (record["object"], record["other"]))]


def verdict_follows_places(raw: str, asked: str, verdict: str) -> bool | None:
    """Whether a chain-of-thought answer's yes/no is what its own two stated places make of the asked relation
    (None where the places cannot be read)."""
    from halluscope.world.scene import WorldObject, relation

    try:
        (ra, ca), (rb, cb) = ((ROWS.index(r), COLUMNS.index(c)) for r, c in said_places(raw))
    except ValueError:
        return None
    a, b = (WorldObject("", "", "", row=r, col=c, x=0, y=0) for r, c in ((ra, ca), (rb, cb)))
    return (relation(a, b) == asked) == (verdict == "yes")


def evaluate_positions(adapter, world, n_images: int) -> dict:
    """Greedy accuracy of the position question on up to 4 objects (of classes held once) per test image."""
    from halluscope.world.language import tokenize_words

    items = []
    for i in range(n_images):
        scene = world.scene("test", i)
        counts = scene.counts()
        items += [(scene, o) for o in scene.objects if counts[o.cls] == 1][:4]
    answers = []
    for k in range(0, len(items), 32):
        chunk = items[k:k + 32]
        answers += adapter.generate([world.render(s) for s, _ in chunk],
                                    [POSITION.format(o.cls) for _, o in chunk], max_new_tokens=3)
    rows = []
    for (_, o), answer in zip(items, answers):
        said, truth = tokenize_words(answer)[:2], place(o).split()
        rows += [("position", "row and column", said == truth), ("position", "row", said[:1] == truth[:1]),
                 ("position", "column", said[1:2] == truth[1:])]
    return tally(rows)


def tally(answers) -> dict:
    """{"<form>, <group>" and "<form>, all": {"n", "accuracy"}} over (form, group, right) triples."""
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for form, grp, right in answers:
        for key in (f"{form}, {grp}", f"{form}, all"):
            hits[key][0] += right
            hits[key][1] += 1
    return {k: {"n": n, "accuracy": round(100 * c / n, 1)} for k, (c, n) in sorted(hits.items())}


def pair_group(world, a: str, rel: str, b: str) -> str:
    usual = world.config.usual_relation(a, b)
    if usual is None:
        return "no prior"
    return "prior, conforming" if rel == usual else "breaking"


def evaluate_open_relations(adapter, world, n_images: int) -> dict:
    """Greedy accuracy of the open relation question by group, on up to 4 pairs per test image."""
    items = []
    for i in range(n_images):
        scene = world.scene("test", i)
        items += [(scene, r) for r in scene.relations()[:4]]
    answers = []
    for k in range(0, len(items), 32):
        chunk = items[k:k + 32]
        answers += adapter.generate([world.render(s) for s, _ in chunk],
                                    [OPEN_RELATION.format(a, b) for _, (a, _, b) in chunk], max_new_tokens=4)
    return tally(("open", pair_group(world, a, rel, b), answer == rel)
                 for (_, (a, rel, b)), answer in zip(items, answers))


def ask_open_relations(world_cls) -> None:
    """Make the training relation questions (train split only) open: "Is the fork the cup?" -> "left of"."""
    question = world_cls.question

    def patched(self, scene, qtype, rng, relation_inverse=0.0):
        if qtype != "relation" or scene.split != "train":
            return question(self, scene, qtype, rng, relation_inverse)
        rels = scene.relations()
        if not rels:
            return None
        a, rel, b = rels[rng.integers(len(rels))]
        return {"type": qtype, "question": OPEN_RELATION.format(a, b), "answer": rel}

    world_cls.question = patched


def add_position_questions(world_cls) -> None:
    """Add the training question type "position": "What is the fork in?" -> "two three" (row, column)."""
    question = world_cls.question

    def patched(self, scene, qtype, rng):
        if qtype != "position":
            return question(self, scene, qtype, rng)
        counts = scene.counts()
        singles = [o for o in scene.objects if counts[o.cls] == 1]
        if not singles:
            return None
        o = singles[rng.integers(len(singles))]
        return {"type": qtype, "question": POSITION.format(o.cls), "answer": place(o)}

    world_cls.question = patched
    world_cls.TRAIN_QUESTION_TYPES = (*world_cls.TRAIN_QUESTION_TYPES, "position")


def reason_relations(world_cls, state_relation: bool = False) -> None:
    """Make the training relation answers (train split only) state both places first: "one three , two one , no";
    `state_relation`: and then the relation the places make, before the verdict: "one three , two one , below ,
    no" (the library's answer since grammar 2), so that every answer teaches the step from two places to their
    relation, not only whether it is the asked one. The verdict is the library answer's last word."""
    from halluscope.world.scene import relation

    question = world_cls.question

    def patched(self, scene, qtype, rng):
        q = question(self, scene, qtype, rng)
        if qtype != "relation" or scene.split != "train" or q is None:
            return q
        first, b = q["question"].removeprefix("Is the ").removesuffix("?").split(" the ")  # "fork left of", "cup"
        oa, ob = single(scene, first.split()[0]), single(scene, b)
        verdict = q["answer"].rsplit(" , ", 1)[-1]
        steps = [place(oa), place(ob), *([relation(oa, ob)] if state_relation else []), verdict]
        return q | {"answer": " , ".join(steps)}

    world_cls.question = patched


def add_position_table(model, world, scale: float = 0.5) -> None:
    """Wrap the projector so that each visual token gets its row's and its column's learned vector added."""
    import numpy as np
    import torch
    from torch import nn

    from halluscope.models.parts import visual_tokens
    from halluscope.training.sft import pixel_values
    from halluscope.world import GRID

    class WithPositions(nn.Module):
        def __init__(self, projector: nn.Module, norm: float) -> None:
            super().__init__()
            self.projector = projector
            hidden = projector.linear_2.out_features
            self.rows = nn.Parameter(torch.nn.functional.normalize(torch.randn(GRID, hidden), dim=-1) * norm)
            self.cols = nn.Parameter(torch.nn.functional.normalize(torch.randn(GRID, hidden), dim=-1) * norm)

        def forward(self, features):
            table = (self.rows[:, None] + self.cols[None]).reshape(GRID * GRID, -1)
            return self.projector(features) + table

    px = pixel_values(np.stack([world.render_array(world.scene("train", i)) for i in range(64)]))
    with torch.no_grad():
        norm = torch.stack(visual_tokens(model, pixel_values=px)).norm(dim=-1).mean().item()
    torch.manual_seed(0)
    model.model.multi_modal_projector = WithPositions(model.model.multi_modal_projector, scale * norm)


def train_on_pairs_without_prior(world_cls) -> None:
    """Make the training relation questions (train split only) skip the spatial priors' pairs."""
    from halluscope.world.scene import Scene

    prior = {frozenset((a, b)) for a, _, b in world_cls().config.spatial_priors}
    question, relations = world_cls.question, Scene.relations

    def without_prior(scene):
        return [r for r in relations(scene) if frozenset((r[0], r[2])) not in prior]

    def patched(self, scene, qtype, rng, relation_inverse=0.0):
        if qtype != "relation" or scene.split != "train":
            return question(self, scene, qtype, rng, relation_inverse)
        Scene.relations = without_prior
        try:
            return question(self, scene, qtype, rng, relation_inverse)
        finally:
            Scene.relations = relations

    world_cls.question = patched


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a trained built-in model folder")
    ap.add_argument("--kind", required=True, choices=sorted(YES_NO_TYPE))
    ap.add_argument("--out", required=True, help="folder for the continued model")
    ap.add_argument("--steps", type=int, default=400, help="0: evaluate the model as it is, without training")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32, help="conversations per step")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--share", type=float, default=0.5, help="share of the questions that are the kind's yes/no ones")
    ap.add_argument("--relation-share", type=float, default=0.0,
                    help="share of the questions that are relation yes/no ones, beside the kind's")
    ap.add_argument("--full-mix", action="store_true", help="train on the default recipe's captions and questions, "
                    "with the kind's yes/no questions at --share of the questions (the rest scaled down)")
    ap.add_argument("--no-prior-pairs", action="store_true", help="relation: train on pairs without a prior only")
    ap.add_argument("--n-images", type=int, default=150, help="world-qa images evaluated")
    ap.add_argument("--place-words", choices=sorted(PLACE_WORDS), default="numbers",
                    help="words of the places in position and relation_cot answers (own: the model must have them)")
    ap.add_argument("--state-relation", action="store_true",
                    help="relation_cot: training answers say the relation the two places make before the verdict")
    ap.add_argument("--position-table", action="store_true", help="add a learned row and column vector to each "
                    "visual token (evaluated before training with the table already in place)")
    args = ap.parse_args()
    if args.relation_share and (YES_NO_TYPE[args.kind] == "relation" or args.full_mix):
        ap.error("--relation-share adds relation questions beside another kind's, without --full-mix; "
                 "for the relation kinds use --share")

    import torch
    from _provenance import model_hash, write_result

    from halluscope import World, load_model
    from halluscope.training.sft import InstructionTrainer, TrainConfig

    torch.set_num_threads(1)
    use_place_words(args.place_words)
    if args.kind == "relation_open":
        ask_open_relations(World)
    if args.kind == "position":
        add_position_questions(World)
    if args.kind == "relation_cot":
        reason_relations(World, args.state_relation)
    if args.no_prior_pairs:  # wraps the open form too: its pairs come from the filtered `Scene.relations`
        train_on_pairs_without_prior(World)
    world, out = World(), Path(args.out)
    adapter = load_model(args.model)
    if args.position_table:
        add_position_table(adapter.model, world)
    # existence: the object checks the continued training must keep
    kinds = ["relation" if args.kind.startswith("relation") or args.kind == "position" else args.kind, "existence"]

    def measure(folder: str) -> dict:
        result = {k: evaluate(adapter, world, k, args.n_images, out / folder) for k in kinds}
        if args.kind == "relation_open":
            result["relation_open"] = evaluate_open_relations(adapter, world, args.n_images)
        if args.kind == "position":
            result["position"] = evaluate_positions(adapter, world, args.n_images)
        if args.kind == "relation_cot":
            result["relation_cot"] = evaluate(adapter, world, "relation", args.n_images, out / folder / "cot",
                                              generate=True)
        return result

    before = measure("before")
    print("before", before, flush=True)
    after, log, start = None, {"loss": [None]}, time.time()
    if args.steps:
        qa_mix = {YES_NO_TYPE[args.kind]: args.share, "existence": 1 - args.share - args.relation_share}
        if args.relation_share:
            qa_mix["relation"] = args.relation_share
        task_mix = {"qa": 1.0}
        if args.full_mix:
            task_mix = TrainConfig().task_mix
            qa_mix = {k: v * (1 - args.share) for k, v in TrainConfig().qa_mix.items()}
            qa_mix[YES_NO_TYPE[args.kind]] = qa_mix.get(YES_NO_TYPE[args.kind], 0) + args.share
        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=20,
                             weight_decay=args.weight_decay, seed=1, task_mix=task_mix, qa_mix=qa_mix,
                             optimizer="adamw")  # as every continued run of this study has been
        log = InstructionTrainer(adapter.model, adapter.processor, world, config, out / "stages",
                                 progress=False).train()
        adapter.model.eval()
        after = measure("after")
        print("after", after, flush=True)
    write_result("verification_gap", {
        "kind": args.kind, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "share": args.share,
        "relation_share": args.relation_share, "full_mix": args.full_mix, "no_prior_pairs": args.no_prior_pairs,
        "position_table": args.position_table, "state_relation": args.state_relation,
        "place_words": args.place_words, "n_images": args.n_images,
        "train_seconds": round(time.time() - start, 1),
        "final_loss": log["loss"][-1], "before": before, "after": after,
    }, model_hash=model_hash(args.model))


if __name__ == "__main__":
    main()
