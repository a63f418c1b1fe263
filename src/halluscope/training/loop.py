"""One training loop for every method: stage 0 and instruction tuning of the built-in model, HACL's
connector stage, DPO and DDPO. As in trl, the loop lives here and each method supplies its data and
its loss, by subclassing `Trainer`:

    class MyTrainer(Trainer):
        name = "my-method"                       # recorded in checkpoints and logs
        def batch(self, step): ...               # the data of one step: a pure function of seed and step
        def compute_loss(self, batch): ...       # {"loss": minimised, anything else: logged}

The loop does the rest: accelerate (data-parallel under `accelerate launch`, CPU included), AdamW with a
linear warm-up and cosine decay to 10 % of the peak learning rate, gradient clipping, a progress bar, the
mean of every value `compute_loss` returns every `log_every` steps, and checkpoints every
`checkpoint_every` steps and after the last one. A rerun resumes from the checkpoint (model, optimizer and
random states), so a run that was killed ends with the same weights as one that was not.

The loop reads these fields of a method's config: steps, lr, warmup_steps, weight_decay, adam_betas,
max_grad_norm, checkpoint_every and log_every (a trainer may override `steps`, `lr_at` and
`make_optimizer` where its config names them differently).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..progress import progress as progress_bar

STATE = "state.json"  # beside accelerate's files in a checkpoint: step, log, method, config


def cosine_lr(step: int, lr: float, warmup_steps: int, steps: int) -> float:
    """Linear warm-up over `warmup_steps`, then cosine decay to 10 % of `lr` at `steps` (nanoGPT's
    schedule with min_lr = lr / 10)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    done = (step - warmup_steps) / max(1, steps - warmup_steps)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, done))))


class _Steps(torch.utils.data.Dataset):
    def __init__(self, make: Callable[[int], dict[str, torch.Tensor]]) -> None:
        self.make = make

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        return self.make(step)


def spare_core(device: torch.device) -> bool:
    """Whether a process building batches would have a core of its own: the model computes on an accelerator, or
    the machine has more cores than torch's threads use."""
    return device.type != "cpu" or (os.cpu_count() or 1) > torch.get_num_threads()


