"""Probe: `recipe_seeds.py` with count answers that point before they count: "How many lamps are there?" ->
"two three , four one , two" (the place of each lamp, then the number); "Is there one lamp?" -> "two three ,
one , yes" (the places, the number, the verdict).

The default model reads a lone lamp, bench or clock (count prior: twos) as two about four times in five, openly
and in yes/no questions alike, so count yes/no stays at 75-82 %. Relations had the same look: the model
answered by the pair's prior until its answers said both places first, after which it related the places it had
written (`recipe_relation_places.py`, docs/studies/tiny-recipe.md). Counting is the same kind of step, from
several patches to one word; this asks whether saying where each object of the class is, one place at a time,
lets the model count what it pointed at. Training answers change (train split only); world-qa generates its
count yes/no answers (as it does relations) and its open count answers to 16 tokens, reading the number as
the answer's last number word, for this run only, so its models must go to their own --out folder.

    python studies/recipe_count_places.py --out runs/i19/count_places --seeds 0

Takes every option of recipe_seeds.py; its results file records this script's command line.
"""

from __future__ import annotations

import sys

from halluscope import World
from halluscope.tasks import world as tasks_world
from halluscope.world import NUMBERS, PLURALS, language, tokenize_words


def pointed(scene, cls: str) -> str:
    """The places of every object of `cls`, in reading order ("two three , four one"), or "" for none."""
    objs = sorted((o for o in scene.objects if o.cls == cls), key=lambda o: (o.row, o.col))
    return " , ".join(language.place(o) for o in objs)


def asked_class(question: str) -> str:
    """The class a count question asks about: "How many lamps are there?", "Is there one lamp?", "Are there two
    lamps?"."""
    singular = {p: c for c, p in PLURALS.items()}
    words = tokenize_words(question)
    noun = words[2] if words[0] == "how" else words[-2]
    return singular.get(noun, noun)


def count_by_pointing() -> None:
    """Training count answers (open and yes/no) say the places first; world-qa reads the generated answers."""
    question = World.question

    def patched(self, scene, qtype, rng):
        q = question(self, scene, qtype, rng)
        if qtype not in ("count", "count_yes_no") or scene.split != "train" or q is None:
            return q
        cls = asked_class(q["question"])
        places = pointed(scene, cls)
        n = NUMBERS[scene.counts().get(cls, 0)]
        steps = [places] if places else []
        steps += [n] if qtype == "count" else [n, q["answer"]]
        return q | {"answer": " , ".join(steps)}

    World.question = patched

    request = tasks_world.WorldQA.request

    def generated(self, sample):
        if self.kind == "count":
            if sample["form"] == "yes_no":
                return tasks_world.yes_no(sample["text"], "generate")
            return tasks_world.generate(sample["text"], 16)
        return request(self, sample)

    tasks_world.WorldQA.request = generated
    parse = tasks_world.parse_open_answer

    def last_number(kind: str, text: str) -> str:
        if kind != "count":
            return parse(kind, text)
        numbers = [w for w in tokenize_words(text) if w in NUMBERS]
        return numbers[-1] if numbers else ""

    tasks_world.parse_open_answer = last_number


def main() -> None:
    count_by_pointing()
    import recipe_seeds  # a sibling: `python studies/X.py` puts studies/ on sys.path

    recipe_seeds.main(sys.argv[1:])


if __name__ == "__main__":
    main()
