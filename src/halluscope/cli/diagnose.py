"""`halluscope diagnose`: why does this model hallucinate? Every analysis of `halluscope.diagnose`, into one folder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from . import _options as opt

BASE_HELP = ("text-only base LM for the base-rank analysis: a causal LM folder or hub id; 'builtin' (the built-in "
             "base LM, trained on the world's text and cached; default for the built-in model); 'self' (the VLM "
             "without its image; default for other models)")
REAL_TASKS = ("pope", "chair")


def _tasks(value: str | None) -> list[str] | None:
    """'world' (the default for the built-in model) or real tasks: pope:{random,popular,adversarial}, chair."""
    if value is None:
        return None
    from ..tasks import resolve

    names = [n.strip() for n in value.split(",") if n.strip()]
    if names == ["world"]:
        return names
    out = []
    for n in names:
        try:
            name = resolve(n)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from e
        if name.partition(":")[0] not in REAL_TASKS:
            raise typer.BadParameter(f"{name!r} cannot be diagnosed; use 'world', or real tasks among "
                                     "pope:{random,popular,adversarial} and chair")
        out.append(name)
    return out


def _data(text: str | None, tasks: list[str]) -> dict[str, str | None]:
    """--data: one path for every task, or TASK=PATH pairs (pope=q.json,chair=gt.json)."""
    if text is None:
        return {}
    if "=" not in text:
        return {t: text for t in tasks}
    raw = opt.kv_args(text, "--data")
    out = {}
    for key, path in raw.items():
        match = [t for t in tasks if t == key or t.partition(":")[0] == key]
        if not match:
            raise opt.bad("--data", f"{key!r} names none of the tasks {', '.join(tasks)}")
        if not Path(path).expanduser().exists():
            raise opt.bad("--data", f"{path!r} does not exist")
        out |= {t: path for t in match}
    return out


def _scenes(path: Path | None) -> tuple[dict[str, list[str]] | None, dict[str, str] | None]:
    """--scenes FILE: {"scenes": {scene: [objects]}, "images": {image_id: scene}} or just {scene: [objects]}."""
    if path is None:
        return None, None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise opt.bad("--scenes", f"{path}: {e}") from e
    if not isinstance(data, dict):
        raise opt.bad("--scenes", "use a JSON object {scene: [objects]} or {'scenes': ..., 'images': ...}")
    if "scenes" in data:
        return data["scenes"], {str(k): v for k, v in data.get("images", {}).items()}
    return data, None


def diagnose(
    model: Annotated[str, typer.Option(metavar=opt.MODEL, callback=opt.model_option, help=opt.MODEL_HELP)] = "tiny",
    model_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help=f"load_model arguments: {', '.join(opt.MODEL_ARGS)}")] = None,
    base_model: Annotated[str | None, typer.Option(metavar="builtin|self|DIR|HUB_ID", help=BASE_HELP)] = None,
    tasks: Annotated[str | None, typer.Option(callback=_tasks, metavar="world|TASK,...",
        help="'world' (the built-in world: default without --images) or real benchmark tasks: "
             "pope:{random,popular,adversarial} (language prior) and chair (every caption analysis)")] = None,
    images: Annotated[str | None, typer.Option(metavar="DIR", help="folder of the real benchmark's images")] = None,
    data: Annotated[str | None, typer.Option(metavar="PATH|TASK=PATH,...",
        help="the real tasks' files: POPE questions (default: packaged COCO files), CHAIR ground truth (JSON or "
             "COCO annotations folder); one path for all, or pope=FILE,chair=FILE")] = None,
    scenes: Annotated[Path | None, typer.Option(metavar="FILE",
        help="real data: scene types for over-generalization, {scene: [objects]} (and 'images': {id: scene}); "
             "default: clusters of the ground truth's co-occurrences")] = None,
    limit: Annotated[int | None, typer.Option(min=1, metavar="N",
                                              help="at most this many images (or captions) per analysis")] = None,
    diagnose_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help="DiagnoseConfig fields: n_captions, n_pope_images, n_stability, n_gap, n_attention, trials, "
             "mask_ratio, n_train, neighbours, batch_size, max_new_tokens, seed")] = None,
    world_args: Annotated[str | None, typer.Option(metavar="K=V,...", help="world knobs (WorldConfig fields)")
                          ] = None,
    seed: Annotated[int, typer.Option(help="world seed")] = 0,
    threads: Annotated[int | None, typer.Option(min=1, metavar="N", help="torch CPU threads (default: 1 for the "
                                                "built-in model on CPU, where one is fastest; else torch's)")] = None,
    output: Annotated[Path, typer.Option(metavar="DIR", callback=opt.output_folder,
        help="output folder: diagnosis.json, one PNG per analysis, diagnosis.md, diagnosis.html")
                      ] = Path("halluscope-diagnosis"),
) -> None:
    """Why does this model hallucinate? The papers' analyses (hallucination kinds, RLHF-V's over-generalization,
    position, VDGD's base rank and logit elbow, VTI's feature stability, HACL's modality gap, VCD's language
    prior, attention to the image), on the world for the built-in model or on real benchmark files."""
    from ..diagnose import DiagnoseConfig, TextLMScorer, VLMScorer, builtin_base_lm, diagnose_real, diagnose_world
    from ..diagnose.run import write_diagnosis
    from ..models import is_builtin
    from ..report.diagnosis import write_diagnosis_html
    from ..tasks import make_task

    load_args = opt.model_args(model_args)
    config = opt.config(DiagnoseConfig, diagnose_args, "--diagnose-args")
    world = opt.world(world_args, seed)
    real = tasks is not None and tasks != ["world"]
    if tasks is None and images is not None:
        raise opt.bad("--tasks", "with --images, name the real tasks to read (e.g. pope:adversarial,chair)")
    built = []
    if real:
        paths = _data(data, tasks)
        for name in tasks:
            try:
                task = make_task(name, images=images, data=paths.get(name))
                task.samples()  # fail on missing data before loading a model
            except (ValueError, FileNotFoundError) as e:
                raise opt.bad("--tasks/--images/--data", f"{name}: {e}") from e
            if name == "chair":
                task.parity = False  # NLTK-free object extraction; the scorer's words, no downloaded data
            built.append(task)
    scene_map, image_scenes = _scenes(scenes)
    t0 = time.time()
    adapter = opt.load(model, **load_args)
    builtin = model == "tiny" or is_builtin(model)
    if threads is not None or (builtin and adapter.device.type == "cpu"):
        import torch

        torch.set_num_threads(threads or 1)
    base = base_model or ("builtin" if builtin else "self")
    if base == "builtin":
        scorer: Any = TextLMScorer.load(builtin_base_lm(world), device=str(adapter.device))
        scorer.name = "built-in base LM (the world's text, no images)"
    elif base == "self":
        scorer = VLMScorer(adapter, image=False)
    else:
        try:
            scorer = TextLMScorer.load(opt.check_model(base, "--base-model"), device=str(adapter.device))
        except (OSError, ValueError) as e:
            raise opt.bad("--base-model", str(e).splitlines()[0]) from e
    timings: dict[str, float] = {}
    if real:
        result = diagnose_real(adapter, built, scorer, config, limit, scene_map, image_scenes, timings=timings)
    else:
        result = diagnose_world(adapter, world, scorer, config, limit, timings=timings)
    meta = {"model": adapter.name, "base": scorer.name, "data": ",".join(tasks) if real else "world",
            "world_seed": None if real else world.seed, "limit": limit, "config": config.to_dict(),
            "seconds": round(time.time() - t0, 1), "timings": timings, "versions": _versions(),
            "cpu": _cpu()}
    write_diagnosis(result, output, meta)
    write_diagnosis_html(output)
    typer.echo(f"wrote {output}/diagnosis.json, diagnosis.md, diagnosis.html and {len(list(output.glob('*.png')))} "
               f"plots in {meta['seconds']} s")


def _versions() -> dict[str, Any]:
    from ..runner import package_versions

    return package_versions()


def _cpu() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def register(app: typer.Typer) -> None:
    app.command(cls=opt.command())(diagnose)
