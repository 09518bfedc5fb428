"""Low-rank adapters on the projections of our pure-function transformer.

"LoRA: Low-Rank Adaptation of Large Language Models" (arXiv:2106.09685) freezes a
weight W [d_in, d_out] and trains a low-rank update of rank r and scale α/r:

    W' = W + (α/r) · A @ B        A [d_in, r] random, B [r, d_out] zeros

so a fresh adapter leaves the model unchanged. Defaults are those of "Tina: Tiny
Reasoning Models via LoRA" (arXiv:2504.15777): r = 32, α = 128 on all seven
projections q, k, v, o, gate, up, down.

Adapters are a separate pytree, one {"a": [L, d_in, r], "b": [L, r, d_out]} per
target, stacked over layers like the params; d_in and d_out flatten the projection's
input and output axes (q: D -> N·H, o: N·H -> D). `merge(base, adapters, lora)` is a
pure function returning params in our usual layout, so training differentiates
`loss(merge(base, adapters, lora), batch)` with respect to the adapters alone: the
base is an ordinary non-differentiated argument, the optimizer state covers only the
adapters, and the RL reference policy is the base params themselves (adapters off, no
second copy of the weights).

Deviation from Tina: no adapter dropout (Tina uses 0.05). Dropout acts on the input of
the adapter branch only, x·W + drop(x)·A·B, which a merged weight cannot express.

Export: `hf.save(path, config, merge(...))` writes a merged Hugging Face checkpoint;
`save_peft` writes a PEFT adapter directory (`adapter_config.json` +
`adapter_model.safetensors`) that `peft.PeftModel.from_pretrained` loads onto the base
model; `load_peft` reads one back (safetensors only).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from rewardjax import sharding
from rewardjax.models import transformer
from rewardjax.models.config import ConfigError, ModelConfig
from rewardjax.models.hf import CheckpointError

Adapters = dict[str, dict[str, jax.Array]]

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
# PeftModel wraps the *ForCausalLM under `base_model.model`; the decoder is its `model`.
_PEFT_PREFIX = "base_model.model.model.layers.{i}."


class _Projection(NamedTuple):
    param: str  # key under params["layers"]
    hf_module: str  # module path inside a Hugging Face decoder layer
    n_in: int  # how many axes after L are the projection's input axes


PROJECTIONS = {
    "q": _Projection("wq", "self_attn.q_proj", 1),
    "k": _Projection("wk", "self_attn.k_proj", 1),
    "v": _Projection("wv", "self_attn.v_proj", 1),
    "o": _Projection("wo", "self_attn.o_proj", 2),
    "gate": _Projection("w_gate", "mlp.gate_proj", 1),
    "up": _Projection("w_up", "mlp.up_proj", 1),
    "down": _Projection("w_down", "mlp.down_proj", 1),
}
_BY_HF_NAME = {p.hf_module.rsplit(".", 1)[1]: t for t, p in PROJECTIONS.items()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraConfig:
    """Rank, scale and targets of the adapters ("LoRA", arXiv:2106.09685).

    rank: r. alpha: α; the update is scaled by α/r. targets: projections to adapt, any
    of q, k, v, o, gate, up, down (Hugging Face's q_proj ... down_proj).
    """

    rank: int = 32
    alpha: float = 128.0
    targets: tuple[str, ...] = tuple(PROJECTIONS)

    def __post_init__(self):
        if isinstance(self.targets, (list, str)):
            object.__setattr__(self, "targets", tuple(
                [self.targets] if isinstance(self.targets, str) else self.targets))
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank <= 0:
            raise ConfigError(f"LoRA rank must be a positive int, got {self.rank!r}")
        if (not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool)
                or not self.alpha > 0):
            raise ConfigError(f"LoRA alpha must be a positive number, got {self.alpha!r}")
        if not self.targets:
            raise ConfigError(
                f"LoRA targets is empty; expected some of {', '.join(PROJECTIONS)}")
        for t in self.targets:
            if t not in PROJECTIONS:
                hint = f" (Hugging Face's {t!r} is {_BY_HF_NAME[t]!r})" if t in _BY_HF_NAME else ""
                raise ConfigError(
                    f"LoRA target {t!r} matches no projection of the model{hint}; available "
                    f"projections: {', '.join(PROJECTIONS)}")
        if len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"LoRA targets {self.targets} name a projection twice")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def check(self, config: ModelConfig) -> None:
        """Fails, before anything is compiled, when these adapters do not fit `config`."""
        shapes = _projection_shapes(config, self)
        for t, (d_in, d_out) in shapes.items():
            if self.rank > min(d_in, d_out):
                raise ConfigError(
                    f"LoRA rank {self.rank} exceeds target {t!r}'s smaller side "
                    f"min(d_in={d_in}, d_out={d_out}) = {min(d_in, d_out)} for this model; "
                    "a rank above it adds parameters but no capacity")


def _projection_shapes(config: ModelConfig, lora: LoraConfig) -> dict[str, tuple[int, int]]:
    """{target: (d_in, d_out)} of each target's flattened weight."""
    layers = transformer.param_shapes(config)["layers"]
    out = {}
    for t in lora.targets:
        p = PROJECTIONS[t]
        shape = layers[p.param][0][1:]
        out[t] = (math.prod(shape[:p.n_in]), math.prod(shape[p.n_in:]))
    return out


def init_lora(key: jax.Array, config: ModelConfig, lora: LoraConfig, *,
              dtype=jnp.float32) -> Adapters:
    """Fresh adapters: {target: {"a": [L, d_in, r], "b": [L, r, d_out]}}.

    A is drawn as PEFT's default (`kaiming_uniform_(a=√5)` on its [r, d_in] weight), which
    is U(−1/√d_in, 1/√d_in); B is zero, so W' = W until B trains ("LoRA", arXiv:2106.09685,
    which draws A from a Gaussian; the uniform keeps runs comparable with PEFT's).
    """
    lora.check(config)
    L, r = config.num_layers, lora.rank
    shapes = _projection_shapes(config, lora)
    keys = jax.random.split(key, len(shapes))
    out = {}
    for k, (t, (d_in, d_out)) in zip(keys, shapes.items()):
        bound = 1.0 / math.sqrt(d_in)
        a = jax.random.uniform(k, (L, d_in, r), jnp.float32, -bound, bound)
        out[t] = {"a": a.astype(dtype), "b": jnp.zeros((L, r, d_out), dtype)}
    return out


def lora_axes(config: ModelConfig, lora: LoraConfig) -> dict[str, dict[str, tuple]]:
    """Logical axis names of the adapters, from the rules table's names.

    A takes its weight's input axis (`embed`, or `heads`/`mlp` for o/down) and B its
    output axis (`heads`, `kv_heads`, `mlp` or `embed`), so under FSDP and tensor
    parallelism each factor is split like the side of W it multiplies; the rank axis
    is small and replicated.
    """
    axes = transformer.param_axes(config)["layers"]
    out = {}
    for t in lora.targets:
        p = PROJECTIONS[t]
        w_axes = axes[p.param]
        out[t] = {"a": ("layers", w_axes[1], None), "b": ("layers", None, w_axes[1 + p.n_in])}
    return out


def merge(params: transformer.Params, adapters: Adapters, lora: LoraConfig) -> transformer.Params:
    """params with W' = W + (α/r)·A@B on every adapted projection (pure, jittable).

    "LoRA: Low-Rank Adaptation of Large Language Models" (arXiv:2106.09685), eq. 3:
    h = W₀x + ΔWx = W₀x + BAx, here in our input-major layout (x @ W). The update is
    computed in float32 and added to W in float32 before casting back to W's dtype; with
    bfloat16 base weights an update smaller than W's rounding step is lost from the
    forward pass (not from the gradient).

    Args:
      params: base params with stacked layers (as `init_params` / `hf.load` give).
      adapters: from `init_lora` (or `load_peft`); its keys must be `lora.targets`.
      lora: the adapters' config (for α/r).
    """
    if set(adapters) != set(lora.targets):
        raise ConfigError(
            f"adapters hold targets {sorted(adapters)} but the LoRA config names "
            f"{sorted(lora.targets)}")
    layers = params["layers"]
    if not isinstance(layers, dict):
        raise ValueError("merge needs stacked layer params (a dict of [L, ...] arrays), "
                         f"got {type(layers).__name__}; merge before `unstack_layers`")
    merged = dict(layers)
    for t, ab in adapters.items():
        p = PROJECTIONS[t]
        w = layers[p.param]
        L, d_in = w.shape[0], math.prod(w.shape[1:1 + p.n_in])
        d_out = math.prod(w.shape[1 + p.n_in:])
        want = {"a": (L, d_in, lora.rank), "b": (L, lora.rank, d_out)}
        for name, shape in want.items():
            if ab[name].shape != shape:
                raise ValueError(
                    f"adapter {t}/{name} has shape {ab[name].shape} but layers/{p.param} "
                    f"{tuple(w.shape)} with rank {lora.rank} expects {shape}")
        delta = jnp.einsum("lir,lro->lio", ab["a"], ab["b"], preferred_element_type=jnp.float32)
        merged[p.param] = (w.astype(jnp.float32)
                           + lora.scale * delta.reshape(w.shape)).astype(w.dtype)
    return {**params, "layers": merged}


# ----------------------------------------------------------------------------- PEFT files


def _peft_name(i: int, target: str, factor: str) -> str:
    return _PEFT_PREFIX.format(i=i) + f"{PROJECTIONS[target].hf_module}.lora_{factor}.weight"


def save_peft(path: str | os.PathLike, config: ModelConfig, adapters: Adapters,
              lora: LoraConfig, *, base_model_name_or_path: str | None = None,
              dtype=None) -> Path:
    """Writes a PEFT LoRA adapter directory that `peft.PeftModel.from_pretrained` loads.

    Tensors are PEFT's `torch.nn.Linear` adapters ("LoRA", arXiv:2106.09685): per layer i
    and target, `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`
    [r, d_in] = A[i]ᵀ and `...lora_B.weight` [d_out, r] = B[i]ᵀ, so PEFT's
    ΔW = (α/r)·lora_B @ lora_A is our (α/r)·(A@B)ᵀ in Hugging Face's [out, in] layout.
    The flattened q/k/v output and o input order (head-major, n·H + h) is the one
    `hf.save` writes, and both sides rotate with rotate_half, so no permutation enters.

    Args:
      path: directory to create or fill.
      config: the base model's config (a causal LM).
      adapters, lora: from `init_lora` / training.
      base_model_name_or_path: recorded in adapter_config.json for `AutoPeftModel`.
      dtype: numpy/ml_dtypes dtype to store (default: the adapters' dtype).

    With several processes every process must call it; only process 0 writes.
    """
    if config.is_classifier:
        raise ConfigError(
            f"save_peft writes causal-LM adapters; config architecture is {config.architecture!r} "
            "(a classifier's score head is not an adapter: export a merged checkpoint instead)")
    lora.check(config)
    tensors = {}
    for t in lora.targets:
        for factor in ("a", "b"):
            # Every process joins each gather (adapters are small: whole on each host).
            full = sharding.host_local_array(adapters[t][factor])
            if dtype is not None:
                full = full.astype(dtype)
            for i in range(config.num_layers):
                tensors[_peft_name(i, t, factor.upper())] = np.ascontiguousarray(full[i].T)
    path = Path(path)
    peft_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "revision": None,
        "inference_mode": True,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": 0.0,
        "target_modules": [PROJECTIONS[t].hf_module.rsplit(".", 1)[1] for t in lora.targets],
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    if jax.process_index() == 0:  # as `hf.save`: one writer, every process gathers
        path.mkdir(parents=True, exist_ok=True)
        save_file(tensors, path / PEFT_WEIGHTS, metadata={"format": "pt"})
        (path / PEFT_CONFIG).write_text(json.dumps(peft_config, indent=2))
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(f"rewardjax.lora.save_peft:{path}")
    return path


# Settings under which a PEFT file is not W + (α/r)·B·A on plain Linear weights.
_UNSUPPORTED = {"use_dora": False, "use_rslora": False, "fan_in_fan_out": False,
                "bias": "none", "rank_pattern": {}, "alpha_pattern": {},
                "layers_to_transform": None, "modules_to_save": None}


def load_peft(path: str | os.PathLike, config: ModelConfig, *,
              dtype=jnp.float32) -> tuple[LoraConfig, Adapters]:
    """Reads a PEFT LoRA adapter directory (safetensors only) into (LoraConfig, adapters).

    The inverse of `save_peft` ("LoRA", arXiv:2106.09685), and it reads directories PEFT
    itself wrote for a causal LM of `config`'s shape. `lora_dropout` is a training
    setting and is ignored. Every expected tensor must be present with its shape and no
    other tensor may be; settings that change the update (DoRA, rsLoRA, per-module
    ranks, biases, fully trained modules) are refused.
    """
    path = Path(path)
    cfg_path, weights = path / PEFT_CONFIG, path / PEFT_WEIGHTS
    if not cfg_path.exists() or not weights.exists():
        found = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        raise CheckpointError(
            f"{path}: a PEFT adapter directory needs {PEFT_CONFIG} and {PEFT_WEIGHTS} "
            f"(directory holds {found}); pickled adapter_model.bin files are never read")
    raw = json.loads(cfg_path.read_text())

    def need(key):
        if key not in raw:
            raise CheckpointError(f"{cfg_path}: required field {key!r} is missing")
        return raw[key]

    if need("peft_type") != "LORA":
        raise CheckpointError(f"{cfg_path}: peft_type is {raw['peft_type']!r}; expected 'LORA'")
    for key, ok in _UNSUPPORTED.items():
        if raw.get(key) not in (ok, None):  # None: the field's default
            raise CheckpointError(
                f"{cfg_path}: {key}={raw[key]!r} is not supported; expected {ok!r}")
    modules = need("target_modules")
    if not isinstance(modules, list):
        raise CheckpointError(
            f"{cfg_path}: target_modules {modules!r} is a pattern; expected a list of module "
            f"names among {sorted(_BY_HF_NAME)}")
    unknown = [m for m in modules if m not in _BY_HF_NAME]
    if unknown:
        raise CheckpointError(
            f"{cfg_path}: target_modules {unknown} match no projection; available: "
            f"{sorted(_BY_HF_NAME)}")
    try:
        lora = LoraConfig(rank=need("r"), alpha=need("lora_alpha"),
                          targets=tuple(_BY_HF_NAME[m] for m in modules))
        lora.check(config)
    except ConfigError as e:
        raise CheckpointError(f"{cfg_path}: {e}") from e

    L, r = config.num_layers, lora.rank
    expected = {}
    for t, (d_in, d_out) in _projection_shapes(config, lora).items():
        for i in range(L):
            expected[_peft_name(i, t, "A")] = (r, d_in)
            expected[_peft_name(i, t, "B")] = (d_out, r)
    fields = (f"r={r}, hidden_size={config.hidden_size}, intermediate_size="
              f"{config.intermediate_size}, num_attention_heads={config.num_heads}, "
              f"num_key_value_heads={config.num_kv_heads}, head_dim={config.head_dim}")
    with safe_open(weights, framework="numpy") as f:
        present = set(f.keys())
        for name, shape in expected.items():
            if name not in present:
                raise CheckpointError(
                    f"{weights}: tensor {name!r} is missing; expected shape {shape} "
                    f"({fields}, num_hidden_layers={L})")
            found = tuple(f.get_slice(name).get_shape())
            if found != shape:
                raise CheckpointError(
                    f"{weights}: tensor {name!r} has shape {found} but the config ({fields}) "
                    f"expects {shape}")
        unexpected = sorted(present - set(expected))
        if unexpected:
            raise CheckpointError(
                f"{weights}: tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''} "
                f"are not expected for targets {list(modules)} on {L} layers")
        adapters = {
            t: {factor: jnp.asarray(np.stack(
                [f.get_tensor(_peft_name(i, t, factor.upper())).T for i in range(L)]), dtype)
                for factor in ("a", "b")}
            for t in lora.targets}
    return lora, adapters
