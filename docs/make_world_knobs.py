"""Write the knobs table of docs/world.md from `WorldConfig`'s fields (default and `metadata["help"]`),
so that the page and the code cannot disagree.

    python docs/make_world_knobs.py          # rewrite the table between the markers in docs/world.md
    python docs/make_world_knobs.py --check  # exit 1 if the page is out of date
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "world.md"
START, END = "<!-- knobs:start (python docs/make_world_knobs.py) -->", "<!-- knobs:end -->"


def show(value) -> str:
    """A default as the table shows it: scenes as 'kitchen: fork/knife/...', pairs as 'fork-knife'."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {'/'.join(v) if isinstance(v, tuple | list) else v}" for k, v in value.items())
    if isinstance(value, tuple | list):
        return ", ".join("-".join(v) if isinstance(v, tuple | list) else str(v) for v in value)
    return str(value)


def table() -> str:
    from halluscope.world import WorldConfig

    defaults = WorldConfig()
    lines = ["| knob | default | what it does |", "|---|---|---|"]
    for f in dataclasses.fields(WorldConfig):
        lines.append(f"| `{f.name}` | {show(getattr(defaults, f.name))} | {f.metadata.get('help', '')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/world.md's table is out of date")
    args = ap.parse_args()
    page = PAGE.read_text()
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table()}\n{END}{tail}"
    if args.check:
        sys.exit(0 if new == page else f"{PAGE} is out of date: run python docs/make_world_knobs.py")
    PAGE.write_text(new)
    print(f"wrote the knobs table of {PAGE}")


if __name__ == "__main__":
    main()
