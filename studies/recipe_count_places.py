"""Probe: `recipe_seeds.py` with count answers that do not point before they count, as they were until grammar 3.

Since grammar 3 (`language.GRAMMAR_VERSION`) the library trains count answers that say where each object of the
class is before the number: "How many lamps are there?" -> "two three , four one , two"; "Is there one lamp?" ->
"two three , one , yes" (`language.count_answer`), and world-qa generates count answers and reads their last
number or their verdict. The grammar 2 model read a lone lamp, bench or clock (count prior: twos) as two about
four times in five, openly and in yes/no questions alike; relations had the same look until their answers said
both places first. This script takes the pointing away again (open count answers: the number; yes/no: the
verdict), for its own run only, so its models must go to their own --out folder:

    python studies/recipe_count_places.py --out runs/i19/count_number --seeds 0

Runs before grammar 3 added the pointing instead (commits up to 6667908; their results name their commit).
Takes every option of recipe_seeds.py; its results file records this script's command line.
"""

from __future__ import annotations

import sys

from halluscope import World


def count_without_pointing() -> None:
    """Training count answers say the number (open) or the verdict (yes/no) alone."""
    question = World.question

    def patched(self, scene, qtype, rng):
        q = question(self, scene, qtype, rng)
        if qtype not in ("count", "count_yes_no") or q is None:
            return q
        return q | {"answer": q["answer"].rsplit(" , ", 1)[-1]}

    World.question = patched


def main() -> None:
    count_without_pointing()
    import recipe_seeds  # a sibling: `python studies/X.py` puts studies/ on sys.path

    recipe_seeds.main(sys.argv[1:])


if __name__ == "__main__":
    main()
