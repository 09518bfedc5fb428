"""Orbax checkpoints of the train state plus a small JSON of run metadata, with resume.

A checkpoint is not tied to the mesh that wrote it: `restore(template)` reads every
array straight into the template's sharding (orbax reads only the slices each local
device needs), so a state saved on (data=2, fsdp=2, tensor=2) over 8 devices resumes on
(1, 4, 1) over 4 devices or on one device. Before reading any array, the saved tree's
metadata is compared with the template: a state built from a different model or
optimizer config is refused with the first differing array named, rather than failing
deep inside orbax or restoring truncated, padded or silently cast values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
    """A checkpoint whose arrays differ from the state it is restored into."""


class Checkpointer:
    """Saves every `every` steps (keeping `keep` most recent) and restores the latest.

    Args:
      directory: where checkpoints go (one sub-directory per step).
      every: save when `step % every == 0` (and always on `force=True`).
    """

    def __init__(self, directory: str | os.PathLike, *, every: int = 100, keep: int = 2):
        if every <= 0:
            raise ValueError(f"checkpoint every must be > 0, got {every}")
        self.directory = Path(directory).absolute()
        self.every = every
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            # Declared up front so a fresh manager can read a step's metadata before
            # any save or restore has told it how each item is stored.
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()},
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def maybe_save(self, step: int, state: Any, meta: dict | None = None, *, force: bool = False) -> bool:
        if not force and step % self.every:
            return False
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})), force=True)
        self._manager.wait_until_finished()
        return True

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict] | None:
        """Restores into the structure, dtypes and shardings of `template` (or None).

        Args:
          template: a state of the same structure as the saved one (arrays or
            ShapeDtypeStructs with `sharding`); each array is read directly into its
            template leaf's sharding, whatever mesh the checkpoint was written from.
          step: the step to restore (default: the latest).

        Returns:
          (state, meta), or None when the directory holds no checkpoint.

        Raises:
          CheckpointMismatchError: a saved array is missing from the template, the
            template has an array the checkpoint lacks, or a shape or dtype differs;
            the first such array is named by its tree path.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        saved = self._manager.item_metadata(step)["state"]
        _check_matches(_flat(saved), _flat(abstract), f"{self.directory} step {step}")
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return restored["state"], dict(restored["meta"] or {})

    def close(self):
        self._manager.close()


def _key_name(k) -> str:
    # Orbax stores NamedTuples and dataclasses as dicts, so a template's attribute keys
    # and the saved tree's dict keys must print alike.
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _flat(tree: Any) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Tree path ("params/layers/wq") -> (shape, dtype) of every leaf, in tree order."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            shape, dtype = tuple(leaf.shape), np.dtype(leaf.dtype)
        else:
            value = np.asarray(leaf)
            shape, dtype = value.shape, value.dtype
        out["/".join(_key_name(k) for k in path)] = (shape, dtype)
    return out


def _describe(entry) -> str:
    shape, dtype = entry
    return f"shape {shape} {dtype.name}"


def _unmatched(keys: list[str]) -> tuple[str, str]:
    # Shallowest first, so a parameter is named before the optimizer moments that track it.
    keys = sorted(keys, key=lambda k: k.count("/"))
    more = f" and {len(keys) - 1} more ({', '.join(keys[1:4])}{', ...' if len(keys) > 4 else ''})"
    return keys[0], more if len(keys) > 1 else ""


def _check_matches(saved: dict, expected: dict, source: str) -> None:
    differs = "the model or optimizer config differs from the run that wrote it"
    for keys, side, where in (
            ([k for k in expected if k not in saved], expected,
             "in the state to restore into but not in the checkpoint"),
            ([k for k in saved if k not in expected], saved,
             "in the checkpoint but not in the state to restore into")):
        if keys:
            first, more = _unmatched(keys)
            raise CheckpointMismatchError(
                f"{source}: array {first!r} ({_describe(side[first])}) is {where}{more}; {differs}")
    for key, want in expected.items():
        if saved[key] != want:
            raise CheckpointMismatchError(
                f"{source}: array {key!r} was saved with {_describe(saved[key])} but the state "
                f"to restore into expects {_describe(want)}; {differs}")
