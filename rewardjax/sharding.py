"""Device meshes and the logical-axis rules table.

Every parameter and every activation at a block boundary carries *logical* axis names
("embed", "mlp", "batch", ...). One rules table maps logical names to the mesh axes
`data`, `fsdp` and `tensor`; FSDP and tensor parallelism are settings of that table,
never code changes in the model:

    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    rules = logical_rules(fsdp=True, tensor_parallel=True)
    with use_mesh(mesh, rules):
        params = place(params, param_axes(config), mesh, rules)
        logits, _ = apply(params, tokens, config=config)

A mesh axis is dropped from a spec (that dimension is replicated) when the dimension is
not divisible by the axis size, or when an earlier dimension of the same array already
uses that mesh axis; so a model with 2 KV heads still runs on tensor=4.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

Rules = tuple[tuple[str, Any], ...]


def logical_rules(*, fsdp: bool = True, tensor_parallel: bool = True) -> Rules:
    """The table from logical axis names to mesh axes.

    Args:
      fsdp: shard every parameter's `embed` dimension over the `fsdp` axis (ZeRO-3
        style; the batch is split over `data` and `fsdp` either way).
      tensor_parallel: shard heads, MLP width and vocabulary over the `tensor` axis
        (Megatron style), for parameters and activations alike.
    """
    tp = "tensor" if tensor_parallel else None
    return (
        # activations
        ("batch", ("data", "fsdp")),
        ("length", None),
        ("act_embed", None),
        ("act_heads", tp),
        ("act_kv_heads", tp),
        ("act_mlp", tp),
        ("act_vocab", tp),
        ("cache_length", None),
        # parameters
        ("vocab", tp),
        ("embed", "fsdp" if fsdp else None),
        ("heads", tp),
        ("kv_heads", tp),
        ("mlp", tp),
        ("head_dim", None),
        ("layers", None),
        ("norm", None),
        ("labels", None),
    )


DEFAULT_RULES = logical_rules()

_ACTIVE: contextvars.ContextVar[tuple[Mesh, Rules] | None] = contextvars.ContextVar(
    "rewardjax_mesh_rules", default=None
)


def make_mesh(*, data: int = 1, fsdp: int = 1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all devices).

    Axis types are `Auto` (GSPMD-style propagation from the shardings we declare);
    jax 0.10's `make_mesh` would otherwise default to explicit axes.
    """
    devices = list(jax.devices() if devices is None else devices)
    if data * fsdp * tensor != len(devices):
        raise ValueError(
            f"mesh (data={data}, fsdp={fsdp}, tensor={tensor}) has {data * fsdp * tensor} "
            f"slots but {len(devices)} devices were given; the product must equal the device count"
        )
    return jax.make_mesh((data, fsdp, tensor), MESH_AXES,
                         axis_types=(AxisType.Auto,) * 3, devices=devices)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeshConfig:
    """The mesh an experiment runs on: `--set mesh.data=2 mesh.fsdp=2 mesh.tensor=2`.

    The product data x fsdp x tensor must equal the number of devices (every host's,
    in a multi-host run). `data=None` puts every device fsdp x tensor leaves over on
    `data`, except in a one-process CPU run with fsdp = tensor = 1: simulated CPU devices
    (`--xla_force_host_platform_device_count`) exist for tests, so the default CPU run
    stays on one device. FSDP and tensor parallelism are on exactly when their axis is
    larger than one (`rules`).
    """

    data: int | None = None
    fsdp: int = 1
    tensor: int = 1

    def __post_init__(self):
        for name in MESH_AXES:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"mesh.{name} must be a positive integer, got {value!r}")

    @property
    def rules(self) -> Rules:
        return logical_rules(fsdp=self.fsdp > 1, tensor_parallel=self.tensor > 1)

    def shape(self, num_devices: int, platform: str = "cpu", num_processes: int = 1
              ) -> tuple[int, int, int]:
        """(data, fsdp, tensor) for `num_devices` devices; raises naming the settings if
        their product is not the device count."""
        inner = self.fsdp * self.tensor
        data = self.data
        if data is None:
            if platform == "cpu" and inner == 1 and num_processes == 1:
                return 1, 1, 1
            if num_devices % inner:
                raise ValueError(
                    f"mesh.fsdp x mesh.tensor = {self.fsdp} x {self.tensor} = {inner} does not "
                    f"divide the {num_devices} devices; set mesh.data so that data x fsdp x "
                    f"tensor = {num_devices}")
            data = num_devices // inner
        if data * inner != num_devices:
            raise ValueError(
                f"mesh (data={data}, fsdp={self.fsdp}, tensor={self.tensor}) has {data * inner} "
                f"slots but there are {num_devices} devices; the product of mesh.data, "
                f"mesh.fsdp and mesh.tensor must equal the device count")
        return data, self.fsdp, self.tensor

    def build(self, devices: Sequence[jax.Device] | None = None) -> Mesh:
        """The mesh over `devices` (default: every device of every process; on CPU with
        the default settings, the first device)."""
        devices = list(jax.devices() if devices is None else devices)
        data, fsdp, tensor = self.shape(len(devices), devices[0].platform, jax.process_count())
        return make_mesh(data=data, fsdp=fsdp, tensor=tensor,
                         devices=devices[:data * fsdp * tensor])


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: Rules = DEFAULT_RULES):
    """Activates `mesh` (jax.set_mesh) and `rules` for activation constraints."""
    token = _ACTIVE.set((mesh, rules))
    try:
        with jax.set_mesh(mesh):
            yield mesh
    finally:
        _ACTIVE.reset(token)


