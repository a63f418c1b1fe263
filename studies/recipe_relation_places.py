"""Probe: `recipe_seeds.py` with the relation answers and the captions' places changed from the library's.

Since grammar 2 (`language.GRAMMAR_VERSION`) the library trains relation answers that say where both objects
are, then the relation those places make, then the verdict ("Is the fork left of the cup?" -> "one three , two
one , below , no"; row and column, one to four), and detailed captions that say the two places before each
relation sentence. Continued training showed why (`verification_gap.py --kind relation_cot`): the model fetches
one named object's place well and compares two places it has written, but does not fetch two and compare them
in one step. This script takes those pieces away one at a time, or adds more, for its own run only (so its models
must go to their own --out folder):

    python studies/recipe_relation_places.py --out runs/i19/places --seeds 0 --relation-answer places

`--relation-answer verdict|places|full`: "no" alone (the library's until grammar 2), places then verdict, or the
library's places, relation and verdict. `--no-caption-places`: captions without the place sentences.
`--caption-order reading|class|interleaved` lists the captions' classes as `recipe_caption_order.py` does
(the library's: interleaved).

`--place-words own` writes places in words of their own ("row1 col3 , row2 col1 , ..."), added to the
vocabulary, and makes them stage 0's position targets (so it needs `--train position_targets=True`, the
default): each visual token is trained to sit next to its class, colour, row and column words, as grounding
models name a place by location tokens (Kosmos-2, PaliGemma), so that saying where an object is becomes copying
a word from its token, as naming it is. Evaluate its places with `verification_gap.py --place-words own`.

`--list-places` also says where each listed class's first object is ("a purple book in one three , two lamps in
two one"): in reading order the places then rise along the list, a cursor that says what is listed and where
the list ends (the claims' reader skips them; captions may run to 96 tokens).

`--relation-pairs reading` relates the first single objects in reading order (the top-left one first) instead
of the first ones the list names, so that a relation sentence starts from a place rather than from the list.

`--merged-scenes` trains and evaluates in a world of two scene types of eight classes each (kitchen with office,
street with park; pairs and priors as they are), where an image of up to five objects holds under half of its
scene: a test of whether POPE's adversarial split then finds co-occurring classes to ask about (in the default
world three quarters of its negatives are classes of other scenes; `pope_negatives.py`). `--all-paired` adds
pairs for the six classes without a partner (sign-lamp, tree-bench, phone-clock), so that every class has one.

Takes every option of recipe_seeds.py; its results file records this script's command line. Runs before grammar
2 (their commands with `--state-relation`, `--caption-places`) are reproduced at the commit their results name.
"""

from __future__ import annotations

import argparse

from halluscope import World
from halluscope.tasks import world as tasks_world


def words_as_position_targets() -> None:
    """Stage 0's row and column targets become the (fixed) input embeddings of the place words."""
    import torch.nn.functional as F

    import verification_gap
    from halluscope.training import sft

    init = sft.WordTargets.__init__

    def patched(self, model, processor, positions: bool = False) -> None:
        init(self, model, processor, positions)
        if positions:
            tok, embed = processor.tokenizer, model.get_input_embeddings().weight.detach()
            words = [*verification_gap.ROWS, *verification_gap.COLUMNS]
            del self.positions
            self.register_buffer("positions", F.normalize(embed[tok.convert_tokens_to_ids(words)], dim=-1))

    sft.WordTargets.__init__ = patched
    sft.WordTargets.trained = lambda self: [*self.tower.parameters(), *self.projector.parameters(), self.empty,
                                            self.logit_scale]


def merge_scenes() -> None:
    """The default world's scene types, for this process: kitchen with office ("home"), street with park
    ("outdoors")."""
    from halluscope.world import config

    s = config.DEFAULT_SCENES  # WorldConfig's default factory reads the module's value when called
    config.DEFAULT_SCENES = {"home": (*s["kitchen"], *s["office"]), "outdoors": (*s["street"], *s["park"])}


def pair_all() -> None:
    """Worlds built in this process with the default pairs get three more, so that every class has a partner."""
    from halluscope.world import config

    post_init = config.WorldConfig.__post_init__

    def paired(self) -> None:
        if self.cooccurrence_pairs == config.DEFAULT_PAIRS:
            self.cooccurrence_pairs = (*config.DEFAULT_PAIRS, ("sign", "lamp"), ("tree", "bench"), ("phone", "clock"))
        post_init(self)

    config.WorldConfig.__post_init__ = paired


