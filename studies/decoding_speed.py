"""Decoding speed of greedy, VCD, ICD, M3ID and VDGD, on the built-in model or on a real model's shape, in one run.

    python studies/decoding_speed.py --model tiny --batch-size 8 --reps 5
    python studies/decoding_speed.py --shape smolvlm-256m --batch-size 8 --batches 1 --reps 2 --max-new-tokens 32

Captions batches of images with every method, the methods taking turns batch by batch (in a rotating order) so
that drift in the load of a shared machine hits all alike. Each timing covers building the inputs and decoding.
VDGD is timed after its description: the descriptions are made once per batch beforehand (their time is reported
apart), then VDGD's answer is timed. Prints tokens/second per method and the ratio to greedy (targets: VCD, ICD,
M3ID and VDGD after its description >= 0.75x greedy on the built-in model), from each batch's fastest repetition
and over all repetitions, in two modes measured in the same run: each method's own outputs up to each row's EOS
(methods answer at different lengths, and a short answer spends its prefill on few tokens), and fixed length (EOS
excluded until --max-new-tokens, as `generate(min_new_tokens=...)` does: equal work per method).

Every run also times greedy decoding of a doubled batch (the batch's images and prompts twice over, "greedy_2b"):
a two-branch method (VCD, ICD, M3ID) runs its forward passes on twice the rows, so the doubled batch's cost over
the batch's, t(2B) / t(B), bounds what such a method can reach: about t(B) / t(2B) x greedy, whatever its code.

--shape NAME builds a randomly initialised model with a real model's architecture and sizes instead (see
studies/_shapes.py: smolvlm-256m, qwen2-vl-2b, llava-1.5-7b; weights do not change the cost of a forward pass) and
captions random images of the shape's size with "Describe the image.". Random weights never choose to stop, so in
the to-EOS mode each sample's answer length is drawn once from a seeded generator, uniformly in
[max_new_tokens / 4, max_new_tokens], and EOS is forced at that length for every method alike (a logits processor
passed to `model.generate`, which both greedy and the engine's decoding loop run): the methods then differ only in
time, and batches hold answers of mixed lengths, as real ones do. VDGD is left out at shapes by default (its
description would be random tokens). Shapes use 2 torch threads by default, the built-in model 1.

Writes everything as JSON with its provenance to studies/results/decoding_speed/<date>_<git sha>.json (or --out).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

import torch

METHODS = ("greedy", "vcd", "icd", "m3id", "vdgd")
DOUBLED = "greedy_2b"  # greedy on the batch twice over: the rows a two-branch method runs its forward passes on
MODES = ("to_eos", "fixed")
MODE_TITLES = {
    "to_eos": "each method's own outputs: tokens up to each row's EOS (answer lengths differ by method)",
    "fixed": "fixed length: EOS excluded until max_new_tokens, every row decodes the same number of tokens",
}
FORCED_TITLE = ("to each row's EOS, forced at a length drawn per sample (uniform in [max_new_tokens / 4, "
                "max_new_tokens], seeded), the same for every method: answers of mixed lengths in a batch")
TARGET = 0.75
SHAPE_TARGET = 0.8  # VCD, ICD and M3ID at batch 8 on CPU at SmolVLM-256M's shape (issue 21)


def count_tokens(new_tokens: torch.Tensor, eos_ids: list[int]) -> int:
    """Generated tokens per row up to and including the first EOS (the rest is padding)."""
    is_eos = torch.isin(new_tokens, torch.tensor(eos_ids, device=new_tokens.device))
    length = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, new_tokens.shape[1])
    return int(length.sum())


def end_at(lengths: torch.Tensor, eos: int):
    """A logits processor that forces `eos` as sample i's lengths[i]-th new token. Row r is sample r % B: the
    engine stacks a method's branches branch-major (rows 0..B-1 are the clean branch, whose scores are kept) and
    the doubled batch repeats the batch, so every method stops each sample at the same length."""
    from transformers import LogitsProcessor

    class EndAt(LogitsProcessor):
        def __init__(self) -> None:
            self.start: int | None = None

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if self.start is None:
                self.start = input_ids.shape[1]  # the prompt's (padded) length: first call, first new token
            made = input_ids.shape[1] - self.start
            rows = torch.arange(scores.shape[0], device=scores.device) % len(lengths)
            end = lengths.to(scores.device)[rows] == made + 1
            if end.any():
                scores[end] = -math.inf
                scores[end, eos] = 0.0
            return scores

    return EndAt()


def force_ends(adapter, eos: int) -> dict:
    """Make `adapter.model.generate` force EOS at `state["lengths"]` (per sample) while that is set and the call
    does not ask for a minimum length; returns the state to set."""
    from transformers import LogitsProcessorList

    state: dict = {"lengths": None}
    generate = adapter.model.generate

    def generate_with_ends(*args, **kwargs):
        if state["lengths"] is not None and not kwargs.get("min_new_tokens"):
            kwargs["logits_processor"] = LogitsProcessorList([end_at(state["lengths"], eos)])
        return generate(*args, **kwargs)

    adapter.model.generate = generate_with_ends
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' or a folder of a trained built-in model")
    parser.add_argument("--shape", default=None, help="a real model's shape, randomly initialised, instead of "
                        "--model: smolvlm-256m, qwen2-vl-2b or llava-1.5-7b (studies/_shapes.py)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated, greedy included (default: all five; at a shape, all but vdgd)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: to_eos, fixed")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=6, help="distinct batches of test images per repetition")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--description-tokens", type=int, default=64, help="VDGD's longest description")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: 1 for the built-in model, its fastest; 2 at a shape)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="a shape's dtype (default: float32 on CPU, bfloat16 on CUDA)")
    parser.add_argument("--image-size", default=None, help="a shape's image size, HxW (default: the shape's)")
    parser.add_argument("--seed", type=int, default=0, help="a shape's weights and answer lengths")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default: studies/results/decoding_speed/<date>_<git sha>.json)")
    args = parser.parse_args()

    threads = args.threads or (2 if args.shape else 1)
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    from _provenance import model_hash, write_result

    from halluscope.decoding import get_method
    from halluscope.decoding.engine import eos_ids

    methods = tuple(args.methods.split(",")) if args.methods else METHODS[:4] if args.shape else METHODS
    modes = tuple(args.modes.split(","))
    if methods[0] != "greedy" or not set(methods) <= set(METHODS) or not set(modes) <= set(MODES):
        raise SystemExit(f"--methods: greedy first, then any of {METHODS[1:]}; --modes: any of {MODES}")
    load_before = os.getloadavg()
    shape_facts = None
    t_build = time.perf_counter()
    if args.shape:
        from _shapes import PROMPT, build_shape, shape_images

        dtype = getattr(torch, args.dtype) if args.dtype else (
            torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
        size = tuple(int(x) for x in args.image_size.split("x")) if args.image_size else None
        adapter, shape, shape_facts = build_shape(args.shape, args.device, dtype, size, seed=args.seed)
        images = shape_images(shape, args.batch_size * args.batches)
        prompt = PROMPT
        shape_facts["prompt_tokens"] = int(adapter.build_inputs(images[:1], [prompt])["input_ids"].shape[1])
        print(f"built {args.shape} ({shape_facts['parameters'] / 1e6:.0f} M parameters, random) in "
              f"{time.perf_counter() - t_build:.0f} s; {shape_facts['image_tokens']} image tokens, "
              f"{shape_facts['prompt_tokens']} prompt tokens per row")
    else:
        import halluscope
        from halluscope import World
        from halluscope.world import CAPTION_PROMPTS

        adapter = halluscope.load_model(args.model, device=args.device)
        prompt = CAPTION_PROMPTS["detailed"]
        images = [s.image for s in World().sample("test", args.batch_size * args.batches)]
    batches = [(images[i:i + args.batch_size], [prompt] * args.batch_size)
               for i in range(0, len(images), args.batch_size)]
    decoders = {m: get_method(m) for m in methods if m != "vdgd"}
    if "vdgd" in methods:
        # The built-in model knows the world's words only: VDGD asks it for a description in them.
        decoders["vdgd"] = get_method("vdgd", description_prompt=prompt,
                                      description_max_new_tokens=args.description_tokens)
    eos = eos_ids(adapter)
    # At a shape, each sample's answer length, drawn once (the same for every method and repetition).
    ends = force_ends(adapter, eos[0]) if args.shape else None
    generator = torch.Generator().manual_seed(args.seed)
    low = max(1, args.max_new_tokens // 4)
    lengths = [torch.randint(low, args.max_new_tokens + 1, (args.batch_size,), generator=generator)
               for _ in batches] if args.shape else None

    descriptions, describe_seconds = None, 0.0
    if "vdgd" in methods:
        t0 = time.perf_counter()
        descriptions = [decoders["vdgd"].describe(adapter, ims, prompts) for ims, prompts in batches]
        describe_seconds = time.perf_counter() - t0
        print(f"VDGD descriptions of {len(images)} images in {describe_seconds:.2f} s "
              f"(e.g. {descriptions[0].texts[0]!r})")

    def run(name: str, mode: str, b: int, rows: int | None = None, max_new: int | None = None):
        ims, prompts = batches[b]
        ims, prompts = ims[:rows], prompts[:rows]
        max_new = max_new or args.max_new_tokens
        decoder = decoders["greedy" if name == DOUBLED else name]
        if name == DOUBLED:
            ims, prompts = ims * 2, prompts * 2
        min_new = max_new if mode == "fixed" else 0
        if ends is not None:
            ends["lengths"] = lengths[b][:rows].clamp(max=max_new) if mode == "to_eos" else None
        t0, c0 = time.perf_counter(), time.process_time()
        if name == "vdgd":
            new = decoder.answer(adapter, ims, prompts, descriptions[b], max_new, min_new)
        else:
            new = decoder.generate(adapter, adapter.decode_inputs(decoder, ims, prompts), max_new, min_new)
        return time.perf_counter() - t0, time.process_time() - c0, count_tokens(new, eos), new.shape[1]

    names = (*methods, DOUBLED)
    runs = [(n, mode) for mode in modes for n in names]
    t0 = time.perf_counter()
    # Warm-up, each method once (at a shape on one image and 2 tokens: a full batch takes long there).
    for name in methods if args.shape else names:
        for mode in ("fixed",) if args.shape else modes:
            run(name, mode, 0, *((1, 2) if args.shape else (None, None)))
    warmup_seconds = time.perf_counter() - t0
    print(f"warm-up {warmup_seconds:.0f} s")
    # Greedy decisions are deterministic: the tokens and steps of a (method, mode, batch) are the same
    # in every repetition, only the time varies. The order rotates batch by batch.
    seconds = {r: [[0.0] * args.reps for _ in batches] for r in runs}
    cpu_seconds = {r: [[0.0] * args.reps for _ in batches] for r in runs}  # this process's CPU time, all threads
    tokens = {r: [0] * len(batches) for r in runs}
    steps = {r: [0] * len(batches) for r in runs}
    per_rep = []
    for rep in range(args.reps):
        for b in range(len(batches)):
            shift = (rep * len(batches) + b) % len(runs)
            for r in runs[shift:] + runs[:shift]:
                seconds[r][b][rep], cpu_seconds[r][b][rep], tokens[r][b], steps[r][b] = run(*r, b)
        rate = {r: sum(tokens[r]) / sum(t[rep] for t in seconds[r]) for r in runs}
        per_rep.append({f"{n}/{mode}": rate[n, mode] / rate["greedy", mode] for n, mode in runs if n != "greedy"}
                       | {"load_average": os.getloadavg()[0]})
        print(f"rep {rep}: " + "; ".join(
            f"{mode}: greedy {rate['greedy', mode]:.1f} tok/s, " +
            ", ".join(f"{n} {rate[n, mode] / rate['greedy', mode]:.2f}x" for n in names[1:]) for mode in modes),
            flush=True)

    def summarise(total: dict) -> dict[str, dict[str, dict[str, float]]]:
        return {mode: {n: {"seconds": total[n, mode], "tokens": sum(tokens[n, mode]), "steps": sum(steps[n, mode]),
                           "tokens_per_s": sum(tokens[n, mode]) / total[n, mode],
                           "ms_per_step": 1000 * total[n, mode] / sum(steps[n, mode])} for n in names}
                for mode in modes}

    # "best": each batch's fastest repetition (the least disturbed by load); "all": every repetition. Wall-clock
    # time, and ("cpu_best", "cpu_all") this process's CPU time: on a machine shared with jobs that do not wait
    # for it, the CPU time a call used moves less with their load than its wall-clock time does.
    summary = {"best": summarise({r: sum(map(min, seconds[r])) for r in runs}),
               "all": summarise({r: sum(map(sum, seconds[r])) / args.reps for r in runs}),
               "cpu_best": summarise({r: sum(map(min, cpu_seconds[r])) for r in runs}),
               "cpu_all": summarise({r: sum(map(sum, cpu_seconds[r])) / args.reps for r in runs})}
    ratios = {k: {mode: {n: v[mode][n]["tokens_per_s"] / v[mode]["greedy"]["tokens_per_s"] for n in methods[1:]}
                  for mode in modes} for k, v in summary.items()}
    # The doubled batch: its seconds over greedy's for the same samples' tokens; its inverse is the ratio to greedy
    # of a method whose only extra cost is running twice the rows.
    doubled = {k: {mode: {"time_ratio": v[mode][DOUBLED]["seconds"] / v[mode]["greedy"]["seconds"],
                          "x_greedy_bound": v[mode]["greedy"]["seconds"] / v[mode][DOUBLED]["seconds"]}
                   for mode in modes} for k, v in summary.items()}
    target = SHAPE_TARGET if args.shape else TARGET
    titles = {**MODE_TITLES, **({"to_eos": FORCED_TITLE} if args.shape else {})}
    load_after = os.getloadavg()
    print(f"\n{args.shape or args.model}: batch {args.batch_size}, {args.max_new_tokens} new tokens at most, "
          f"{threads} threads, fastest of {args.reps} per batch; target >= {target}x greedy; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    for mode in modes:
        best = summary["best"][mode]
        print(f"\n{titles[mode]}")
        print(f"{'method':<10}{'tok/s':>8}{'tokens':>8}{'x greedy':>10}{'all reps':>10}{'median rep':>12}"
              f"{'CPU time':>10}")
        print(f"{'greedy':<10}{best['greedy']['tokens_per_s']:>8.1f}{best['greedy']['tokens']:>8}{1:>10.2f}"
              f"{1:>10.2f}{1:>12.2f}{1:>10.2f}")
        for n in methods[1:]:
            median = statistics.median(r[f"{n}/{mode}"] for r in per_rep)
            ratio = ratios["best"][mode][n]
            print(f"{n:<10}{best[n]['tokens_per_s']:>8.1f}{best[n]['tokens']:>8}{ratio:>10.2f}"
                  f"{ratios['all'][mode][n]:>10.2f}{median:>12.2f}{ratios['cpu_best'][mode][n]:>10.2f}"
                  + ("" if ratio >= target else "  below target"))
        d = doubled["best"][mode]
        print(f"doubled batch: {d['time_ratio']:.2f}x greedy's time (all reps "
              f"{doubled['all'][mode]['time_ratio']:.2f}x, "
              f"CPU time {doubled['cpu_best'][mode]['time_ratio']:.2f}x): a method costing a doubled batch runs at "
              f"{d['x_greedy_bound']:.2f}x greedy")
    result = {
        "model": adapter.name, "shape": shape_facts, "device": args.device, "threads": threads,
        "dtype": str(next(adapter.model.parameters()).dtype).removeprefix("torch."),
        "batch_size": args.batch_size, "batches": args.batches, "reps": args.reps,
        "max_new_tokens": args.max_new_tokens, "methods": list(methods),
        "answer_lengths": [x.tolist() for x in lengths] if lengths else None,
        "description_tokens": args.description_tokens if "vdgd" in methods else None,
        "describe_seconds": describe_seconds, "warmup_seconds": warmup_seconds,
        "load_average_before": load_before, "load_average_after": load_after,
        "summary": summary, "ratio_tokens_per_s": ratios["best"], "ratio_tokens_per_s_all": ratios["all"],
        "ratio_tokens_per_cpu_s": ratios["cpu_best"],
        "calls": {f"{n}/{mode}": {"seconds": seconds[n, mode], "cpu_seconds": cpu_seconds[n, mode]}
                  for n, mode in runs},  # [batch][rep]
        "doubled_batch": doubled, "per_rep": per_rep, "target": target, "modes": {m: titles[m] for m in modes},
    }
    path = write_result("decoding_speed", result, path=args.out, model_hash=model_hash(adapter.name))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
