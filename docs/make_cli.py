"""Write the "Commands" section of docs/cli.md from the commands' own `--help`, so that the page and the
command line cannot disagree.

    python docs/make_cli.py          # rewrite the section between the markers in docs/cli.md
    python docs/make_cli.py --check  # exit 1 if the page is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "cli.md"
START, END = "<!-- commands:start (python docs/make_cli.py) -->", "<!-- commands:end -->"
COMMANDS = [[], ["demo"], ["eval"], ["correct"], ["study"], ["train"], ["align"], ["steer", "fit"], ["steer", "show"],
            ["world", "sample"]]


def help_text(command: list[str]) -> str:
    from typer.testing import CliRunner

    from halluscope.cli import app

    # A fixed width, so that the page does not depend on the terminal it was made in.
    result = CliRunner().invoke(app, [*command, "--help"], prog_name="halluscope", terminal_width=110)
    if result.exit_code != 0:
        raise SystemExit(f"halluscope {' '.join(command)} --help failed:\n{result.output}")
    return result.output.rstrip() + "\n"


def section() -> str:
    parts = []
    for command in COMMANDS:
        name = " ".join(["halluscope", *command])
        parts.append(f"### `{name}`\n\n```text\n{help_text(command)}```\n")
    return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md's commands are out of date")
    args = ap.parse_args()
    page = PAGE.read_text()
    if START not in page:  # first run: the markers take the place of the stub's placeholder line
        page = page.replace("(This section is generated from the commands' `--help` text.)", f"{START}\n{END}")
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{section()}{END}{tail}"
    if args.check:
        sys.exit(0 if new == PAGE.read_text() else f"{PAGE} is out of date: run python docs/make_cli.py")
    PAGE.write_text(new)
    print(f"wrote the commands of {PAGE}")


if __name__ == "__main__":
    main()
