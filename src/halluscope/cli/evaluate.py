"""`halluscope eval`: any model, any decoding or steering method, one or more tasks."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from . import _options as opt
from . import correct as correction

# The help lists decoding.METHODS without importing torch; tests/test_cli.py checks it is complete.
METHODS_HELP = "decoding or steering method: greedy, sample, vcd, icd, m3id, vdgd, vti"


def _tasks_help() -> str:
    from ..tasks import ALIASES, TASKS

    names = ", ".join(spec.pattern(family) for family, spec in TASKS.items())
    return f"comma-separated tasks: {names}; lmms-eval's {', '.join(ALIASES)} also work"


def _tasks(value: str) -> str:
    from ..tasks import resolve

    names = [n for n in (p.strip() for p in value.split(",")) if n]
    if not names:
        raise typer.BadParameter("name at least one task")
    try:
        resolved = [resolve(n) for n in names]
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    twice = sorted({n for n in resolved if resolved.count(n) > 1})
    if twice:
        raise typer.BadParameter(f"{', '.join(twice)} is named twice")
    return ",".join(resolved)


def _method(value: str) -> str:
    from ..decoding import METHODS

    return opt.choice(value, list(METHODS), "a decoding method")


def _pope_mode(value: str) -> str:
    from ..tasks import YES_NO_MODES

    return opt.choice(value, YES_NO_MODES, "a yes/no mode")


def _folder(what: str):
    def check(value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_dir():
            raise typer.BadParameter(f"the folder {value!r} does not exist; pass the folder of {what}")
        return value

    return check


def _file_or_folder(value: str | None) -> str | None:
    if value is not None and not Path(value).expanduser().exists():
        raise typer.BadParameter(f"{value!r} does not exist; pass the task's question or ground-truth file (or folder)")
    return value


def _method_args(method: str, text: str | None, option: str = "--method-args") -> dict[str, Any]:
    """The method's arguments, values read as its config's field types where it has the field
    (other keys, e.g. VTI's base method's, as literals); checked by building the method once."""
    from .. import kv
    from ..decoding import METHODS, get_method

    raw = opt.kv_args(text, option)
    config_cls = METHODS[method].config_cls
    own = {k: v for k, v in raw.items() if k in {f.name for f in fields(config_cls)}}
    try:
        args = {**{k: kv.literal(v) for k, v in raw.items()}, **kv.config_kwargs(config_cls, own)}
        get_method(method, **args)  # fail before loading a model
    except (TypeError, ValueError) as e:
        raise opt.bad(option, e) from e
    return args


def evaluate(
    model: Annotated[str, typer.Option(metavar=opt.MODEL, callback=opt.model_option, help=opt.MODEL_HELP)] = "tiny",
    model_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help=f"load_model arguments: {', '.join(opt.MODEL_ARGS)} (pretrained= is --model), "
             "e.g. device=cuda,dtype=bfloat16")] = None,
    tasks: Annotated[str, typer.Option(callback=_tasks, help=_tasks_help())] = "world-pope:adversarial",
    method: Annotated[str, typer.Option(callback=_method, help=METHODS_HELP)] = "greedy",
    method_args: Annotated[str | None, typer.Option(metavar="K=V,...", help="method arguments, e.g. alpha=1,beta=0.1 "
                                                     "(`halluscope.decoding.method_help(NAME)` lists them)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="samples per forward pass")] = 16,
    output: Annotated[Path, typer.Option(metavar="DIR", callback=opt.output_folder,
                                         help="output folder: OUTPUT/<task>/ per task, and OUTPUT/results.json")
                      ] = Path("halluscope-eval"),
    limit: Annotated[int | None, typer.Option(min=1, help="evaluate only the first K samples of each task")] = None,
    seed: Annotated[int, typer.Option(help="seed for sampling methods")] = 0,
    images: Annotated[str | None, typer.Option(callback=_folder("a real benchmark's images"),
                                               help="folder of a real benchmark's images (COCO val2014, AMBER, MME)")
                      ] = None,
    data: Annotated[str | None, typer.Option(
        callback=_file_or_folder,
        help="a real benchmark's file: POPE questions (default: packaged COCO files), CHAIR ground truth (JSON or "
             "COCO annotations folder), AMBER data folder, MME questions")] = None,
    n_images: Annotated[int, typer.Option(min=1, help="world test images")] = 500,
    pope_mode: Annotated[str, typer.Option(callback=_pope_mode, help="yes/no answers: 'score' (one forward pass) "
                                                                     "or 'generate' (parsed text)")] = "score",
    correct: Annotated[str | None, typer.Option(metavar="PIPELINE[:VALIDATOR]", callback=correction.spec_option,
                                                help=correction.CORRECT_HELP + "; then `halluscope correct` on the "
                                                     "run's caption tasks")] = None,
    correct_args: Annotated[str | None, typer.Option(metavar="K=V,...", help=correction.CORRECT_ARGS_HELP)] = None,
) -> None:
    """Evaluate a model with a method on one or more tasks; one JSON line per sample, resumable.
    Data-parallel with `accelerate launch --num_processes N -m halluscope eval ...` (on a machine
    without GPUs add --multi_gpu, which makes accelerate start N processes; they use gloo)."""
    from ..runner import distributed_state, run_tasks
    from ..tasks import make_task

    load_args = opt.model_args(model_args)
    if "pretrained" in load_args:
        if model != "tiny":
            raise opt.bad("--model-args", "pretrained= and --model name the model twice; keep one")
        model = opt.check_model(load_args.pop("pretrained"), "--model-args")
    args = _method_args(method, method_args)
    correct_config = None
    if correct is not None:
        from ..correction import CAPTION_TASKS

        if not any(n.partition(":")[0] in CAPTION_TASKS for n in tasks.split(",")):
            raise opt.bad("--correct", f"corrects captions: add a caption task ({', '.join(CAPTION_TASKS)}) to --tasks")
        correct_config = correction.correct_config(correct, correct_args)
    elif correct_args is not None:
        raise opt.bad("--correct-args", "set --correct too (e.g. --correct woodpecker:self)")
    built = []
    for name in tasks.split(","):
        try:
            task = make_task(name, images=images, data=data, n_images=n_images, pope_mode=pope_mode)
            task.samples()  # fail on missing data before loading a model
        except (ValueError, FileNotFoundError) as e:
            raise opt.bad("--tasks/--images/--data", f"{name}: {e}") from e
        built.append(task)
    state = distributed_state()
    if state is None:
        adapter = opt.load(model, **load_args)
    else:
        with state.main_process_first():  # the built-in model trains once, on rank 0, then is loaded
            adapter = opt.load(model, **{"device": str(state.device), **load_args})
    results = run_tasks(built, adapter, output, method=method, method_args=args, batch_size=batch_size,
                        limit=limit, seed=seed)
    if state is None or state.is_main_process:
        for name, r in results.items():
            metrics = {k: v for k, v in r["metrics"].items() if not isinstance(v, dict | list)}
            typer.echo(json.dumps({"benchmark": name, "method": method, **metrics}, indent=1))
        if correct is not None:
            correction.run_correction(output, correct, correct_config, adapter, limit)


def register(app: typer.Typer) -> None:
    app.command("eval", cls=opt.command(benchmark="--tasks", gen_kwargs="--method-args"))(evaluate)
