"""Memory planner: will a run fit, before any pod hour is spent?

    python -m rewardjax plan --config llama8b/config.json --mesh data=1,fsdp=64,tensor=1 \\
        --workload rl --batch 64 --length 512 --compute-dtype bfloat16 --device v5e

`plan(config, mesh, workload)` builds the step a trainer runs (`make_train_step` with
the trainer's loss, `Placement` and state shardings; or the sampler's `prefill` and
`decode`) against abstract arrays (`jax.ShapeDtypeStruct`s carrying their shardings:
no weight is read or allocated), compiles it ahead of time for a mesh of simulated
CPU devices and reads XLA's buffer assignment (`compiled.memory_analysis()`, which
is per device). Parameter and optimizer bytes are counted from the shardings (the
shard shape of every leaf) and printed next to the analytic total / (fsdp x tensor),
so a tensor the rules leave unsplit shows up as a gap.

The device count is fixed when JAX starts: `python -m rewardjax plan` sets
`XLA_FLAGS=--xla_force_host_platform_device_count=N` before importing JAX; library
callers start JAX with at least that many CPU devices themselves.

The figures are XLA's CPU compilation of the step. An accelerator's compiler fuses
and schedules differently (e.g. how many FSDP all-gathers are live at once), so
treat them as an estimate and leave headroom. Not included: host-side rollout
buffers, and, for an RL run, the train state that stays on the devices while
sampling (plan `rl` and `sample` separately and add the state) and a KL reference
copy of the weights (`Workload.kl_reference`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import heads, models
from rewardjax.models import ModelConfig, hf, lora as lora_lib
from rewardjax.sampling import SamplerConfig, sampler
from rewardjax.sharding import MESH_AXES, MeshConfig
from rewardjax.train import placement as placement_lib, reward_model, rl, sft
from rewardjax.train.state import OptimizerConfig, init_state, make_train_step

GiB = 2 ** 30
# Memory per chip (HBM) of the accelerators a plan is checked against.
ACCELERATORS = {"v4": 32 * GiB, "v5e": 16 * GiB, "v5p": 95 * GiB, "H100": 80 * GiB,
                "H200": 141 * GiB}
WORKLOADS = ("rl", "rm", "sft", "sample")
DTYPES = ("float32", "bfloat16", "float16")
REMAT = models.transformer.REMAT_POLICIES


class PlanError(ValueError):
    """A planner setting that cannot be planned (named, with what was expected)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Workload:
    """The step to plan.

    Attributes:
      kind: "rl" (one `rl_loss` update: B rows of `length` tokens, the last
        `completion_length` of them a completion), "rm" (one Bradley–Terry step on B
        pairs of `length` tokens), "sft" (one SFT step on B sequences) or "sample"
        (the sampler's prefill of B prompts and its decode loop with a KV cache of
        `length` slots, `completion_length` of them for new tokens).
      batch: B, rows of the (global) batch; each micro-batch's rows must split over
        data x fsdp.
      length: tokens per row (for "sample": the cache length, prompt + new tokens).
      completion_length: "rl" / "sample" only; default `length // 2`.
      micro_batches: gradient-accumulation micro-batches of a train step.
      param_dtype: the stored (master) params, and so the optimizer state.
      compute_dtype: the dtype the forward/backward pass sees the params in (None:
        `param_dtype`); the sampler runs on the stored params, as the RL loop does.
      lora: train LoRA adapters on frozen base params ("rl" and "sft").
      remat, scan_layers: the backbone's rematerialisation ("none", "full", "dots") and
        `lax.scan` over layers in a train step (`BackboneConfig.apply_kwargs`).
      kl_reference: "rl" without LoRA: a frozen reference policy (`RLConfig.kl_coef >
        0`) stays on the devices, placed like the params (with LoRA the reference is
        the base itself).
    """

    kind: str
    batch: int
    length: int
    completion_length: int | None = None
    micro_batches: int = 1
    param_dtype: str = "float32"
    compute_dtype: str | None = None
    lora: lora_lib.LoraConfig | None = None
    remat: str = "none"
    scan_layers: bool = False
    kl_reference: bool = False

    def __post_init__(self):
        if self.kind not in WORKLOADS:
            raise PlanError(f"workload {self.kind!r} is not one the planner knows; expected one "
                            f"of {', '.join(WORKLOADS)}")
        for name in ("batch", "length", "micro_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise PlanError(f"workload {name} must be a positive int, got {value!r}")
        if self.batch % self.micro_batches:
            raise PlanError(f"batch {self.batch} does not split into micro_batches "
                            f"{self.micro_batches}; expected a multiple of it")
        if self.completion_length is not None:
            if self.kind not in ("rl", "sample"):
                raise PlanError(f"completion_length is for the rl and sample workloads, not "
                                f"{self.kind!r}")
            if not 0 < self.completion_length < self.length:
                raise PlanError(f"completion_length must be in [1, length) = [1, {self.length}), "
                                f"got {self.completion_length}")
        elif self.length < 2 and self.kind in ("rl", "sample"):
            raise PlanError(f"length must be >= 2 for {self.kind!r} (prompt + completion), "
                            f"got {self.length}")
        for name in ("param_dtype", "compute_dtype"):
            value = getattr(self, name)
            if value is not None and value not in DTYPES:
                raise PlanError(f"{name} must be one of {', '.join(DTYPES)}, got {value!r}")
        if self.lora is not None and self.kind not in ("rl", "sft"):
            raise PlanError(f"LoRA is planned for the rl and sft workloads, not {self.kind!r}")
        if self.remat not in REMAT:
            raise PlanError(f"remat must be one of {', '.join(REMAT)}, got {self.remat!r}")
        if (self.remat != "none" or self.scan_layers) and self.kind == "sample":
            raise PlanError("remat / scan_layers are train-step settings; the sampler's "
                            "decode loop reads per-layer weights and has neither")
        if self.kl_reference and (self.kind != "rl" or self.lora is not None):
            raise PlanError("kl_reference is for the rl workload without LoRA (with LoRA the "
                            f"reference is the frozen base); got kind={self.kind!r}, "
                            f"lora={self.lora!r}")
        if self.micro_batches != 1 and self.kind == "sample":
            raise PlanError("micro_batches is a train-step setting; the sample workload has none")

    @property
    def completion(self) -> int:
        return self.completion_length or self.length // 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProgramMemory:
    """XLA's per-device buffer assignment of one compiled program (bytes)."""

    name: str
    argument: int
    output: int
    alias: int  # outputs written into donated arguments
    temp: int
    compile_seconds: float  # tracing, lowering and compiling

    @property
    def total(self) -> int:
        return self.argument + self.output - self.alias + self.temp


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """Per-device memory of one workload on one mesh, in bytes.

    `params` counts every parameter a step holds (with LoRA: the adapters plus the
    frozen base, `frozen_params`); `analytic_*` are the unsharded totals divided by
    fsdp x tensor, the ways the rules can split a parameter (`data` replicates it).
    `programs` are the compiled programs (a train step, or the sampler's prefill and
    decode); `resident` is memory held outside them (a KL reference policy). `total` is
    the largest program's arguments + unaliased outputs + temporaries, plus `resident`.
    """

    model: str
    num_params: int
    mesh: tuple[int, int, int]
    workload: Workload
    params: int
    frozen_params: int
    optimizer: int
    analytic_params: float
    analytic_optimizer: float
    resident: int
    programs: tuple[ProgramMemory, ...]

    @property
    def devices(self) -> int:
        return math.prod(self.mesh)

    @property
    def peak(self) -> ProgramMemory:
        return max(self.programs, key=lambda p: p.total)

    @property
    def total(self) -> int:
        return self.peak.total + self.resident

    def fits(self, device: str) -> bool:
        return self.total <= ACCELERATORS[accelerator(device)]

    def to_dict(self) -> dict:
        """The figures as JSON-ready values (with each program's total and the verdicts)."""
        out = dataclasses.asdict(self)
        out["programs"] = [{**dataclasses.asdict(p), "total": p.total} for p in self.programs]
        out.update(devices=self.devices, total=self.total,
                   fits={name: self.fits(name) for name in ACCELERATORS})
        return out


def accelerator(name: str) -> str:
    """The `ACCELERATORS` key for `name`, case-insensitively."""
    for key in ACCELERATORS:
        if key.lower() == name.lower():
            return key
    raise PlanError(f"device {name!r} is not one the planner knows; expected one of "
                    f"{', '.join(ACCELERATORS)}")


def load_config(path: str | os.PathLike) -> ModelConfig:
    """`ModelConfig` from a Hugging Face `config.json` (or the directory holding one)."""
    path = Path(path)
    if path.is_dir():
        return hf.read_config(path)
    if not path.exists():
        raise PlanError(f"model config {str(path)!r} does not exist; expected a config.json "
                        "or a directory holding one")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: not valid JSON ({e})") from None
    return ModelConfig.from_hf(raw, source=str(path))


# ----------------------------------------------------------------------------- planning


def _bytes_per_device(tree, shardings) -> int:
    return sum(math.prod(sh.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
               for x, sh in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)))


