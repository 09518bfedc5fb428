"""A Flax NNX view of the pure-function transformer, for tools built on NNX.

Our trainers call `apply(params, tokens, ...)` on a params pytree. Tools written for
Flax NNX (Tunix's trainers, `nnx.Optimizer`, `nnx.jit`, `nnx.value_and_grad`) take a
module whose state is `nnx.Param` variables instead. `Transformer` is that module with
no layers of its own: its state *is* our params tree, leaf for leaf and path for path
(`embed`, `layers/wq`, ...), and `__call__` reads the values back out and calls
`apply`. Both views compute the same function, and converting either way wraps or
unwraps the same arrays without copying them:

    model = Transformer.from_params(config, params)   # pure -> NNX
    params = model.to_params()                         # NNX -> pure

Sharding. Each Param carries two pieces of flax's sharding metadata: `out_sharding`,
its logical axis names (what NNX tools such as qwix read and rewrite), and
`sharding_rules`, where those names go on the mesh. With a mesh, the rules are ours
resolved for that array by `sharding.logical_to_spec` (axes that do not divide the
dimension, or have size 1, are dropped), so `nnx.get_named_sharding(nnx.state(model),
mesh)` equals `sharding.tree_shardings(params, param_axes(config), mesh, rules)` with
no flax rules context. Without a mesh the table itself is stored and flax substitutes
names directly, which agrees whenever every sharded dimension divides its mesh axes.
The metadata never moves data (`eager_sharding=False`): params from `hf.load(...,
mesh=...)` are already placed, and `sharding.place` places others.

`TunixTransformer` adds Tunix's calling convention; see its docstring for what it does
and does not cover.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from rewardjax import sharding
from rewardjax.models import transformer
from rewardjax.models.config import ModelConfig
from rewardjax.models.transformer import KVCache, Params


class Transformer(nnx.Module):
    """Our decoder (`models.apply`) as an `nnx.Module` whose state is the params tree.

    Exactly one of `params` (see `from_params`) or `rngs` (random init by
    `init_params` with `dtype` and `std`, drawn from `rngs.params()`) is given.
    `mesh` and `rules` resolve the sharding metadata (module docstring); they default
    to the ones active under `sharding.use_mesh`, else no mesh and `DEFAULT_RULES`.
    `remat` and `scan_layers` are passed to every `apply`.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs | None = None,
                 params: Params | None = None, mesh: Mesh | None = None,
                 rules: sharding.Rules | None = None, dtype=jnp.float32,
                 std: float = 0.02, remat: str = "none", scan_layers: bool = False):
        if (rngs is None) == (params is None):
            raise ValueError("Transformer needs exactly one of rngs= (random init) or "
                             "params= (wrap existing params); got "
                             f"{'both' if rngs is not None else 'neither'}")
        if remat not in transformer.REMAT_POLICIES:
            raise ValueError(f"remat must be one of {transformer.REMAT_POLICIES}, got {remat!r}")
        if params is None:
            params = transformer.init_params(config, rngs.params(), dtype=dtype, std=std)
        _check_params(config, params)
        active = sharding.active()
        if mesh is None and active is not None:
            mesh = active[0]
        if rules is None:
            rules = active[1] if active is not None else sharding.DEFAULT_RULES
        self.config = config
        self.remat = remat
        self.scan_layers = scan_layers
        variables = jax.tree.map(lambda axes, x: _param(x, axes, mesh, rules),
                                 transformer.param_axes(config), params,
                                 is_leaf=lambda a: isinstance(a, tuple))
        # One attribute per top-level key, so the NNX state paths are the params paths.
        for name, value in variables.items():
            setattr(self, name, nnx.data(value))

    @classmethod
    def from_params(cls, config: ModelConfig, params: Params, **kwargs) -> "Transformer":
        """Wraps `params` (the layout of `param_axes(config)`) without copying."""
        return cls(config, params=params, **kwargs)

    def to_params(self) -> Params:
        """The pure view: our params dict holding the module's current arrays."""
        return nnx.to_pure_dict(nnx.state(self, nnx.Param))

    def __call__(self, tokens_bt: jax.Array, positions_bt: jax.Array | None = None, *,
                 mask: jax.Array | None = None, cache: KVCache | None = None,
                 output: str = "logits") -> tuple[jax.Array, KVCache | None]:
        """`models.apply(self.to_params(), tokens_bt, positions_bt, mask_bt=mask,
        cache=cache, output=output)`: (logits or hidden states, cache)."""
        return transformer.apply(self.to_params(), tokens_bt, positions_bt,
                                 config=self.config, mask_bt=mask, cache=cache,
                                 output=output, remat=self.remat,
                                 scan_layers=self.scan_layers)


class TunixTransformer(Transformer):
    """`Transformer` called the way Tunix's trainers call a model.

    Tunix's PEFT trainer calls `model(input_tokens, positions, None, attention_mask)`
    and its RL log-prob code `model(input_tokens, positions=, attention_mask=,
    cache=None)`; both unpack `logits, _ = ...`. Tunix's `attention_mask` is
    `make_causal_attn_mask(input_mask)`: [B, T, T], causal AND key-is-real, whose
    diagonal is the [B, T] padding mask; `apply` builds that same causal AND padding
    visibility from the padding mask, so the diagonal is what is passed on. A mask of
    any other form (packed documents, prefix-LM) is not expressible here, and its
    off-diagonal entries are not checked under jit. Not covered: Tunix's sampler
    (its per-layer KV cache dicts and `init_cache`), so rollouts stay with
    `rewardjax.sampling`.
    """

    def __call__(self, input_tokens: jax.Array, positions: jax.Array | None = None,
                 cache: Any = None, attention_mask: jax.Array | None = None,
                 ) -> tuple[jax.Array, None]:
        if cache is not None:
            raise ValueError("TunixTransformer: cache must be None (Tunix's KV cache dicts "
                             f"are not supported; sample with rewardjax.sampling), got "
                             f"{type(cache).__name__}")
        B, T = input_tokens.shape
        if attention_mask is None or attention_mask.shape != (B, T, T):
            found = None if attention_mask is None else tuple(attention_mask.shape)
            raise ValueError("TunixTransformer: attention_mask must be Tunix's causal mask "
                             f"[B, T, T] = {(B, T, T)} for input_tokens {(B, T)}, got {found}")
        mask_bt = jnp.diagonal(attention_mask, axis1=1, axis2=2)
        return super().__call__(input_tokens, positions, mask=mask_bt)


def _param(x: jax.Array, axes: tuple[str | None, ...], mesh: Mesh | None,
           rules: sharding.Rules) -> nnx.Param:
    if mesh is not None:
        spec = sharding.logical_to_spec(axes, x.shape, mesh, rules)
        rules = tuple((name, target) for name, target in zip(axes, spec) if name is not None)
    return nnx.Param(x, out_sharding=axes, sharding_rules=rules, eager_sharding=False)


def _check_params(config: ModelConfig, params: Params) -> None:
    expected = {jax.tree_util.keystr(p): s.shape for p, s in
                jax.tree.flatten_with_path(transformer.abstract_params(config))[0]}
    found = {jax.tree_util.keystr(p): x.shape for p, x in jax.tree.flatten_with_path(params)[0]}
    missing, extra = sorted(expected.keys() - found), sorted(found.keys() - expected)
    if missing or extra:
        raise ValueError(f"params do not match param_axes(config): missing {missing}, "
                         f"unexpected {extra}")
    for path, shape in expected.items():
        if tuple(found[path]) != shape:
            raise ValueError(f"params{path} has shape {tuple(found[path])}, expected {shape} "
                             "for this config")
