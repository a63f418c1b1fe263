"""The command line: every command runs end to end on micro settings, every old or lmms-eval-style name
still works, and bad input ends in one line that names the option (exit code 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from halluscope import World
from halluscope.cli import app, parse_kv

from micro_eval import micro_adapter


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: str):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Path:
    """The micro random built-in model, saved as a model folder."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("micro")
    adapter = micro_adapter(World(seed=0))
    adapter.model.save_pretrained(folder)
    adapter.processor.save_pretrained(folder)
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh cache for the built-in model, so a run never reuses or overwrites the real one."""
    monkeypatch.setenv("HALLUSCOPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# A built-in model trained for 2 steps without stage 0: seconds, and every stage's code runs.
TINY_TRAIN = "steps=2,batch_size=2,vision_pretrain_steps=0,warmup_steps=1,checkpoint_every=1,log_every=1"


# ------------------------------------------------------------------------------------- every command
def test_help_of_every_command():
    for command in ([], ["demo"], ["train"], ["align"], ["eval"], ["world"], ["world", "sample"], ["steer"],
                    ["steer", "fit"], ["steer", "show"]):
        result = ok(*command, "--help")
        assert "Usage:" in result.output and "Traceback" not in result.output
    assert ok("--version").output.startswith("halluscope ")


def test_world_sample_with_old_names(tmp_path):
    ok("world", "sample", "--out", tmp_path / "a", "--n", "2", "--knobs", "noise_max=0", "--seed", "3")
    lines = (tmp_path / "a" / "truth.jsonl").read_text().splitlines()
    assert len(lines) == 2 and len(list((tmp_path / "a").glob("*.png"))) == 2
    ok("world", "sample", "--output_path", tmp_path / "b", "--n", "2", "--world-args", "noise_max=0",
       "--world-seed", "3")
    assert (tmp_path / "b" / "truth.jsonl").read_text().splitlines() == lines


def test_eval_several_tasks_into_their_folders(micro, tmp_path):
    out = tmp_path / "out"
    result = ok("eval", "--model", micro, "--tasks", "world-pope:random,world-chair", "--n-images", "2",
                "--batch-size", "8", "--method", "vcd", "--method-args", "alpha=1,beta=0.1", "--output", out)
    assert '"benchmark": "world-pope:random"' in result.output and '"benchmark": "world-chair"' in result.output
    assert len((out / "world-pope_random" / "world-pope_random.jsonl").read_text().splitlines()) == 12
    assert len((out / "world-chair" / "world-chair.jsonl").read_text().splitlines()) == 2
    summary = json.loads((out / "results.json").read_text())
    assert set(summary) >= {"results", "configs", "versions", "n-samples"}
    assert summary["n-samples"]["world-pope:random"] == {"original": 12, "effective": 12}
    assert 0 <= summary["results"]["world-pope:random"]["accuracy,none"] <= 1
    assert "chair_i,none" in summary["results"]["world-chair"]
    assert summary["configs"]["world-chair"]["method_args"] == {"alpha": 1, "beta": 0.1}


def test_eval_lmms_eval_spellings(micro, tmp_path):
    """--benchmark, --output_path, --gen_kwargs, --batch_size, --model_args pretrained=: the same run."""
    a = ok("eval", "--model", micro, "--tasks", "world-pope:random", "--n-images", "2", "--method", "vcd",
           "--method-args", "alpha=0.5", "--output", tmp_path / "a", "--batch-size", "6")
    b = ok("eval", "--model_args", f"pretrained={micro},device=cpu,dtype=float32", "--benchmark", "world-pope:random",
           "--n_images", "2", "--method", "vcd", "--gen_kwargs", "alpha=0.5", "--output_path", tmp_path / "b",
           "--batch_size", "6")
    assert a.output[a.output.index("{"):] == b.output[b.output.index("{"):]  # the metrics, after load bars
    assert (tmp_path / "b" / "world-pope_random" / "world-pope_random.jsonl").read_text() == \
        (tmp_path / "a" / "world-pope_random" / "world-pope_random.jsonl").read_text()
    # the loading options are recorded with the run, trust_remote_code off unless asked for
    config = json.loads((tmp_path / "b" / "world-pope_random" / "world-pope_random.results.json").read_text())["config"]
    assert config["load_args"]["dtype"] == "float32" and config["load_args"]["trust_remote_code"] is False


def test_demo_on_a_model_folder(micro, tmp_path):
    out = tmp_path / "demo"
    ok("demo", "--model", micro, "--pope-images", "2", "--chair-images", "2", "--method-pope-images", "2",
       "--method-chair-images", "2", "--qa-images", "2", "--methods", "greedy,vcd", "--batch-size", "8",
       "--output", out)
    summary = json.loads((out / "results.json").read_text())
    # the four checks of objects, then those of the other kinds (report.kind_checks)
    assert len(summary["checks"]) == 11 and summary["header"]["model"] == str(micro)
    assert [row["kind"] for row in summary["kinds"]] == ["object", "attribute", "count", "relation"]
    assert "Each kind of hallucination" in (out / "report.md").read_text()
    assert (out / "report.md").exists() and (out / "greedy" / "world-pope_adversarial.jsonl").exists()
    assert set(summary["comparison"]) == {"greedy", "sample", "vcd"}  # the baselines always run


def test_demo_and_train_build_the_same_built_in_model(cache, tmp_path):
    """`demo --train-args` trains the built-in model into the cache (the recipe decides the folder);
    `train` with the same recipe writes the same weights."""
    ok("demo", "--train-args", TINY_TRAIN, "--pope-images", "2", "--chair-images", "1", "--output", tmp_path / "d")
    (cached,) = cache.glob("tiny-*")
    assert (cached / "halluscope.json").exists()
    trained = tmp_path / "t"
    ok("train", "--steps", "2", "--batch-size", "2", "--train-args", TINY_TRAIN.replace("steps=2,batch_size=2,", ""),
       "--output", trained)
    from safetensors.torch import load_file

    a, b = load_file(cached / "model.safetensors"), load_file(trained / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_hacl(cache, tmp_path):
    ok("train", "--hacl", "--hacl-args", "steps=1,batch_size=2,checkpoint_every=1,log_every=1",
       "--train-args", TINY_TRAIN, "--out", tmp_path / "h")
    assert (tmp_path / "h" / "config.json").exists()


def test_align(micro, tmp_path):
    out = tmp_path / "aligned"
    ok("align", "--model", micro, "--method", "dpo", "--out", out, "--args",
       "steps=1,batch_size=2,n_pairs=2,max_new_tokens=6,generation_batch_size=2,lr=1e-4,checkpoint_every=1,log_every=1")
    log = json.loads((out / "align_log.json").read_text())
    assert log["method"] == "dpo" and (out / "config.json").exists()


def test_steer_fit_and_show(micro, tmp_path):
    out = tmp_path / "d.safetensors"
    ok("steer", "fit", "--model", micro, "--output", out, "--device", "cpu", "--n-images", "3", "--trials", "2",
       "--method", "mean")
    shown = ok("steer", "show", out)
    assert json.loads(shown.output)["n_images"] == 3


# ------------------------------------------------------------------------------------- bad input
BAD = [
    # (arguments, the option the one-line error must name)
    (["eval", "--method", "vdc"], "--method"),
    (["eval", "--tasks", "popex"], "--tasks"),
    (["eval", "--tasks", "pope"], "--tasks"),
    (["eval", "--tasks", "mme:weather"], "--tasks"),
    (["eval", "--tasks", "world-chair:x"], "--tasks"),
    (["eval", "--tasks", "pope_adv,pope:adversarial"], "--tasks"),
    (["eval", "--tasks", ","], "--tasks"),
    (["eval", "--method-args", "alpha"], "--method-args"),
    (["eval", "--method", "vcd", "--method-args", "alpah=1"], "--method-args"),
    (["eval", "--method", "vcd", "--method-args", "beta=2"], "--method-args"),
    (["eval", "--method", "vcd", "--method-args", "alpha=abc"], "--method-args"),
    (["eval", "--method", "vti"], "--method-args"),
    (["eval", "--batch-size", "0"], "--batch-size"),
    (["eval", "--limit", "-1"], "--limit"),
    (["eval", "--n-images", "0"], "--n-images"),
    (["eval", "--images", "/no/such/folder"], "--images"),
    (["eval", "--data", "/no/such/file.json"], "--data"),
    (["eval", "--tasks", "pope:random", "--n-images", "1"], "--images"),
    (["eval", "--model", "/no/such/model"], "--model"),
    (["eval", "--model", "./relative/missing"], "--model"),
    (["eval", "--model", "FILE"], "--model"),
    (["eval", "--model", "EMPTY"], "--model"),
    (["eval", "--model-args", "foo=1"], "--model-args"),
    (["eval", "--model-args", "dtype=float8"], "--model-args"),
    (["eval", "--model-args", "device=gpu0"], "--model-args"),
    (["eval", "--model-args", "pretrained=/no/such/model"], "--model-args"),
    (["eval", "--pope-mode", "maybe"], "--pope-mode"),
    (["eval", "--output", "FILE"], "--output"),
    (["eval", "--no-such-option"], "--no-such-option"),
    (["train", "--steps", "0"], "--steps"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--batch-size", "x"], "--batch-size"),
    (["train", "--train-args", "stepz=1"], "--train-args"),
    (["train", "--train-args", "steps=abc"], "--train-args"),
    (["train", "--train-args", "lr=-1"], "--train-args"),
    (["train", "--train-args", "steps=1,steps=2"], "--train-args"),
    (["train", "--steps", "5", "--train-args", "steps=6"], "--train-args"),
    (["train", "--world-args", "yes_bias=2"], "--world-args"),
    (["train", "--knobs", "colour=red"], "--world-args"),
    (["train", "--hacl-args", "steps=1"], "--hacl-args"),
    (["train", "--hacl", "--hacl-args", "temperature=-1"], "--hacl-args"),
    (["train", "--output", "FILE"], "--output"),
    (["align", "--method", "dpo"], "--output"),
    (["align", "--output", "OUT", "--method", "ppo"], "--method"),
    (["align", "--output", "OUT", "--align-args", "gamma=0"], "--align-args"),
    (["align", "--output", "OUT", "--args", "lora_dropout=x"], "--align-args"),
    (["align", "--output", "OUT", "--model", "/no/such/model"], "--model"),
    (["world", "sample", "--split", "dev"], "--split"),
    (["world", "sample", "--n", "0"], "--n"),
    (["world", "sample", "--world-args", "noise_max=abc"], "--world-args"),
    (["steer", "fit", "--method", "svd"], "--method"),
    (["steer", "fit", "--mask-ratio", "1.5"], "--mask-ratio"),
    (["steer", "fit", "--vision-tokens", "all"], "--vision-tokens"),
    (["steer", "fit", "--n-images", "1"], "--n-images"),
    (["steer", "fit", "--device", "gpu0"], "--device"),
    (["steer", "fit", "--output", "OUT"], "--output"),
    (["steer", "show", "/no/such/file.safetensors"], "PATH"),
    (["steer", "show", "FILE"], "PATH"),
    (["demo", "--pope-images", "0"], "--pope-images"),
    (["demo", "--methods", "greedy,nope"], "--methods"),
    (["report", "EMPTY"], "not a run folder"),
    (["report", "NOT_THERE"], "no such folder"),
    (["compare", "EMPTY", "EMPTY"], "not a run folder"),
    (["demo", "--train-args", "steps=0"], "--train-args"),
    (["demo", "--model", "MICRO", "--train-args", "steps=1"], "--train-args"),
    (["demo", "--world-args", "cooccurrence_strength=x"], "--world-args"),
]


@pytest.mark.parametrize("args,option", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_naming_the_option(args, option, micro, tmp_path, monkeypatch):
    monkeypatch.setenv("HALLUSCOPE_CACHE", str(tmp_path / "cache"))  # nothing here may train a model
    (tmp_path / "FILE").write_text("not a model, not a folder")
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "OUT").mkdir()
    places = {"FILE": tmp_path / "FILE", "EMPTY": tmp_path / "EMPTY", "OUT": tmp_path / "OUT", "MICRO": micro}
    result = run(*(places.get(a, a) for a in args))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert option.lower() in errors[0].lower(), errors[0]
    assert len(result.output.splitlines()) <= 4, result.output  # usage, hint, blank line, the error
    assert not (tmp_path / "cache").exists()


def test_bad_keys_list_the_valid_ones():
    result = run("train", "--train-args", "stepz=1")
    assert "steps" in result.output and "batch_size" in result.output and "stepz" in result.output
    result = run("eval", "--method", "vdc")
    assert all(m in result.output for m in ("greedy", "vcd", "vti"))


# ------------------------------------------------------------------------------------- names
def test_help_lists_every_registered_name():
    """The help texts name the registries' entries without importing them (start-up time)."""
    from halluscope.cli import evaluate, steer, train
    from halluscope.decoding import METHODS
    from halluscope.steering.directions import REDUCTIONS
    from halluscope.steering.fit import VISION_TOKENS
    from halluscope.tasks import ALIASES, TASKS
    from halluscope.training.preference import METHODS as ALIGN_METHODS

    assert all(m in evaluate.METHODS_HELP.split(": ")[1].split(", ") for m in METHODS)
    assert all(f"'{m}'" in train.ALIGN_METHODS_HELP for m in ALIGN_METHODS)
    assert steer.REDUCTIONS_HELP.split(", ") == list(REDUCTIONS)
    assert steer.VISION_TOKENS_HELP.split(", ") == list(VISION_TOKENS)
    # without any whitespace: the help wraps long words ("ambe" / "r:{all,...}") at the terminal's width
    help_text = "".join(ok("eval", "--help").output.split())
    assert all(f in help_text for f in TASKS) and all(a in help_text for a in ALIASES)


