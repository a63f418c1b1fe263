"""Decoding speed of greedy, VCD, ICD, M3ID and VDGD on the built-in model, measured in one run.

    python studies/decoding_speed.py --model tiny --batch-size 8 --reps 5

Captions batches of world test images with every method, the methods taking turns batch by batch
(in a rotating order) so that drift in the load of a shared machine hits all alike. Each timing
covers building the inputs and decoding. VDGD is timed after its description: the descriptions are
made once per batch beforehand (their time is reported apart), then VDGD's answer is timed.
Prints tokens/second per method and the ratio to greedy (targets: VCD, ICD, M3ID and VDGD after its
description >= 0.75x greedy), from each batch's fastest repetition and over all repetitions, in two
modes measured in the same run: each method's own outputs up to each row's EOS (methods answer at
different lengths, and a short answer spends its prefill on few tokens), and fixed length (EOS
excluded until --max-new-tokens, as `generate(min_new_tokens=...)` does: equal work per method).
Writes everything as JSON with its provenance to studies/results/decoding_speed/<date>_<git sha>.json
(or --out).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

METHODS = ("greedy", "vcd", "icd", "m3id", "vdgd")
MODES = ("to_eos", "fixed")
MODE_TITLES = {
    "to_eos": "each method's own outputs: tokens up to each row's EOS (answer lengths differ by method)",
    "fixed": "fixed length: EOS excluded until max_new_tokens, every row decodes the same number of tokens",
}
TARGET = 0.75


def count_tokens(new_tokens: torch.Tensor, eos_ids: list[int]) -> int:
    """Generated tokens per row up to and including the first EOS (the rest is padding)."""
    is_eos = torch.isin(new_tokens, torch.tensor(eos_ids, device=new_tokens.device))
    length = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, new_tokens.shape[1])
    return int(length.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' or a folder of a trained built-in model")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=6, help="distinct batches of test images per repetition")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--description-tokens", type=int, default=64, help="VDGD's longest description")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for the tiny model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default: studies/results/decoding_speed/<date>_<git sha>.json)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    from _provenance import model_hash, write_result

    import halluscope
    from halluscope import World
    from halluscope.decoding import get_method
    from halluscope.decoding.engine import eos_ids
    from halluscope.world import CAPTION_PROMPTS

    adapter = halluscope.load_model(args.model, device=args.device)
    prompt = CAPTION_PROMPTS["detailed"]
    world = World()
    samples = world.sample("test", args.batch_size * args.batches)
    batches = [([s.image for s in samples[i:i + args.batch_size]], [prompt] * args.batch_size)
               for i in range(0, len(samples), args.batch_size)]
    # The built-in model knows the world's words only: VDGD asks it for a description in them.
    decoders = {m: get_method(m) for m in METHODS if m != "vdgd"}
    decoders["vdgd"] = get_method("vdgd", description_prompt=prompt, description_max_new_tokens=args.description_tokens)
    eos = eos_ids(adapter)

    t0 = time.perf_counter()
    descriptions = [decoders["vdgd"].describe(adapter, images, prompts) for images, prompts in batches]
    describe_seconds = time.perf_counter() - t0
    print(f"VDGD descriptions of {len(samples)} images in {describe_seconds:.2f} s "
          f"(e.g. {descriptions[0].texts[0]!r})")

    def run(name: str, mode: str, b: int) -> tuple[float, int, int]:
        images, prompts = batches[b]
        decoder = decoders[name]
        min_new = args.max_new_tokens if mode == "fixed" else 0
        t0 = time.perf_counter()
        if name == "vdgd":
            new = decoder.answer(adapter, images, prompts, descriptions[b], args.max_new_tokens, min_new)
        else:
            new = decoder.generate(adapter, adapter._decode_inputs(decoder, images, prompts), args.max_new_tokens,
                                   min_new)
        return time.perf_counter() - t0, count_tokens(new, eos), new.shape[1]

    runs = [(n, mode) for mode in MODES for n in METHODS]
    for name, mode in runs:  # warm-up
        run(name, mode, 0)
    # Greedy decisions are deterministic: the tokens and steps of a (method, mode, batch) are the same
    # in every repetition, only the time varies. The order rotates batch by batch.
    seconds = {r: [[0.0] * args.reps for _ in batches] for r in runs}
    tokens = {r: [0] * len(batches) for r in runs}
    steps = {r: [0] * len(batches) for r in runs}
    per_rep = []
    for rep in range(args.reps):
        for b in range(len(batches)):
            shift = (rep * len(batches) + b) % len(runs)
            for r in runs[shift:] + runs[:shift]:
                seconds[r][b][rep], tokens[r][b], steps[r][b] = run(*r, b)
        rate = {r: sum(tokens[r]) / sum(t[rep] for t in seconds[r]) for r in runs}
        per_rep.append({f"{n}/{mode}": rate[n, mode] / rate["greedy", mode] for n, mode in runs if n != "greedy"})
        print(f"rep {rep}: " + "; ".join(
            f"{mode}: greedy {rate['greedy', mode]:.0f} tok/s, " +
            ", ".join(f"{n} {rate[n, mode] / rate['greedy', mode]:.2f}x" for n in METHODS[1:]) for mode in MODES))

    def summarise(total: dict) -> dict[str, dict[str, dict[str, float]]]:
        return {mode: {n: {"seconds": total[n, mode], "tokens": sum(tokens[n, mode]), "steps": sum(steps[n, mode]),
                           "tokens_per_s": sum(tokens[n, mode]) / total[n, mode],
                           "ms_per_step": 1000 * total[n, mode] / sum(steps[n, mode])} for n in METHODS}
                for mode in MODES}

    # "best": each batch's fastest repetition (the least disturbed by load); "all": every repetition.
    summary = {"best": summarise({r: sum(map(min, seconds[r])) for r in runs}),
               "all": summarise({r: sum(map(sum, seconds[r])) / args.reps for r in runs})}
    ratios = {k: {mode: {n: v[mode][n]["tokens_per_s"] / v[mode]["greedy"]["tokens_per_s"] for n in METHODS[1:]}
                  for mode in MODES} for k, v in summary.items()}
    print(f"\nbatch {args.batch_size}, {args.max_new_tokens} new tokens at most, fastest of {args.reps} per batch; "
          f"target >= {TARGET}x greedy")
    for mode in MODES:
        best = summary["best"][mode]
        print(f"\n{MODE_TITLES[mode]}")
        print(f"{'method':<8}{'tok/s':>8}{'tokens':>8}{'x greedy':>10}{'all reps':>10}{'median rep':>12}")
        print(f"{'greedy':<8}{best['greedy']['tokens_per_s']:>8.0f}{best['greedy']['tokens']:>8}{1:>10.2f}"
              f"{1:>10.2f}{1:>12.2f}")
        for n in METHODS[1:]:
            median = statistics.median(r[f"{n}/{mode}"] for r in per_rep)
            ratio = ratios["best"][mode][n]
            print(f"{n:<8}{best[n]['tokens_per_s']:>8.0f}{best[n]['tokens']:>8}{ratio:>10.2f}"
                  f"{ratios['all'][mode][n]:>10.2f}{median:>12.2f}" + ("" if ratio >= TARGET else "  below target"))
    result = {
        "model": adapter.name, "device": args.device, "threads": args.threads, "batch_size": args.batch_size,
        "batches": args.batches, "reps": args.reps, "max_new_tokens": args.max_new_tokens,
        "description_tokens": args.description_tokens, "describe_seconds": describe_seconds,
        "summary": summary, "ratio_tokens_per_s": ratios["best"], "ratio_tokens_per_s_all": ratios["all"],
        "per_rep": per_rep, "target": TARGET, "modes": MODE_TITLES,
    }
    path = write_result("decoding_speed", result, path=args.out, model_hash=model_hash(adapter.name))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