def relation_answers(form: str) -> None:
    """Training relation answers as `form`: "verdict" ("no"), "places" ("one three , two one , no") or "full"
    (the library's)."""
    import verification_gap

    if form == "full":
        return
    if form == "places":
        verification_gap.reason_relations(World, state_relation=False)
        return
    question = World.question

    def verdict_only(self, scene, qtype, rng):
        q = question(self, scene, qtype, rng)
        return q if qtype != "relation" or q is None else q | {"answer": q["answer"].rsplit(" , ", 1)[-1]}

    World.question = verdict_only


def caption_places(listed: bool = False, relations: bool = True) -> None:
    """Detailed captions (of every split: only the training ones are read) without the place sentences before
    relations (`relations` False); `listed`: with the place of each listed class's first object."""
    import dataclasses

    from halluscope.world import claims, language

    parts_of = language.caption_parts

    def grounded(scene, style: str = "detailed"):
        parts = parts_of(scene, style)
        if not relations:
            parts.places = {}
        if listed and style == "detailed":
            groups = language.objects_by_class(scene)
            for p in parts.phrases:
                p.cls_place = language.place(groups[p.cls][0])
        return parts

    language.caption_parts = grounded
    if listed:
        render = language.Phrase.render
        language.Phrase.render = lambda self: (f"{render(self)} in {self.cls_place}" if hasattr(self, "cls_place")
                                               else render(self))
        phrase = claims._phrase
        claims._phrase = lambda chunk: phrase(chunk[:next((i for i, w in enumerate(chunk) if w[0] == "in"),
                                                          len(chunk))])
        request = tasks_world.WorldCHAIR.request
        tasks_world.WorldCHAIR.request = lambda self, sample: dataclasses.replace(request(self, sample),
                                                                                  max_new_tokens=96)


def relation_pairs_by_place() -> None:
    """Detailed captions relate the first single objects in reading order (row by row) instead of the first
    ones the list names: the first place sentence starts at the image's top-left single object, so that the
    objects related are found by place, not taken from the list (which may hold one the image does not)."""
    from halluscope.world import language

    parts_of = language.caption_parts

    def by_place(scene, style: str = "detailed"):
        parts = parts_of(scene, style)
        if style == "detailed":
            groups = language.objects_by_class(scene)
            singles = sorted((g[0] for g in groups.values() if len(g) == 1), key=lambda o: (o.row, o.col))
            pairs = list(zip(singles, singles[1:3]))
            parts.relations = [(a.cls, language.relation(a, b), b.cls) for a, b in pairs]
            parts.places = {(a.cls, b.cls): (language.place(a), language.place(b)) for a, b in pairs}
        return parts

    language.caption_parts = by_place


def main() -> None:
    import recipe_caption_order  # siblings: `python studies/X.py` puts studies/ on sys.path
    import verification_gap

    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--relation-answer", choices=["verdict", "places", "full"], default="full")
    ap.add_argument("--no-caption-places", action="store_true")
    ap.add_argument("--place-words", choices=sorted(verification_gap.PLACE_WORDS), default="numbers")
    ap.add_argument("--list-places", action="store_true")
    ap.add_argument("--merged-scenes", action="store_true")
    ap.add_argument("--all-paired", action="store_true")
    ap.add_argument("--caption-order", choices=recipe_caption_order.ORDERS, default="interleaved")
    ap.add_argument("--relation-pairs", choices=["list", "reading"], default="list")
    args, rest = ap.parse_known_args()
    if args.merged_scenes:
        merge_scenes()
    if args.all_paired:
        pair_all()
    if args.caption_order != "interleaved":
        recipe_caption_order.use_caption_order(args.caption_order)
    if args.no_caption_places or args.list_places:
        caption_places(listed=args.list_places, relations=not args.no_caption_places)
    if args.relation_pairs == "reading":
        relation_pairs_by_place()
    verification_gap.use_place_words(args.place_words)
    if args.place_words == "own":
        if "position_targets=False" in " ".join(rest):
            ap.error("--place-words own makes the place words stage 0's position targets: drop "
                     "--train position_targets=False")
        words_as_position_targets()
    relation_answers(args.relation_answer)
    import recipe_seeds

    recipe_seeds.main(rest)


if __name__ == "__main__":
    main()
