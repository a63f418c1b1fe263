"""lmms-eval's `--model halluscope` (halluscope.integrations.lmms_eval) on a tiny random LLaVA.

lmms-eval's requests are fed the way its evaluator feeds them: `Instance`s whose `args` are
(context, gen_kwargs, doc_to_visual, doc_id, task, split), with the documents in `lm.task_dict`.
Where lmms-eval is installed its own `Instance`, base class and model registry are used; elsewhere a
stand-in of the same shape drives `HalluscopeModel` (the class without lmms-eval's base), and the
tests of the real registration skip, saying so.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import pytest
import torch

from halluscope.integrations import lmms_eval_manifest
from halluscope.integrations.lmms_eval import (LMMS_EVAL_MISSING, Halluscope, HalluscopeModel, method_args,
                                               truncate)
from tiny_vlms import BUILDERS, PROMPTS

HAVE_LMMS_EVAL = LMMS_EVAL_MISSING is None
NEEDS_LMMS_EVAL = pytest.mark.skipif(not HAVE_LMMS_EVAL, reason=f"lmms-eval is not usable here: {LMMS_EVAL_MISSING}")
TASK, SPLIT = "fake_pope", "test"
N_TOKENS = 6

if HAVE_LMMS_EVAL:
    from lmms_eval.api.instance import Instance
else:

    @dataclass
    class Instance:
        """lmms-eval's `lmms_eval.api.instance.Instance`, as far as a model sees it."""

        request_type: str
        arguments: tuple
        idx: int
        metadata: dict = field(default_factory=dict)

        @property
        def args(self) -> tuple:
            return self.arguments if isinstance(self.arguments, tuple) else (self.arguments,)