def prefetch(make: Callable[[int], dict[str, torch.Tensor]], steps: list[int], device: torch.device,
             worker: bool | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """`make(step)` for each of `steps`: built ahead by a DataLoader worker process while the loop computes where
    it has a core of its own (in a thread, this pure-Python work would compete with the loop for the GIL), else in
    turn with the steps. On 2 cores with torch on both, a worker made steps 3-11 % slower than building each batch
    in turn (docs/studies/speed.md). Where workers are spawned rather than forked (macOS, Windows), `make` must
    pickle: a module-level function or a `functools.partial` of one. `worker` overrides the choice."""
    if not (spare_core(device) if worker is None else worker):
        return map(make, steps)
    # Its own generator: the loader draws its workers' base seed when it starts, and from torch's global generator
    # that draw would make a resumed stage differ from an uninterrupted one in every random draw after it.
    return iter(torch.utils.data.DataLoader(_Steps(make), batch_size=None, sampler=steps, num_workers=1,
                                            prefetch_factor=4, generator=torch.Generator()))


def jsonable(obj: Any) -> Any:
    """`obj` as JSON reads it back (tuples become lists): what a config is compared as on resume."""
    return json.loads(json.dumps(obj, default=str))


class Trainer:
    """The loop over `module` (an `nn.Module` whose parameters that require grad are trained, unless
    `param_groups` says otherwise). Checkpoints go to `output_dir/checkpoint`."""

    name: ClassVar[str] = "train"

    def __init__(self, module: nn.Module, config: Any, output_dir: str | Path, progress: bool = True,
                 on_step: Callable[[int, float], None] | None = None) -> None:
        from accelerate import Accelerator

        self.config = config
        self.output_dir = Path(output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoint"
        self.progress = progress
        self.on_step = on_step  # called after every step with the steps done and the step's loss
        # Without GPUs, `accelerate launch --multi_gpu --num_processes N` starts N CPU processes that talk over gloo.
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.module = module
        optimizer = self.make_optimizer(self.param_groups(module))
        self.model, self.optimizer = self.accelerator.prepare(module, optimizer)
        # clipped together, in the optimizer's order
        self.trained = [p for group in self.optimizer.param_groups for p in group["params"]]

    # ------------------------------------------------------------------ what a method supplies
    def batch(self, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def batches(self, start: int) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of steps start, start + 1, ...; override to build them ahead (`prefetched`)."""
        return (self.batch(step) for step in range(start, self.steps))

    def prefetched(self, make: Callable[[int], dict[str, torch.Tensor]],
                   start: int) -> Iterator[dict[str, torch.Tensor]]:
        """What an override of `batches` returns: `make(k)` for steps start, start + 1, ..., k being the step's
        data index on this process (step * world_size + rank), through `prefetch`."""
        steps = [step * self.world_size + self.rank for step in range(start, self.steps)]
        return prefetch(make, steps, self.accelerator.device)

    # ------------------------------------------------------------------ what a method may change
    @property
    def steps(self) -> int:
        return self.config.steps

    def lr_at(self, step: int) -> float:
        return cosine_lr(step, self.config.lr, self.config.warmup_steps, self.steps)

    def param_groups(self, module: nn.Module) -> list[dict[str, Any]]:
        """AdamW's parameter groups; a group's "lr_scale" multiplies the scheduled learning rate."""
        return [{"params": [p for p in module.parameters() if p.requires_grad]}]

    def make_optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        cfg = self.config
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.adam_betas))

    @property
    def title(self) -> str:
        return self.name

    # ------------------------------------------------------------------ properties of the run
    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def record(self) -> dict[str, Any]:
        """What every log and checkpoint of this run says about it: method, paper, config. A checkpoint
        resumes only where all of it but the paper is the same."""
        return {"method": self.name, "paper": self.config.paper(), "config": jsonable(self.config.to_dict())}

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, Any]:
        """Train (or resume, or restore a finished run) and return the log: for every value
        `compute_loss` returns, a list of [step, mean since the previous entry], plus "seconds"."""
        start, log, window = self.resume()
        if start >= self.steps:  # a finished run: its weights are restored, nothing to train
            self.model.eval()
            return log
        bar = task = None
        if self.progress and self.is_main:
            bar = progress_bar("loss")
            bar.start()
            task = bar.add_task(self.title, total=self.steps, completed=start, loss="-")
        t0 = time.time()
        self.model.train()
        try:
            for step, batch in zip(range(start, self.steps), self.batches(start)):
                batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr_at(step) * group.get("lr_scale", 1.0)
                out = self.compute_loss(batch)
                self.optimizer.zero_grad(set_to_none=True)
                self.accelerator.backward(out["loss"])
                self.accelerator.clip_grad_norm_(self.trained, self.config.max_grad_norm)
                self.optimizer.step()
                # Read after the step: a parameter returned for the log shows its updated value.
                values = torch.stack([v.detach().float().reshape(()) for v in out.values()])
                values = self.accelerator.gather(values[None]).mean(0).tolist()  # the same on every process
                loss = values[list(out).index("loss")]
                for key, value in zip(out, values):
                    window.setdefault(key, []).append(value)
                done = step + 1
                if done % self.config.log_every == 0 or done == self.steps:
                    for key, seen in window.items():
                        log.setdefault(key, []).append([done, round(sum(seen) / len(seen), 5)])
                    window = {}
                if bar is not None:
                    bar.update(task, advance=1, loss=f"{loss:.4f}")
                if self.on_step is not None:
                    self.on_step(done, loss)
                if done % self.config.checkpoint_every == 0 or done == self.steps:
                    log["seconds"] += time.time() - t0
                    t0 = time.time()
                    self.save_checkpoint(done, log, window)
        finally:
            if bar is not None:
                bar.stop()
        self.model.eval()
        return log

    # ------------------------------------------------------------------ checkpoints
    def resume(self) -> tuple[int, dict[str, Any], dict[str, list[float]]]:
        """(first step, log, the values since the last log entry) from the checkpoint, loading model,
        optimizer and random states; (0, empty log, {}) without one. A checkpoint of another method or
        config is refused."""
        ckpt, old = self.checkpoint_dir, self._sibling("old")
        if self.is_main and not (ckpt / STATE).exists() and (old / STATE).exists():
            os.replace(old, ckpt)  # killed between the two renames of save_checkpoint
        self.accelerator.wait_for_everyone()
        if not (ckpt / STATE).exists():
            return 0, {"seconds": 0.0}, {}
        state, here = json.loads((ckpt / STATE).read_text()), self.record()
        differ = [k for k in here if k != "paper" and jsonable(here[k]) != state.get(k)]
        if differ:
            if differ == ["config"]:
                saved, now = state["config"], here["config"]
                keys = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
                what = f"another {type(self.config).__name__} (there: " + ", ".join(
                    f"{k}={saved.get(k)!r}" for k in keys) + "; here: " + ", ".join(f"{k}={now.get(k)!r}" for k in keys)
            else:
                what = "another run (there: " + ", ".join(f"{k}={state.get(k)!r}" for k in differ)
            raise ValueError(f"{ckpt} was written with {what}); delete {ckpt} to start over, or use another "
                             "output folder")
        with _quiet_shared_tensors():
            self.accelerator.load_state(str(ckpt))
        return state["step"], state["log"], state.get("window", {})

    def save_checkpoint(self, step: int, log: dict[str, Any], window: dict[str, list[float]]) -> None:
        """accelerate's state (model, optimizer, random states) plus step, log and the values logged
        since the last entry (so that a resumed run logs the same means), replaced atomically: a kill
        mid-write leaves the previous checkpoint."""
        ckpt, tmp, old = self.checkpoint_dir, self._sibling("tmp"), self._sibling("old")
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        with _quiet_shared_tensors():
            self.accelerator.save_state(str(tmp))
        self.accelerator.wait_for_everyone()
        if self.is_main:
            state = {"step": step, "of": self.steps, "log": log, "window": window, **self.record()}
            (tmp / STATE).write_text(json.dumps(state, default=str))
            if ckpt.exists():
                os.replace(ckpt, old)
            os.replace(tmp, ckpt)
            shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def remove_checkpoint(self) -> None:
        if self.is_main:
            shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _sibling(self, suffix: str) -> Path:
        return self.checkpoint_dir.with_name(f"{self.checkpoint_dir.name}.{suffix}")


def _no_shared_tensor_warning(record: logging.LogRecord) -> bool:
    """Tied input and output embeddings share storage: accelerate saves them once and warns at every
    checkpoint. Resuming restores the tie (tests/test_training_contract.py)."""
    return "Removed shared tensor" not in record.getMessage()


class _quiet_shared_tensors:
    def __enter__(self) -> None:
        logging.getLogger("accelerate.utils.other").addFilter(_no_shared_tensor_warning)

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("accelerate.utils.other").removeFilter(_no_shared_tensor_warning)


__all__ = ["STATE", "Trainer", "cosine_lr", "jsonable", "prefetch", "spare_core"]