def _total_bytes(tree) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _splits(mesh) -> int:
    return mesh.shape["fsdp"] * mesh.shape["tensor"]


def _abstract(tree, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        tree, shardings)


def _memory(name: str, lowered, start: float):
    compiled = lowered.compile()
    stats = compiled.memory_analysis()
    return compiled, ProgramMemory(
        name=name, argument=stats.argument_size_in_bytes, output=stats.output_size_in_bytes,
        alias=stats.alias_size_in_bytes, temp=stats.temp_size_in_bytes,
        compile_seconds=time.perf_counter() - start)


def _mesh(mesh_config: MeshConfig):
    if mesh_config.data is None:
        raise PlanError("mesh.data is None; a plan needs every mesh axis set (data, fsdp, "
                        "tensor)")
    size = mesh_config.data * mesh_config.fsdp * mesh_config.tensor
    devices = jax.devices("cpu")
    if len(devices) < size:
        raise PlanError(
            f"mesh {', '.join(f'{a}={getattr(mesh_config, a)}' for a in MESH_AXES)} needs "
            f"{size} devices but JAX started with {len(devices)} CPU devices; set XLA_FLAGS="
            f"--xla_force_host_platform_device_count={size} before importing jax "
            "(`python -m rewardjax plan` does)")
    return mesh_config.build(devices[:size])


