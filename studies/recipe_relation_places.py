"""Probe: `recipe_seeds.py` with relation training answers that say where both objects are before the verdict:
"Is the fork left of the cup?" -> "one three , two one , no" (row and column of each, one to four).

Continued training shows why (`verification_gap.py --kind relation_cot`): the model fetches one named object's
place well and compares two places it has written, but does not fetch two and compare them in one step.
Does the same hold when the model learns relations this way from the start? The library's questions stay as
they are; this script replaces the training relation answers (`verification_gap.reason_relations`) and makes
world-qa:relation generate its answers (16 tokens, read by POPE's parser, as for any free-text answer)
instead of scoring "yes" against "no", for its own run only, so its models must go to their own --out folder.

    python studies/recipe_relation_places.py --out runs/i19/places --seeds 0

`--place-words own` writes places in words of their own ("row1 col3 , row2 col1 , no"), added to the vocabulary,
and makes them stage 0's position targets (so it needs `--train position_targets=True`): each visual token is
trained to sit next to its class, colour, row and column words, as grounding models name a place by location
tokens (Kosmos-2, PaliGemma), so that saying where an object is becomes copying a word from its token, as
naming it is. Evaluate its places with `verification_gap.py --place-words own`.

`--state-relation` puts the relation the two places make between them and the verdict ("one three , two one ,
below , no"): every relation answer then shows the step from places to relation, where the verdict alone says only
whether it is the asked one.

`--caption-places` gives the detailed training captions the same step: each relation sentence comes after a
sentence of the two objects' places ("one three , two four . the book is left of the pen ."), as grounded
captions carry each object's location (Kosmos-2). The caption benchmarks read a place sentence as text outside the
grammar: it makes no claims. `--list-places` also says where each listed class's first object is ("a purple book
in one three , two lamps in two one"): in reading order the places then rise along the list, a cursor that says
what is listed and where the list ends (the claims' reader skips them; captions may run to 96 tokens).
`--caption-order class|interleaved` lists the captions' classes as `recipe_caption_order.py` does.

`--merged-scenes` trains and evaluates in a world of two scene types of eight classes each (kitchen with office,
street with park; pairs and priors as they are), where an image of up to five objects holds under half of its
scene: a test of whether POPE's adversarial split then finds co-occurring classes to ask about (in the default
world three quarters of its negatives are classes of other scenes; `pope_negatives.py`). `--all-paired` adds
pairs for the six classes without a partner (sign-lamp, tree-bench, phone-clock), so that every class has one.

Takes every option of recipe_seeds.py; its results file records this script's command line.
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


def places_in_captions(listed: bool = False) -> None:
    """Detailed captions (of every split: only the training ones are read) say the two places before each relation
    sentence; `listed`: and the place of each listed class's first object."""
    import dataclasses
    from dataclasses import dataclass, field

    import verification_gap
    from halluscope.world import claims, language

    @dataclass
    class Grounded(language.CaptionParts):
        places: list[tuple[str, str]] = field(default_factory=list)
        phrase_places: list[str] = field(default_factory=list)

        def render(self, style: str = "detailed") -> str:
            if style != "detailed":
                return super().render(style)
            if self.phrase_places:
                words = [f"{p.render()} in {where}" for p, where in zip(self.phrases, self.phrase_places)]
                listed = language.DETAILED_SENTENCE.format(language.join_phrases(words))
            else:
                listed = language.CaptionParts(self.scene_type, self.phrases).render(style)
            steps = [f"{pa} , {pb} . {language.RELATION_SENTENCE.format(*r)}" for (pa, pb), r in
                     zip(self.places, self.relations)]
            return " ".join([listed, *steps])

    parts_of = language.caption_parts

    def grounded(scene, style: str = "detailed"):
        parts = parts_of(scene, style)
        places = [(verification_gap.place(verification_gap.single(scene, a)),
                   verification_gap.place(verification_gap.single(scene, b))) for a, _, b in parts.relations]
        firsts = ([verification_gap.place(language.objects_by_class(scene)[p.cls][0]) for p in parts.phrases]
                  if listed and style == "detailed" else [])
        return Grounded(parts.scene_type, parts.phrases, parts.relations, places, firsts)

    language.caption_parts = grounded
    if listed:
        phrase = claims._phrase
        claims._phrase = lambda chunk: phrase(chunk[:next((i for i, w in enumerate(chunk) if w[0] == "in"),
                                                          len(chunk))])
        request = tasks_world.WorldCHAIR.request
        tasks_world.WorldCHAIR.request = lambda self, sample: dataclasses.replace(request(self, sample),
                                                                                  max_new_tokens=96)


def main() -> None:
    import recipe_caption_order  # siblings: `python studies/X.py` puts studies/ on sys.path
    import verification_gap

    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--place-words", choices=sorted(verification_gap.PLACE_WORDS), default="numbers")
    ap.add_argument("--state-relation", action="store_true")
    ap.add_argument("--caption-places", action="store_true")
    ap.add_argument("--list-places", action="store_true")
    ap.add_argument("--merged-scenes", action="store_true")
    ap.add_argument("--all-paired", action="store_true")
    ap.add_argument("--caption-order", choices=["reading", *recipe_caption_order.ORDERS], default="reading")
    args, rest = ap.parse_known_args()
    if args.merged_scenes:
        merge_scenes()
    if args.all_paired:
        pair_all()
    if args.caption_order != "reading":
        recipe_caption_order.use_caption_order(args.caption_order)
    if args.caption_places or args.list_places:
        places_in_captions(listed=args.list_places)
    verification_gap.use_place_words(args.place_words)
    if args.place_words == "own":
        if "position_targets=True" not in " ".join(rest):
            ap.error("--place-words own makes the place words stage 0's position targets: add "
                     "--train position_targets=True")
        words_as_position_targets()
    verification_gap.reason_relations(World, args.state_relation)
    post_init = tasks_world.WorldQA.__post_init__

    def generate_relations(self) -> None:
        post_init(self)
        if self.kind == "relation":
            self.mode = "generate"

    tasks_world.WorldQA.__post_init__ = generate_relations
    verification_gap.answer_at_length()
    import recipe_seeds

    recipe_seeds.main(rest)


if __name__ == "__main__":
    main()
