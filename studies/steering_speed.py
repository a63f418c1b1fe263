"""Greedy vs VTI generation speed on the built-in model, measured in one run.

    python studies/steering_speed.py --model tiny --batch-size 8 --reps 5

Fits the directions first (timed; or loads them with --directions), then times greedy and VTI
(greedy under the hooks) on the same batches of world test images, the two alternating batch by
batch (and which goes first) so that drift in machine load hits both alike. Prints tokens/second
of each and their ratio (target: VTI >= 0.9x greedy), from each batch's fastest repetition and
over all repetitions, and writes everything as JSON with its provenance to
studies/results/steering_speed/<date>_<git sha>.json (or --out).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def count_tokens(new_tokens: torch.Tensor, eos_id: int | None) -> int:
    """Generated tokens per row up to and including the first EOS (the rest is padding)."""
    if eos_id is None:
        return new_tokens.numel()
    is_eos = new_tokens == eos_id
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, torch.full_like(is_eos[:, 0], new_tokens.shape[1],
                                                                                     dtype=torch.long))
    return int(first.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' or a folder of a trained built-in model")
    parser.add_argument("--directions", default=None, help="directions file (default: fit them here, timed)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=8, help="distinct batches of test images per repetition")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--beta", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for the tiny model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default: studies/results/steering_speed/<date>_<git sha>.json)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    from _provenance import model_hash, write_result

    import halluscope
    from halluscope import World
    from halluscope.decoding import get_method
    from halluscope.steering import VTI, FitConfig, VTIConfig, fit_directions
    from halluscope.steering.method import load_directions

    adapter = halluscope.load_model(args.model, device=args.device)
    fit_seconds = None
    if args.directions is None:
        config = FitConfig()
        t0 = time.perf_counter()
        directions = fit_directions(adapter, config)
        fit_seconds = time.perf_counter() - t0
        print(f"fitted directions ({config.n_images} images x {config.trials} masked copies, "
              f"{config.n_images} caption pairs) in {fit_seconds:.2f} s")
    else:
        directions = load_directions(args.directions)

    world = World()
    samples = world.sample("test", args.batch_size * args.batches)
    prompt = "Describe the image in detail."
    batches = [adapter.build_inputs([s.image for s in samples[i:i + args.batch_size]], [prompt] * args.batch_size)
               for i in range(0, len(samples), args.batch_size)]
    methods = {"greedy": get_method("greedy"),
               "vti": VTI(VTIConfig(directions=directions, alpha=args.alpha, beta=args.beta))}
    eos = adapter.tokenizer.eos_token_id

    def run(name: str, inputs) -> tuple[float, int, int]:
        t0 = time.perf_counter()
        new = methods[name].generate(adapter, inputs, args.max_new_tokens)
        return time.perf_counter() - t0, count_tokens(new, eos), new.shape[1]

    for name in methods:  # warm-up
        run(name, batches[0])
    # Greedy decoding is deterministic: the tokens and steps of a (method, batch) are the same in
    # every repetition, only the time varies. The two methods alternate batch by batch, so that the
    # load of a shared machine falls on both alike.
    seconds = {name: [[0.0] * args.reps for _ in batches] for name in methods}
    tokens = {name: [0] * len(batches) for name in methods}
    steps = {name: [0] * len(batches) for name in methods}
    per_rep = []
    for rep in range(args.reps):
        for b, inputs in enumerate(batches):
            for name in (list(methods) if (rep + b) % 2 == 0 else list(reversed(methods))):
                seconds[name][b][rep], tokens[name][b], steps[name][b] = run(name, inputs)
        rate = {name: sum(tokens[name]) / sum(t[rep] for t in seconds[name]) for name in methods}
        per_rep.append({**{f"{n}_tokens_per_s": r for n, r in rate.items()}, "ratio": rate["vti"] / rate["greedy"]})
        print(f"rep {rep}: greedy {rate['greedy']:.0f} tok/s, vti {rate['vti']:.0f} tok/s, "
              f"ratio {per_rep[-1]['ratio']:.3f}")

    def summarise(total_seconds: dict[str, float]) -> dict[str, dict[str, float]]:
        return {n: {"seconds": total_seconds[n], "tokens": sum(tokens[n]), "steps": sum(steps[n]),
                    "tokens_per_s": sum(tokens[n]) / total_seconds[n],
                    "ms_per_step": 1000 * total_seconds[n] / sum(steps[n])} for n in methods}

    # "all": every repetition; "best": each batch's fastest repetition (the least disturbed by load).
    summary = {"all": summarise({n: sum(map(sum, seconds[n])) / args.reps for n in methods}),
               "best": summarise({n: sum(map(min, seconds[n])) for n in methods})}
    ratios = {k: v["vti"]["tokens_per_s"] / v["greedy"]["tokens_per_s"] for k, v in summary.items()}
    step_ratio = summary["best"]["greedy"]["ms_per_step"] / summary["best"]["vti"]["ms_per_step"]
    best = summary["best"]
    print(f"greedy {best['greedy']['tokens_per_s']:.0f} tok/s, vti {best['vti']['tokens_per_s']:.0f} tok/s "
          f"(fastest of {args.reps} per batch): VTI/greedy = {ratios['best']:.3f} (per decoding step "
          f"{step_ratio:.3f}; over all repetitions {ratios['all']:.3f}, median per repetition "
          f"{statistics.median(r['ratio'] for r in per_rep):.3f}); target >= 0.9")
    result = {
        "model": adapter.name, "device": args.device, "threads": args.threads, "batch_size": args.batch_size,
        "batches": args.batches, "reps": args.reps, "max_new_tokens": args.max_new_tokens,
        "alpha": args.alpha, "beta": args.beta, "directions": args.directions or "fitted here",
        "fit_seconds": fit_seconds, "summary": summary, "ratio_tokens_per_s": ratios["best"],
        "ratio_tokens_per_s_all": ratios["all"], "ratio_per_step": step_ratio,
        "per_rep": per_rep,
    }
    path = write_result("steering_speed", result, path=args.out, model_hash=model_hash(adapter.name))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