def _rows(workload: Workload, mesh) -> int:
    ways = mesh.shape["data"] * mesh.shape["fsdp"]
    rows = workload.batch // workload.micro_batches
    if rows % ways:
        what = "batch" if workload.micro_batches == 1 else "batch / micro_batches"
        raise PlanError(f"{what} = {rows} rows do not split over data x fsdp = {ways} devices; "
                        f"expected a multiple of {ways}")
    return rows


def _train_batch(workload: Workload, rows: int) -> dict:
    M, S = workload.micro_batches, workload.length

    def arr(*shape, dtype):
        return jax.ShapeDtypeStruct((M, rows) + shape, dtype)

    if workload.kind == "rl":
        T = workload.completion
        return {"tokens": arr(S, dtype=jnp.int32), "mask": arr(S, dtype=jnp.bool_),
                "completion_mask": arr(T, dtype=jnp.bool_),
                **{k: arr(T, dtype=jnp.float32) for k in
                   ("old_logp", "advantages", "ref_logp", "old_values", "returns")},
                "denominator": arr(dtype=jnp.float32)}
    if workload.kind == "sft":
        return {"tokens": arr(S, dtype=jnp.int32), "attention_mask": arr(S, dtype=jnp.bool_),
                "loss_mask": arr(S, dtype=jnp.bool_), "positions": arr(S, dtype=jnp.int32),
                "denominator": arr(dtype=jnp.float32)}
    side = {"tokens": arr(S, dtype=jnp.int32), "attention_mask": arr(S, dtype=jnp.bool_)}
    return {"chosen": side, "rejected": dict(side), "margin": arr(dtype=jnp.float32)}


def _train_loss(workload: Workload, config):
    kwargs = {"remat": workload.remat, "scan_layers": workload.scan_layers}
    if workload.kind == "rl":
        rl_config = rl.RLConfig(prompts_per_step=workload.batch, group_size=1,
                                max_new_tokens=workload.completion,
                                prompt_length=workload.length - workload.completion,
                                micro_batches=workload.micro_batches)
        return functools.partial(rl.rl_loss, config=config, rl=rl_config, **kwargs), "sum"
    if workload.kind == "sft":
        return functools.partial(sft.sft_loss, config=config, **kwargs), "sum"
    return functools.partial(reward_model.pairwise_loss, config=config, **kwargs), "mean"


