"""What every command shares: option aliases, `--NAME-args k=v,...` into configs, the model and world
options, and the one-line errors they raise.

Every bad value ends as `typer.BadParameter` naming its option: click prints it as one line
("Error: Invalid value for '--train-args': unknown key(s) ...") and exits with code 2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import click
import typer
from typer.core import TyperCommand

from .. import kv

# Old and lmms-eval-style names, rewritten to the option they stand for before parsing; `--help` shows
# the canonical names only and lists these below the options. Any `--some_option` is also read as
# `--some-option` (lmms-eval spells options with underscores: --batch_size, --output_path).
OUTPUT_ALIASES = {"--out": "--output", "--output-path": "--output"}


class Command(TyperCommand):
    """A command that accepts `aliases` (alias -> option) and underscores for hyphens in option names."""

    aliases: ClassVar[dict[str, str]] = {}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rename(args, self.aliases))

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        if self.aliases:
            by_option: dict[str, list[str]] = {}
            for alias, option in self.aliases.items():
                by_option.setdefault(option, []).append(alias)
            text = "; ".join(f"{', '.join(a)} for {o}" for o, a in by_option.items())
            formatter.write_paragraph()
            formatter.write_text(f"Also accepted: {text}; and _ for - in any option name (--batch_size).")


def command(*, output: bool = True, **aliases: str) -> type[Command]:
    """A `Command` class for `app.command(cls=command(knobs="--world-args"))`: these aliases (keys are
    option names without the leading dashes, '_' for '-') and, for a command with --output, OUTPUT_ALIASES."""
    table = {**(OUTPUT_ALIASES if output else {}), **{"--" + k.replace("_", "-"): v for k, v in aliases.items()}}
    return type("Command", (Command,), {"aliases": table})


def rename(args: Sequence[str], aliases: dict[str, str]) -> list[str]:
    """`args` with option names normalised ('_' -> '-') and aliases replaced; `--opt=value` too.
    Arguments after a bare `--` are left alone."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + list(args[i:])
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg.partition("=")
            name = "--" + name[2:].replace("_", "-")
            arg = aliases.get(name, name) + eq + value
        out.append(arg)
    return out


def bad(option: str, message: Any) -> typer.BadParameter:
    """The error of a bad value of `option`: its message on one line."""
    text = " ".join(str(message).split()) if "\n" in str(message) else str(message)
    return typer.BadParameter(text.strip() or type(message).__name__, param_hint=f"'{option}'")


# ------------------------------------------------------------------------------ --NAME-args k=v,...
def kv_args(text: str | None, option: str) -> dict[str, str]:
    """The raw `k=v,...` of an option (values still text)."""
    try:
        return kv.parse(text)
    except ValueError as e:
        raise bad(option, e) from e


def config(cls: type, text: str | None, option: str, *, defaults: dict[str, Any] | None = None,
           fixed: dict[str, Any] | None = None):
    """`cls(**fields)` from `option`'s `k=v,...` text, values read as the fields' types.

    `defaults` fill fields the text leaves out; `fixed` are set by other options (`--steps`), so the
    text may not set them too. A config's own check (`__post_init__`) is reported against `option`."""
    raw = kv_args(text, option)
    fixed = dict(fixed or {})
    twice = sorted(set(raw) & set(fixed))
    if twice:
        raise bad(option, f"{', '.join(twice)} is set by its own option too; set it once")
    try:
        values = kv.config_kwargs(cls, raw)
    except ValueError as e:
        raise bad(option, e) from e
    try:
        return cls(**{**(defaults or {}), **fixed, **values})
    except (TypeError, ValueError) as e:
        raise bad(option, e) from e


def world(text: str | None, seed: int, option: str = "--world-args"):
    """The world with `option`'s knobs (WorldConfig fields) and `seed`."""
    from ..world import World, WorldConfig

    raw = kv_args(text, option)
    try:
        return World(seed=seed, **kv.config_kwargs(WorldConfig, raw))
    except (TypeError, ValueError) as e:
        raise bad(option, e) from e