def test_parse_kv_stays_importable_from_the_cli():
    assert parse_kv("alpha=1,beta=0.1,name=x,layers=[1,2]", "--x") == {"alpha": 1, "beta": 0.1, "name": "x",
                                                                        "layers": [1, 2]}
    import typer

    with pytest.raises(typer.BadParameter, match="not key=value"):
        parse_kv("alpha", "--x")


def test_docs_cli_md_is_the_commands_help():
    """docs/cli.md's "Commands" section is `python docs/make_cli.py`'s output for the current commands."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "docs" / "make_cli.py"
    if not script.exists():
        pytest.skip("no docs/ beside the tests")
    spec = importlib.util.spec_from_file_location("make_cli", script)
    make_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_cli)
    assert make_cli.section() in make_cli.PAGE.read_text(), "docs/cli.md is out of date: run python docs/make_cli.py"


def test_a_folder_of_another_run_is_a_one_line_error(monkeypatch, capsys):
    import halluscope.cli as cli
    from halluscope.runner import OtherRunError

    def refuse():
        raise OtherRunError("out/world-chair.jsonl holds the records of another run (seed was 0, now 1): ...")

    monkeypatch.setattr(cli, "app", refuse)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "Error: out/world-chair.jsonl holds the records of another run (seed was 0, now 1): ..."]