def _plan_train(config, mesh, mesh_config, workload: Workload):
    rows = _rows(workload, mesh)
    dtype = jnp.dtype(workload.param_dtype)
    compute = jnp.dtype(workload.compute_dtype) if workload.compute_dtype else None
    backbone = models.abstract_params(config, dtype)
    frozen = frozen_shardings = assemble = extra_axes = None
    if workload.lora is not None:
        lora = workload.lora
        lora.check(config)
        trainable = jax.eval_shape(functools.partial(lora_lib.init_lora, config=config, lora=lora,
                                                     dtype=dtype), jax.random.key(0))
        extra_axes = lora_lib.lora_axes(config, lora)
        frozen = backbone
        frozen_shardings = placement_lib.param_shardings(frozen, config, mesh, mesh_config.rules)
        assemble = lambda adapters, base: lora_lib.merge(base, adapters, lora)  # noqa: E731
    elif workload.kind == "rm":
        # As `reward_model.init_reward_model`: a float32 head on the backbone.
        head = jax.eval_shape(functools.partial(heads.init_scalar_head,
                                                hidden_size=config.hidden_size),
                              jax.random.key(0))
        trainable = {"backbone": backbone, "head": head}
    else:
        trainable = backbone

    opt_config = OptimizerConfig()
    optimizer = opt_config.make()
    state = jax.eval_shape(lambda p: init_state(p, optimizer), trainable)
    placement = placement_lib.Placement(mesh=mesh, rules=mesh_config.rules, config=config,
                                        compute_dtype=compute, extra_axes=extra_axes)
    shardings = placement_lib.state_shardings(state, optimizer, config, mesh, mesh_config.rules,
                                              extra_axes)
    loss_fn, accumulate = _train_loss(workload, config)
    step = make_train_step(loss_fn, optimizer, config=opt_config, accumulate=accumulate,
                           assemble=assemble, placement=placement, state_sharding=shardings)
    rows_sh = placement_lib.batch_sharding(mesh)
    batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rows_sh),
                         _train_batch(workload, rows))
    frozen_in = None if frozen is None else _abstract(frozen, frozen_shardings)
    start = time.perf_counter()
    with placement.context():
        lowered = step.jitted.lower(_abstract(state, shardings), batch, frozen_in)
    _, program = _memory("train_step", lowered, start)

    frozen_bytes = 0 if frozen is None else _bytes_per_device(frozen, frozen_shardings)
    params_bytes = _bytes_per_device(state.params, shardings.params) + frozen_bytes
    all_params = _total_bytes(state.params) + (0 if frozen is None else _total_bytes(frozen))
    resident = 0
    if workload.kl_reference:
        resident = _bytes_per_device(backbone, placement_lib.param_shardings(
            backbone, config, mesh, mesh_config.rules))
    return dict(params=params_bytes, frozen_params=frozen_bytes,
                optimizer=_bytes_per_device(state.opt_state, shardings.opt_state),
                analytic_params=all_params / _splits(mesh),
                analytic_optimizer=_total_bytes(state.opt_state) / _splits(mesh),
                resident=resident, programs=(program,))


def _plan_sample(config, mesh, mesh_config, workload: Workload):
    rows = _rows(workload, mesh)
    T = workload.completion
    P = workload.length - T
    params = models.abstract_params(config, jnp.dtype(workload.param_dtype))
    param_sh = placement_lib.param_shardings(params, config, mesh, mesh_config.rules)
    sampling = SamplerConfig(max_new_tokens=T, num_samples=1, prompt_buckets=(P,))
    rows_sh = placement_lib.batch_sharding(mesh, micro=False)
    prompts = jax.ShapeDtypeStruct((rows, P), jnp.int32, sharding=rows_sh)
    prompt_mask = jax.ShapeDtypeStruct((rows, P), jnp.bool_, sharding=rows_sh)
    key = jax.eval_shape(lambda: jax.random.key(0))
    key = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=placement_lib.replicated(mesh))
    params_in = _abstract(params, param_sh)
    placement = placement_lib.Placement(mesh=mesh, rules=mesh_config.rules, config=config)
    with placement.context():
        start = time.perf_counter()
        lowered = sampler.prefill.lower(params_in, prompts, prompt_mask, key, config=config,
                                        sampling=sampling)
        compiled, prefill = _memory("prefill", lowered, start)
        state = jax.eval_shape(functools.partial(sampler.prefill, config=config,
                                                 sampling=sampling),
                               params_in, prompts, prompt_mask, key)
        state_in = _abstract(state, compiled.output_shardings)
        start = time.perf_counter()
        lowered = sampler.decode.lower(params_in, state_in, config=config, sampling=sampling)
        _, decode = _memory("decode", lowered, start)
    params_bytes = _bytes_per_device(params, param_sh)
    return dict(params=params_bytes, frozen_params=0, optimizer=0,
                analytic_params=_total_bytes(params) / _splits(mesh), analytic_optimizer=0.0,
                resident=0, programs=(prefill, decode))