# ------------------------------------------------------------------------------------ --model
MODEL, MODEL_HELP = "tiny|DIR|HUB_ID", "'tiny' (the built-in model), a local model folder, or a hub id"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def check_model(value: str, option: str = "--model") -> str:
    """'tiny', an existing model folder (with config.json) or something shaped like a hub id (org/name)."""
    if value == "tiny":
        return value
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise bad(option, f"{value!r} is a file; pass a model folder (with config.json), 'tiny' or a hub id")
        if not (path / "config.json").exists():
            raise bad(option, f"the folder {value!r} holds no config.json; pass a folder written by "
                              "save_pretrained (or `halluscope train`), 'tiny' or a hub id")
        return str(path)
    if _HUB_ID.match(value) and not value.startswith("."):
        return value
    raise bad(option, f"the folder {value!r} does not exist; pass a model folder, 'tiny' or a hub id (org/name)")


def model_option(value: str) -> str:
    """--model's callback (a callback takes the value alone)."""
    return check_model(value)


def load(model: str, option: str = "--model", **kwargs: Any):
    """`load_model(model, **kwargs)`, a model that does not load reported against `option`.
    The built-in model's errors are its training's and are raised as they are."""
    from ..zoo import load_model

    if model == "tiny":
        return load_model(model, **kwargs)
    try:
        return load_model(model, **kwargs)
    except (OSError, ValueError) as e:
        raise bad(option, str(e).splitlines()[0] if str(e) else repr(e)) from e


MODEL_ARGS = ("pretrained", "device", "dtype", "yes_no_suffix", "attn_implementation", "device_map", "revision",
              "trust_remote_code", "load_in_4bit")
DTYPES = ("auto", "float32", "float16", "bfloat16")
ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
BOOLEAN_ARGS = ("trust_remote_code", "load_in_4bit")


def model_args(text: str | None, option: str = "--model-args") -> dict[str, Any]:
    """load_model's keyword arguments from lmms-eval-style `pretrained=DIR,device=cuda,dtype=bfloat16`
    (also device_map=auto, attn_implementation=sdpa, revision=REV, trust_remote_code=true, load_in_4bit=true)."""
    raw = kv_args(text, option)
    unknown = sorted(set(raw) - set(MODEL_ARGS))
    if unknown:
        raise bad(option, f"unknown key(s) {', '.join(unknown)}; use {', '.join(MODEL_ARGS)}")
    out: dict[str, Any] = dict(raw)
    for key in BOOLEAN_ARGS:
        if key in out:
            try:
                out[key] = kv.read(out[key], bool, key)
            except ValueError as e:
                raise bad(option, e) from e
    if out.get("attn_implementation", ATTENTION[0]) not in ATTENTION:
        raise bad(option, f"attn_implementation={out['attn_implementation']!r} is not one of {', '.join(ATTENTION)}")
    if out.get("load_in_4bit"):
        from transformers.utils import is_bitsandbytes_available

        if not is_bitsandbytes_available():
            raise bad(option, "load_in_4bit=true needs bitsandbytes and a CUDA GPU: pip install bitsandbytes")
    if "dtype" in out:
        if out["dtype"] not in DTYPES:
            raise bad(option, f"dtype={out['dtype']!r} is not one of {', '.join(DTYPES)}")
        if out["dtype"] != "auto":
            import torch

            out["dtype"] = getattr(torch, out["dtype"])
    if "device" in out:
        import torch

        try:
            torch.device(out["device"])
        except (RuntimeError, ValueError) as e:
            raise bad(option, f"device={out['device']!r} is not a torch device (cpu, cuda, cuda:1, mps)") from e
    if "yes_no_suffix" in out:
        out["yes_no_suffix"] = kv.read(out["yes_no_suffix"], str)
    return out


# ------------------------------------------------------------------------------ choices from registries
def choice(value: str, names: Sequence[str], what: str) -> str:
    if value not in names:
        raise typer.BadParameter(f"{value!r} is not {what}; use one of {', '.join(names)}")
    return value


def method_list(value: str) -> list[str]:
    """--methods a,b,...: each a method the comparison knows (see `halluscope.compare.arm`)."""
    from ..compare import arm

    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise typer.BadParameter("empty; pass method names separated by commas, e.g. greedy,vcd,m3id")
    for name in names:
        try:
            arm(name)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from e
    return names


def output_folder(value: Path | None) -> Path | None:
    """--output: a folder, created when needed; a file of that name is an error."""
    if value is not None and value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{str(value)!r} is a file; pass a folder (it is created if missing)")
    return value


def positive_number(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value} is not > 0")
    return value


__all__ = ["Command", "bad", "check_model", "choice", "command", "config", "kv_args", "load", "method_list",
           "model_args", "model_option", "output_folder", "positive_number", "rename", "world"]