def active() -> tuple[Mesh, Rules] | None:
    return _ACTIVE.get()


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                    rules: Rules = DEFAULT_RULES) -> PartitionSpec:
    """PartitionSpec for an array of `shape` whose dimensions carry logical `names`."""
    if len(names) != len(shape):
        raise ValueError(f"logical axes {tuple(names)} do not match array shape {tuple(shape)}")
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for name, size in zip(names, shape):
        if name is not None and name not in table:
            raise ValueError(f"logical axis {name!r} has no rule; known: {sorted(table)}")
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        kept = []
        for axis in axes:
            n = mesh.shape[axis]
            if axis in used or n == 1:
                continue
            if size % (math.prod(mesh.shape[a] for a in kept) * n):
                continue
            kept.append(axis)
        used.update(kept)
        spec.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*spec)


def named_sharding(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                   rules: Rules = DEFAULT_RULES) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(names, shape, mesh, rules))


def tree_shardings(shapes: Any, axes: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """NamedShardings for a pytree of arrays (or ShapeDtypeStructs) and its axes tree."""
    return jax.tree.map(lambda names, x: named_sharding(names, x.shape, mesh, rules),
                        axes, shapes, is_leaf=_is_axes)


def place(tree: Any, axes: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """Puts every array of `tree` into the sharding its logical axes ask for."""
    return jax.device_put(tree, tree_shardings(tree, axes, mesh, rules))


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """`with_sharding_constraint` by logical names; a no-op outside `use_mesh`."""
    current = _ACTIVE.get()
    if current is None:
        return x
    mesh, rules = current
    return jax.lax.with_sharding_constraint(x, named_sharding(names, x.shape, mesh, rules))


def _is_axes(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(a, (str, type(None))) for a in x)


def host_local_array(x: jax.Array) -> np.ndarray:
    """The full value of a (possibly sharded, possibly multi-host) array on this host."""
    if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def initialize_distributed(*, coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           cpu_collectives: str | None = None) -> None:
    """`jax.distributed.initialize` for multi-host runs (a TPU pod, or local CPU processes).

    On a TPU pod all arguments are discovered from the environment; for several local
    CPU processes pass all three and `cpu_collectives="gloo"`. Call it first, before any
    other JAX call; afterwards `jax.devices()` lists every host's devices and
    `make_mesh` spans them all.
    """
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