def plan(config: ModelConfig, mesh_config: MeshConfig, workload: Workload) -> Plan:
    """Compiles `workload` for `config` on the mesh of `mesh_config` against abstract arrays
    and returns its per-device memory (see the module docstring).

    Args:
      config: a `ModelConfig` (e.g. `load_config("config.json")`).
      mesh_config: a `MeshConfig` with every axis set; JAX must have at least that
        many CPU devices.
      workload: the step to plan.
    """
    mesh = _mesh(mesh_config)
    build = _plan_sample if workload.kind == "sample" else _plan_train
    figures = build(config, mesh, mesh_config, workload)
    return Plan(model=config.architecture, num_params=config.num_params(),
                mesh=(mesh.shape["data"], mesh.shape["fsdp"], mesh.shape["tensor"]),
                workload=workload, **figures)


# ----------------------------------------------------------------------------- report


def _size(n: float) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def _describe(w: Workload) -> str:
    what = {"rl": f"RL update, {w.batch} rows x {w.length} tokens ({w.completion} completion)",
            "rm": f"reward-model step, {w.batch} pairs x {w.length} tokens",
            "sft": f"SFT step, {w.batch} rows x {w.length} tokens",
            "sample": f"sampling, {w.batch} rows, KV cache of {w.length} slots "
                      f"({w.length - w.completion} prompt + {w.completion} new)"}[w.kind]
    extras = [f"params {w.param_dtype}"]
    if w.compute_dtype and w.kind != "sample":
        extras.append(f"compute {w.compute_dtype}")
    if w.micro_batches > 1:
        extras.append(f"{w.micro_batches} micro-batches")
    if w.lora is not None:
        extras.append(f"LoRA r={w.lora.rank} on {','.join(w.lora.targets)}")
    if w.remat != "none":
        extras.append(f"remat {w.remat}")
    if w.scan_layers:
        extras.append("scan over layers")
    if w.kl_reference:
        extras.append("KL reference on device")
    return f"{what}; {', '.join(extras)}"


def format_plan(p: Plan, device: str | None = None) -> str:
    """The plan as a table of per-device bytes, and whether it fits each accelerator in
    `ACCELERATORS` (or only `device`)."""
    data, fsdp, tensor = p.mesh
    lines = [f"model     {p.model}, {p.num_params:,} parameters",
             f"mesh      data={data} fsdp={fsdp} tensor={tensor} ({p.devices} devices)",
             f"workload  {_describe(p.workload)}",
             "",
             f"{'per device':<30}{'bytes':>17}{'':>12}   analytic: total / (fsdp x tensor)"]

    def row(label, n, analytic=None):
        tail = "" if analytic is None else f"   {_size(analytic)}"
        lines.append(f"{label:<30}{n:>17,}{_size(n):>12}{tail}")

    if p.frozen_params:
        row("parameters: trainable", p.params - p.frozen_params)
        row("parameters: frozen base", p.frozen_params)
    row("parameters", p.params, p.analytic_params)
    if p.workload.kind != "sample":
        row("optimizer state", p.optimizer, p.analytic_optimizer)
    for prog in p.programs:
        lines.append(f"XLA {prog.name} (compiled in {prog.compile_seconds:.1f} s)")
        row("  arguments", prog.argument)
        row("  outputs not aliased", prog.output - prog.alias)
        row("  temporaries", prog.temp)
        row("  program total", prog.total)
    if p.resident:
        row("KL reference (resident)", p.resident)
    row(f"total (peak: {p.peak.name})", p.total)
    lines.append("")
    for name in ACCELERATORS if device is None else [accelerator(device)]:
        size = ACCELERATORS[name]
        verdict = "fits" if p.total <= size else "does not fit"
        lines.append(f"{name:>5} {size // GiB:>4} GiB: {verdict} ({100 * p.total / size:.0f}% used)")
    if p.workload.kind == "sample":
        lines.append("note: XLA on CPU hoists loop-invariant work out of the decode loop (the "
                     "FSDP all-gathers of the weights, sampler.decode_params' CPU re-layout), "
                     "so decode's temporaries here can exceed an accelerator's")
    return "\n".join(lines)