MODEL_CLS = Halluscope if HAVE_LMMS_EVAL else HalluscopeModel


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    """(folder, facts) of the tiny random LLaVA of tests/tiny_vlms.py, saved once."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("llava")
    facts = BUILDERS["llava"](folder)
    yield str(folder), facts
    torch.set_num_threads(threads)


def docs(facts) -> list[dict]:
    """Three documents: the two test images, the first twice, and prompts of different lengths."""
    images = [facts["images"][0], facts["images"][1], facts["images"][0]]
    questions = [PROMPTS[0], PROMPTS[1], "Is there a red cup?"]
    return [{"image": im, "question": q} for im, q in zip(images, questions)]


def doc_to_visual(doc):
    return [doc["image"]]


def requests(n: int, gen_kwargs: dict, contexts=None) -> list:
    contexts = contexts or [None] * n
    return [Instance("generate_until", (ctx or f"q{i}", dict(gen_kwargs), doc_to_visual, i, TASK, SPLIT), idx=0,
                     metadata={"task": TASK, "doc_id": i, "repeats": 1}) for i, ctx in enumerate(contexts)]


def model(folder, facts, **model_args):
    lm = MODEL_CLS(pretrained=folder, device="cpu", progress=False, **model_args)
    lm.task_dict = {TASK: {SPLIT: docs(facts)}}
    return lm


def ask(lm, gen_kwargs: dict) -> list[str]:
    questions = [d["question"] for d in lm.task_dict[TASK][SPLIT]]
    return lm.generate_until(requests(len(questions), gen_kwargs, questions))


GEN = {"max_new_tokens": N_TOKENS, "temperature": 0, "top_p": 1.0, "num_beams": 1, "do_sample": False}


@pytest.mark.parametrize("method, args", [("greedy", {}), ("vcd", {"alpha": 1, "beta": 0.1, "noise_step": 500})])
def test_generate_until_equals_adapter_generate(llava, method, args):
    folder, facts = llava
    lm = model(folder, facts, method=method, batch_size=3, **args)
    d = docs(facts)
    expected = lm.adapter.generate([x["image"] for x in d], [x["question"] for x in d], method=method,
                                   max_new_tokens=N_TOKENS, **args)
    assert ask(lm, GEN) == expected
    # batched one by one, in lmms-eval's order: the same answers
    lm.batch_size_per_gpu = 1
    assert ask(lm, GEN) == expected


def test_until_truncates(llava):
    folder, facts = llava
    lm = model(folder, facts, batch_size=3)
    full = ask(lm, GEN)
    long = max(full, key=len)
    assert len(long) >= 2, f"the tiny model answered too little to cut: {full}"
    stop = long[len(long) // 2:len(long) // 2 + 1]
    cut = ask(lm, {**GEN, "until": [stop, "\n\n"]})
    assert cut == [truncate(t, [stop]) for t in full]
    assert cut[full.index(long)] == long.split(stop, 1)[0] != long
    assert ask(lm, {**GEN, "until": stop}) == cut  # one string, as some tasks give it


def test_task_sampling_settings_reach_the_method(llava):
    folder, facts = llava
    lm = model(folder, facts, method="vcd", batch_size=3, seed=0)
    n, args, until = lm.generation({**GEN, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "until": ["."]})
    assert (n, until) == (N_TOKENS, ["."])
    assert args == {"seed": 0, "sample": True, "temperature": 0.7, "top_p": 0.9}
    d = docs(facts)
    sampled = lm.adapter.generate([x["image"] for x in d], [x["question"] for x in d], method="vcd",
                                  max_new_tokens=N_TOKENS, **args)
    assert ask(lm, {**GEN, "do_sample": True, "temperature": 0.7, "top_p": 0.9}) == sampled
    # the method's own sample= (from model_args) wins over the task's
    assert model(folder, facts, method="vcd", sample=False).generation({**GEN, "temperature": 0.7})[1] == {
        "sample": False}
    with pytest.warns(UserWarning, match="num_beams=5 is ignored"):
        lm.generation({**GEN, "num_beams": 5})


def test_model_args_are_read_as_the_method_config_reads_them():
    # lmms-eval hands over '1' as 1 and 'true' as True; the config's types decide
    assert method_args("vcd", {"alpha": 1, "beta": 0.25, "noise_step": 500, "sample": "true"}) == {
        "alpha": 1.0, "beta": 0.25, "noise_step": 500, "sample": True}
    assert method_args("greedy", {}) == {}


@pytest.mark.parametrize("model_args, message", [
    ({"method": "nope"}, r"method='nope' is not a decoding method; use one of greedy, sample, vcd"),
    ({"method": "vcd", "alpha": "strong"}, r"alpha='strong' is not a number"),
    ({"method": "vcd", "alhpa": 1.0}, r"no argument\(s\) \['alhpa'\].*pretrained, method, batch_size"),
    ({"method": "vcd", "beta": 2.0}, r"VCDConfig.beta=2.0 is invalid"),
    ({"batch_size": "auto"}, r"batch_size='auto' is not a whole number >= 1 \('auto' is not supported\)"),
    ({"dtype": "float8"}, r"dtype='float8' is not one of auto, float32, float16, bfloat16"),
])
def test_bad_model_args_fail_in_one_line(llava, model_args, message):
    folder, _ = llava
    with pytest.raises(ValueError, match=message) as caught:
        MODEL_CLS(pretrained=folder, device="cpu", **model_args)
    assert "\n" not in str(caught.value)


def test_unsupported_requests_say_why(llava):
    folder, facts = llava
    lm = model(folder, facts)
    lm.task_dict[TASK][SPLIT].append({"image": [facts["images"][0], facts["images"][1]], "question": "Two?"})
    two_images = Instance("generate_until", ("Two?", dict(GEN), lambda doc: doc["image"], 3, TASK, SPLIT), idx=0,
                          metadata={"task": TASK, "doc_id": 3, "repeats": 1})
    with pytest.raises(ValueError, match="document 3 of task 'fake_pope' has 2 visuals"):
        lm.generate_until([two_images])
    with pytest.raises(NotImplementedError, match="loglikelihood requests .* multiple_choice"):
        lm.loglikelihood([])
    with pytest.raises(NotImplementedError, match="multi-round"):
        lm.generate_until_multi_round([])


def test_without_lmms_eval_the_module_imports_and_says_what_to_install():
    if HAVE_LMMS_EVAL:
        pytest.skip("lmms-eval is installed here: the stand-in that says what to install is not used")
    assert importlib.util.find_spec("lmms_eval") is None or "does not import" in LMMS_EVAL_MISSING
    with pytest.raises(ImportError, match=r"needs lmms-eval: .*pip install 'halluscope\[lmms\]'"):
        Halluscope(pretrained="tiny")


# ------------------------------------------------------------------ with lmms-eval itself
@NEEDS_LMMS_EVAL
def test_registered_with_lmms_eval(llava):
    from lmms_eval.api.model import lmms
    from lmms_eval.api.registry import MODEL_REGISTRY
    from lmms_eval.models.registry_v2 import ModelRegistryV2

    assert issubclass(Halluscope, lmms) and MODEL_REGISTRY["halluscope"] is Halluscope
    registry = ModelRegistryV2()
    registry.register_manifest(lmms_eval_manifest())
    assert registry.get_model_class("halluscope") is Halluscope  # what the entry point gives lmms-eval


@NEEDS_LMMS_EVAL
def test_found_through_the_entry_point():
    from importlib.metadata import entry_points

    if not [ep for ep in entry_points(group="lmms_eval.models") if ep.name == "halluscope"]:
        pytest.skip("halluscope's entry point is not installed: reinstall halluscope (pip install -e .)")
    import lmms_eval.models

    assert lmms_eval.models.get_model("halluscope") is Halluscope


@NEEDS_LMMS_EVAL
def test_create_from_lmms_eval_arg_string(llava):
    folder, facts = llava
    lm = Halluscope.create_from_arg_string(f"pretrained={folder},method=vcd,alpha=1,beta=0.1,device=cpu,progress=false",
                                           {"batch_size": "2", "device": None})
    assert (lm.method, lm.method_args, lm.batch_size, lm.rank, lm.world_size) == (
        "vcd", {"alpha": 1.0, "beta": 0.1}, 2, 0, 1)
    lm.task_dict = {TASK: {SPLIT: docs(facts)}}
    d = docs(facts)
    expected = lm.adapter.generate([x["image"] for x in d], [x["question"] for x in d], method="vcd",
                                   max_new_tokens=N_TOKENS, alpha=1.0, beta=0.1)
    assert ask(lm, GEN) == expected


TASK_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: {n}
  temperature: 0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  - version: 0.0
"""
TASK_UTILS = '''from PIL import Image


def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    return {"exact_match": float(results[0].strip().lower() == doc["answer"])}
'''


