"""Where a trainer's arrays live on the mesh.

Parameters and optimizer state are placed by the logical rules (`rewardjax.sharding`):
every backbone inside a params tree (a dict with `embed` and `layers`, wherever it sits:
the policy itself, `{"backbone", "head"}` of a reward model, `{"policy", "critic"}`)
takes `models.param_axes(config)`; other leaves (heads, small adapters without declared
axes) are replicated. The optimizer state mirrors the params it tracks
(`optax.tree_map_params`): Adam's moments are split exactly like their parameters, its
step counters are replicated.

Batches are split over (`data`, `fsdp`) on their batch axis. Every process computes
the same global batch (a pure function of the step: `train.loop.make_batch_fn`), and
only the rows of its own devices are copied to them (`jax.make_array_from_callback`),
so the same call builds a global array on one host and on a pod. A batch axis that the
mesh does not divide is an error naming the leaf, not a silent replication.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rewardjax import sharding
from rewardjax.models import ModelConfig, param_axes

BATCH_AXES = ("data", "fsdp")


def _is_backbone(tree: Any) -> bool:
    return isinstance(tree, dict) and "embed" in tree and "layers" in tree


def tree_axes(tree: Any, config: ModelConfig, extra_axes: dict[str, Any] | None = None) -> Any:
    """Logical axis names for every leaf of a params tree (see the module docstring).

    `extra_axes` maps a top-level key of `tree` to the axes tree of that subtree (e.g.
    LoRA adapters: `{"adapters": lora.lora_axes(...)}`).
    """
    full = param_axes(config)
    extra_axes = extra_axes or {}

    def walk(node, top: bool):
        if _is_backbone(node):
            return _backbone_axes(node, full)
        if isinstance(node, dict):
            return {k: extra_axes[k] if top and k in extra_axes else walk(v, False)
                    for k, v in node.items()}
        if isinstance(node, (list, tuple)) and not hasattr(node, "shape"):
            return type(node)(walk(v, False) for v in node)
        return (None,) * np.ndim(node)

    return walk(tree, True)


def _backbone_axes(node: dict, full: dict) -> dict:
    out = {}
    for k, v in node.items():
        if k not in full:
            raise ValueError(f"backbone parameter {k!r} is not one the model config declares; "
                             f"known: {sorted(full)}")
        out[k] = _backbone_axes(v, full[k]) if isinstance(v, dict) else full[k]
    return out


def param_shardings(tree: Any, config: ModelConfig, mesh: Mesh,
                    rules: sharding.Rules, extra_axes: dict[str, Any] | None = None) -> Any:
    """NamedShardings for a params tree (arrays or ShapeDtypeStructs)."""
    return sharding.tree_shardings(tree, tree_axes(tree, config, extra_axes), mesh, rules)


def place_params(tree: Any, config: ModelConfig, mesh: Mesh, rules: sharding.Rules,
                 extra_axes: dict[str, Any] | None = None) -> Any:
    """`tree` put into the shardings its logical axes ask for."""
    return _device_put(tree, param_shardings(tree, config, mesh, rules, extra_axes))


def _device_put(tree: Any, shardings: Any) -> Any:
    # In a multi-host run an array made on this process (a new head, fresh optimizer
    # state: the same values on every process) is one process's array; it enters a
    # mesh spanning every host as the global value it is (as numpy).
    if jax.process_count() > 1:
        tree = jax.tree.map(lambda x: np.asarray(x) if isinstance(x, jax.Array)
                            and x.is_fully_addressable else x, tree)
    return jax.device_put(tree, shardings)


def opt_state_shardings(optimizer: optax.GradientTransformation, abstract_opt_state: Any,
                        params_shardings: Any, mesh: Mesh) -> Any:
    """Shardings of an optax state: params-shaped parts take the params' shardings,
    everything else (counters, schedules) is replicated."""
    replicated = NamedSharding(mesh, PartitionSpec())
    return optax.tree_map_params(
        optimizer, lambda _, s: s, abstract_opt_state, params_shardings,
        transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, NamedSharding))


def state_shardings(state, optimizer: optax.GradientTransformation, config: ModelConfig,
                    mesh: Mesh, rules: sharding.Rules,
                    extra_axes: dict[str, Any] | None = None):
    """Shardings of a `TrainState` (arrays or ShapeDtypeStructs)."""
    p = param_shardings(state.params, config, mesh, rules, extra_axes)
    o = opt_state_shardings(optimizer, state.opt_state, p, mesh)
    return type(state)(step=NamedSharding(mesh, PartitionSpec()), params=p, opt_state=o)


def batch_sharding(mesh: Mesh, *, micro: bool = True) -> NamedSharding:
    """Rows split over (data, fsdp); `micro`: leaves carry a leading micro-batch axis."""
    lead = (None,) if micro else ()
    return NamedSharding(mesh, PartitionSpec(*lead, BATCH_AXES))


def check_batch(batch: Any, mesh: Mesh, *, micro: bool = True) -> None:
    """Raises naming the first leaf whose batch axis the (data, fsdp) split does not divide."""
    ways = mesh.shape["data"] * mesh.shape["fsdp"]
    axis = 1 if micro else 0
    for path, x in jax.tree_util.tree_flatten_with_path(batch)[0]:
        rows = np.shape(x)[axis] if np.ndim(x) > axis else None
        if rows is None or rows % ways:
            name = jax.tree_util.keystr(path)
            raise ValueError(
                f"batch leaf {name} has shape {np.shape(x)}: its batch axis {axis} must be "
                f"divisible by data x fsdp = {ways}; change the batch size or the mesh")


def put_batch(batch: Any, mesh: Mesh, *, micro: bool = True) -> Any:
    """Global arrays split over (data, fsdp) from the global batch every process holds;
    each device gets only its rows."""
    check_batch(batch, mesh, micro=micro)
    target = batch_sharding(mesh, micro=micro)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, target, lambda index: x[index])

    return jax.tree.map(put, batch)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


@dataclasses.dataclass(frozen=True, eq=False)
class Placement:
    """A mesh with its rules, the model whose backbones it places, and the compute dtype:
    everything a trainer needs to run on a mesh beyond its loss.

    `trainer(..., placement=None)` runs unplaced on the default device, as before; a
    `Placement` on a one-device mesh runs the same computation placed.
    """

    mesh: Mesh
    rules: sharding.Rules
    config: ModelConfig
    compute_dtype: Any = None
    extra_axes: dict | None = None

    def params(self, tree: Any) -> Any:
        return place_params(tree, self.config, self.mesh, self.rules, self.extra_axes)

    def state(self, state, optimizer: optax.GradientTransformation):
        """(state placed by the rules, its shardings)."""
        shardings = state_shardings(state, optimizer, self.config, self.mesh, self.rules,
                                    self.extra_axes)
        return _device_put(state, shardings), shardings

    def batch(self, batch: Any, *, micro: bool = True) -> Any:
        return put_batch(batch, self.mesh, micro=micro)

    def context(self):
        """`with placement.context():` activates the mesh and rules for tracing."""
        return sharding.use_mesh(self.mesh, self.rules)

    @property
    def rows(self) -> int:
        """How many ways a batch is split (data x fsdp)."""
        return self.mesh.shape["data"] * self.mesh.shape["fsdp"]


def context(placement: Placement | None):
    """The placement's mesh context, or a no-op without one."""
    return contextlib.nullcontext() if placement is None else placement.context()
