"""The `halluscope` command line: one module per command group, shared options in `_options.py`.

Commands import what they run inside their functions, so `halluscope --help` loads no torch.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .. import kv
from . import correct, demo, diagnose, evaluate, report, steer, study, train, world

# Plain click output (rich_markup_mode=None): an error is one "Error: ..." line, not a boxed panel
# that wraps a long message over several lines.
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 120}

app = typer.Typer(help="Diagnose, measure and reduce hallucination in vision-language models.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None, context_settings=CONTEXT)
demo.register(app)
train.register(app)
evaluate.register(app)
correct.register(app)
report.register(app)
diagnose.register(app)
study.register(app)
app.add_typer(world.app, name="world")
app.add_typer(steer.app, name="steer")


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"halluscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """Diagnose, measure and reduce hallucination in vision-language models."""


def parse_kv(text: str | None, what: str) -> dict[str, Any]:
    """'alpha=1,beta=0.1,name=x' -> {'alpha': 1, 'beta': 0.1, 'name': 'x'} (see `halluscope.kv`);
    a malformed list is a `typer.BadParameter` naming `what`."""
    try:
        return kv.parse_kv(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=what) from e


def main() -> None:
    from ..runner import OtherRunError

    try:
        app()
    except OtherRunError as e:  # the user's folder, not a bug: no traceback
        typer.echo(f"Error: {e}", err=True)
        raise SystemExit(2) from None


__all__ = ["app", "main", "parse_kv"]

if __name__ == "__main__":
    main()
