"""The generic training loop: step, log, evaluate, checkpoint, resume.

`fit` drives any jitted train step over `batch_fn(step)`; `run_stage` wires one
training stage (optimizer, train step on the placement's mesh, orbax checkpoints,
metrics, `fit`) and is what every supervised trainer (SFT warm start, reward models,
PRMs, DPO) runs; `make_batch_fn` turns a grain pipeline into a resumable `batch_fn`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp

from rewardjax.data.pipeline import Pipeline
from rewardjax.train.checkpoint import Checkpointer
from rewardjax.train.metrics import LogConfig, MetricsLogger
from rewardjax.train.placement import Placement, context
from rewardjax.train.state import (NonFiniteGuard, OptimizerConfig, TrainState, init_state,
                                   make_train_step, split_micro)


def fit(state: TrainState, train_step: Callable, batch_fn: Callable[[int], Any], *,
        num_steps: int, checkpointer: Checkpointer | None = None,
        logger: MetricsLogger | None = None, log_every: int = 10,
        eval_fn: Callable[[Any], dict] | None = None, eval_every: int | None = None,
        stop_after: int | None = None, guard: NonFiniteGuard | None = None) -> TrainState:
    """Runs `train_step` from `state.step` (or the latest checkpoint) to `num_steps`.

    `batch_fn(step)` must be a pure function of the step (e.g. a grain MapDataset index),
    so a resumed run sees exactly the batches an uninterrupted run would.

    Args:
      eval_fn: `params -> metrics` run every `eval_every` steps and at the end.
      stop_after: stop (after checkpointing) once this step is reached; simulates an
        interrupted run in tests.
      guard: counts steps the train step skipped as non-finite (logged as
        `nonfinite/skipped`) and stops the run past its limit, before that step is
        checkpointed.
    """
    if checkpointer is not None:
        restored = checkpointer.restore(state)
        if restored is not None:
            state, _ = restored
    start = int(state.step)
    for step in range(start, num_steps):
        state, metrics = train_step(state, batch_fn(step))
        done = step + 1
        if guard is not None:
            guard.check(done, metrics)
            metrics = {**metrics, "nonfinite/skipped": guard.skipped}
        if logger is not None and (done % log_every == 0 or done == num_steps):
            logger.log(done, metrics, advance=log_every if done % log_every == 0 else done % log_every)
        if eval_fn is not None and eval_every and (done % eval_every == 0 or done == num_steps):
            eval_metrics = eval_fn(state.params)
            if logger is not None:
                logger.log(done, {f"eval/{k}": v for k, v in eval_metrics.items()})
        if checkpointer is not None:
            checkpointer.maybe_save(done, state, {"step": done}, force=done == num_steps)
        if stop_after is not None and done >= stop_after:
            break
    return state


def make_batch_fn(pipeline: Pipeline, *, num_micro: int | None = 1,
                  transform: Callable[[dict], dict] | None = None) -> Callable[[int], dict]:
    """`batch_fn(step)` for `fit`: batch `step` of the pipeline's `MapDataset`.

    A pure function of the step (random access by index; a finite pipeline wraps
    around), so a resumed run sees exactly the batches of an uninterrupted run. Train
    pipelines should use `drop_remainder=True` so every batch splits into micro-batches.

    Args:
      num_micro: split every leaf into [num_micro, B / num_micro, ...] for
        `make_train_step`; None returns the flat batch.
      transform: applied to the flat batch first (must itself be deterministic), e.g.
        adding reference log-probs (`prm.with_reference_logprobs`).
    """
    dataset = pipeline.dataset
    size = len(dataset)

    def batch_fn(step: int) -> dict:
        batch = dataset[int(step) % size]
        if transform is not None:
            batch = transform(batch)
        return batch if num_micro is None else split_micro(batch, num_micro)

    return batch_fn


def run_stage(params, loss_fn: Callable, batch_fn: Callable[[int], Any], *,
              optimizer: OptimizerConfig, num_steps: int, out_dir: str | os.PathLike,
              name: str, accumulate: str = "mean", log_every: int = 10,
              eval_fn: Callable[[Any], dict] | None = None, eval_every: int | None = None,
              checkpoint_every: int | None = None, stop_after: int | None = None,
              tx=None, progress: bool = True, copy_params: bool = True,
              placement: Placement | None = None,
              log: LogConfig | None = None) -> tuple[TrainState, dict]:
    """One training stage: optimizer, jitted step, orbax checkpoints, metrics, `fit`.

    Returns the final state and the final evaluation (`eval_fn` of the final params,
    which `fit` runs at the last step; {} without an `eval_fn`).

    Checkpoints go to `<out_dir>/checkpoints/<name>` (resumed from if present, so a
    re-run with the same output directory continues), metrics to
    `<out_dir>/<name>.jsonl` and the trackers `log` asks for.

    Args:
      loss_fn: `(params, micro_batch) -> (loss, metrics)`.
      batch_fn: `step -> batch` with a leading micro-batch axis (`make_batch_fn`).
      tx: an optax transformation to use instead of `optimizer.make()` (e.g. one that
        freezes part of the params); `optimizer` still provides the logged schedule.
      checkpoint_every: save every N steps (default: only at the end).
      copy_params: train a copy, so `params` stay usable (the jitted step donates its
        state); False saves the memory of one copy of the params.
      placement: run on a mesh (`train.placement.Placement`): params and optimizer
        state placed by the rules, batches split over (data, fsdp); `eval_fn` then
        sees placed params.
      log: experiment trackers (default `LogConfig()`: TensorBoard).
    """
    if copy_params:
        params = jax.tree.map(jnp.copy, params)
    tx = optimizer.make() if tx is None else tx
    state = init_state(params, tx)
    shardings = None
    if placement is not None:
        state, shardings = placement.state(state, tx)
    step_fn = make_train_step(loss_fn, tx, config=optimizer, accumulate=accumulate,
                              placement=placement, state_sharding=shardings)
    out_dir = Path(out_dir)
    checkpointer = Checkpointer(out_dir / "checkpoints" / name,
                                every=checkpoint_every or num_steps, keep=1)
    start = checkpointer.latest_step() or 0
    logger = MetricsLogger(out_dir, total_steps=num_steps, name=name, progress=progress,
                           initial_step=start, log=log)
    last: dict = {}

    def evaluate(params):
        last.clear()
        last.update(eval_fn(params))
        return last

    with context(placement):
        try:
            state = fit(state, step_fn, batch_fn, num_steps=num_steps,
                        checkpointer=checkpointer, logger=logger, log_every=log_every,
                        eval_fn=evaluate if eval_fn is not None else None,
                        eval_every=eval_every or (num_steps if eval_fn is not None else None),
                        stop_after=stop_after,
                        guard=NonFiniteGuard(optimizer.max_nonfinite_steps))
        finally:
            logger.close()
            checkpointer.close()
        if eval_fn is not None and not last:  # a run resumed after its last step
            evaluate(state.params)
    return state, dict(last)