@pytest.mark.slow
@NEEDS_LMMS_EVAL
def test_lmms_eval_command_line(llava, tmp_path):
    """`lmms-eval --model halluscope --model_args pretrained=DIR,method=vcd,... --tasks T` on a local task
    (lmms-eval's own tasks download their data from the hub)."""
    import json
    import os
    import subprocess
    import sys
    from importlib.metadata import entry_points

    if not [ep for ep in entry_points(group="lmms_eval.models") if ep.name == "halluscope"]:
        pytest.skip("halluscope's entry point is not installed: reinstall halluscope (pip install -e .)")
    folder, facts = llava
    tasks, out = tmp_path / "tasks", tmp_path / "out"
    tasks.mkdir()
    rows = []
    for i, d in enumerate(docs(facts)):
        d["image"].save(tasks / f"{i}.png")
        rows.append({"image": str(tasks / f"{i}.png"), "question": d["question"], "answer": "yes"})
    (tasks / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "utils.py").write_text(TASK_UTILS)
    (tasks / f"{TASK}.yaml").write_text(TASK_YAML.format(task=TASK, data=tasks / "data.jsonl", n=N_TOKENS))
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "HF_DATASETS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "halluscope", "--model_args",
           f"pretrained={folder},method=vcd,alpha=1,beta=0.1,device=cpu", "--tasks", TASK, "--include_path",
           str(tasks), "--batch_size", "2", "--output_path", str(out), "--log_samples"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    [samples] = list(out.rglob(f"*samples_{TASK}.jsonl"))
    logged = {s["doc_id"]: s["filtered_resps"] for s in map(json.loads, samples.read_text().splitlines())}
    answers = {i: r[0] if isinstance(r, list) else r for i, r in logged.items()}  # a list in older versions
    lm = model(folder, facts, method="vcd")
    expected = lm.adapter.generate([r["image"] for r in rows], [r["question"] for r in rows], method="vcd",
                                   max_new_tokens=N_TOKENS, alpha=1.0, beta=0.1)
    assert [answers[i] for i in range(len(rows))] == expected
    [results] = list(out.rglob("*_results.json"))
    assert TASK in json.loads(results.read_text())["results"]
