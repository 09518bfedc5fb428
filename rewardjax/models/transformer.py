"""Decoder-only transformer (Llama, Mistral, Qwen2, Qwen3) as pure functions of params.

Parameters are a dict pytree whose per-layer weights are stacked on a leading `L` axis,
so the same tree serves a Python loop over layers and `lax.scan` over layers:

    embed      [V, D]         layers/wq [L, D, N, H]   layers/w_gate [L, D, F]
    final_norm [D]            layers/wk [L, D, K, H]   layers/w_up   [L, D, F]
    lm_head    [D, V]  (untied)  layers/wv [L, D, K, H] layers/w_down [L, F, D]
    score      [D, labels] (classifier)  layers/wo [L, N, H, D]
    layers/{attn_norm,mlp_norm} [L, D]; layers/{bq,bk,bv} [L, N|K, H] (q/k/v biases);
    layers/bo [L, D]; layers/{q_norm,k_norm} [L, H] (Qwen3)

`apply(params, tokens, positions, *, config, mask, cache)` returns logits (or final
hidden states) and the updated KV cache. Numerics follow the Hugging Face reference:
RMSNorm and softmax in float32 whatever the parameter dtype, rotary tables in float32.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rewardjax import sharding
from rewardjax.models.config import ModelConfig

Params = dict[str, Any]
REMAT_POLICIES = ("none", "full", "dots")


class KVCache(NamedTuple):
    """Fixed-size key/value cache, written in place at slot `index`.

    k, v: [L, B, K, S, H] stacked over layers, or (`per_layer=True`) a tuple of L arrays
    [B, K, S, H]; mask: [B, S] (slot holds a real token); index: [] int32 (the next slot
    to write; all rows share it because prompts are left-padded).

    Keys and values are stored head-major ([B, K, S, H]) so attention reads them as a
    batched matmul without transposing the cache. Per-layer buffers are for decode
    loops: each layer's attention reads its own buffer, where a stacked cache would be
    sliced (copied) layer by layer at every step.
    """

    k: jax.Array
    v: jax.Array
    mask: jax.Array
    index: jax.Array

    @classmethod
    def init(cls, config: ModelConfig, batch: int, length: int, dtype=jnp.float32, *,
             per_layer: bool = False) -> "KVCache":
        shape = (batch, config.num_kv_heads, length, config.head_dim)
        if per_layer:
            k = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
            v = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
        else:
            k = jnp.zeros((config.num_layers,) + shape, dtype)
            v = jnp.zeros((config.num_layers,) + shape, dtype)
        return cls(k=k, v=v, mask=jnp.zeros((batch, length), bool),
                   index=jnp.zeros((), jnp.int32))


# ----------------------------------------------------------------------------- params


def param_shapes(config: ModelConfig) -> dict[str, Any]:
    """Shapes and logical axis names of every parameter: {name: (shape, axes)}."""
    c = config
    L, D, F, V, N, K, H = (c.num_layers, c.hidden_size, c.intermediate_size, c.vocab_size,
                           c.num_heads, c.num_kv_heads, c.head_dim)
    layers = {
        "attn_norm": ((L, D), ("layers", "norm")),
        "wq": ((L, D, N, H), ("layers", "embed", "heads", "head_dim")),
        "wk": ((L, D, K, H), ("layers", "embed", "kv_heads", "head_dim")),
        "wv": ((L, D, K, H), ("layers", "embed", "kv_heads", "head_dim")),
        "wo": ((L, N, H, D), ("layers", "heads", "head_dim", "embed")),
        "mlp_norm": ((L, D), ("layers", "norm")),
        "w_gate": ((L, D, F), ("layers", "embed", "mlp")),
        "w_up": ((L, D, F), ("layers", "embed", "mlp")),
        "w_down": ((L, F, D), ("layers", "mlp", "embed")),
    }
    if c.qkv_bias:
        layers["bq"] = ((L, N, H), ("layers", "heads", "head_dim"))
        layers["bk"] = ((L, K, H), ("layers", "kv_heads", "head_dim"))
        layers["bv"] = ((L, K, H), ("layers", "kv_heads", "head_dim"))
    if c.o_bias:
        layers["bo"] = ((L, D), ("layers", "norm"))
    if c.qk_norm:
        layers["q_norm"] = ((L, H), ("layers", "head_dim"))
        layers["k_norm"] = ((L, H), ("layers", "head_dim"))
    out: dict[str, Any] = {
        "embed": ((V, D), ("vocab", "embed")),
        "layers": layers,
        "final_norm": ((D,), ("norm",)),
    }
    if c.is_classifier:
        out["score"] = ((D, c.num_labels), ("embed", "labels"))
    elif not c.tie_word_embeddings:
        out["lm_head"] = ((D, V), ("embed", "vocab"))
    return out


def _is_spec(x) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], tuple)


def param_axes(config: ModelConfig) -> Params:
    """The params pytree with each leaf replaced by its logical axis names."""
    return jax.tree.map(lambda s: s[1], param_shapes(config), is_leaf=_is_spec)


def abstract_params(config: ModelConfig, dtype=jnp.float32) -> Params:
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s[0], dtype), param_shapes(config),
                        is_leaf=_is_spec)


def init_params(config: ModelConfig, key: jax.Array, *, dtype=jnp.float32,
                std: float = 0.02) -> Params:
    """Random parameters: N(0, std) matrices and biases, ones for norm scales."""
    shapes = param_shapes(config)
    flat, treedef = jax.tree.flatten_with_path(shapes, is_leaf=_is_spec)
    keys = jax.random.split(key, len(flat))
    leaves = []
    for (path, (shape, _)), k in zip(flat, keys):
        name = path[-1].key
        if name.endswith("norm"):
            leaves.append(jnp.ones(shape, dtype))
        else:
            leaves.append((std * jax.random.normal(k, shape, jnp.float32)).astype(dtype))
    return jax.tree.unflatten(treedef, leaves)


# ----------------------------------------------------------------------------- pieces


def rms_norm(x: jax.Array, scale: jax.Array, eps: float) -> jax.Array:
    # Statistics in float32 even for bfloat16 params, cast back before the scale, as HF does.
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return scale * x32.astype(x.dtype)


def rope_inv_freq(config: ModelConfig) -> jax.Array:
    """Inverse RoPE frequencies [H/2], with `linear` or `llama3` scaling applied."""
    H = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (jnp.arange(0, H, 2, dtype=jnp.float32) / H))
    rs = config.rope_scaling
    if rs is None:
        return inv_freq
    if rs.rope_type == "linear":
        return inv_freq / rs.factor
    # llama3 ("The Llama 3 Herd of Models", arXiv:2407.21783): long wavelengths are
    # divided by `factor`, short ones kept, the band between interpolated smoothly.
    old = rs.original_max_position_embeddings
    low_wavelen, high_wavelen = old / rs.low_freq_factor, old / rs.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = jnp.where(wavelen > low_wavelen, inv_freq / rs.factor, inv_freq)
    smooth = (old / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return jnp.where(medium, smoothed, scaled)


def apply_rope(x_btnh: jax.Array, positions_bt: jax.Array, inv_freq: jax.Array) -> jax.Array:
    # Angles in float32: positions up to 1e5 lose whole radians in bfloat16.
    angles = positions_bt.astype(jnp.float32)[..., None] * inv_freq  # [B, T, H/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x = x_btnh.astype(jnp.float32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return (x * cos + rotated * sin).astype(x_btnh.dtype)


def positions_from_mask(mask_bt: jax.Array) -> jax.Array:
    """Positions of a left-padded batch: 0 at each row's first real token."""
    return jnp.maximum(jnp.cumsum(mask_bt.astype(jnp.int32), axis=-1) - 1, 0)


def attention(q_btnh, k_bksh, v_bksh, allowed_bts) -> jax.Array:
    """Grouped-query attention with a boolean [B, T, S] visibility mask."""
    B, T, N, H = q_btnh.shape
    K = k_bksh.shape[1]
    q = q_btnh.reshape(B, T, K, N // K, H)
    scores = jnp.einsum("btkgh,bksh->bkgts", q, k_bksh,
                        preferred_element_type=jnp.float32) / math.sqrt(H)
    # A finite floor, not -inf: a fully masked row (a pad query) must not give NaN.
    scores = jnp.where(allowed_bts[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v_bksh.dtype)
    # Batch dims leading in the output: XLA:CPU then emits a plain batched matmul
    # (writing "btkgh" directly was ~7x slower when decoding).
    out = jnp.einsum("bkgts,bksh->bkgth", probs, v_bksh)
    return out.transpose(0, 3, 1, 2, 4).reshape(B, T, N, H)


class OutMajor(NamedTuple):
    """A projection weight stored output axes first: `wq` [D, N, H] as [N, H, D].

    For decoding on CPU: XLA then streams the weight as the matmul's left operand,
    where an input-major weight is repacked at every call (a batch-8 decode step took
    ~25% less time). `unstack_layers(params, out_major=True)` builds these.
    """

    w: jax.Array


# Axis permutation from each projection's layout to its OutMajor layout.
_OUT_MAJOR = {"wq": (1, 2, 0), "wk": (1, 2, 0), "wv": (1, 2, 0), "wo": (2, 0, 1),
              "w_gate": (1, 0), "w_up": (1, 0), "w_down": (1, 0)}


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def _matmul(spec: str, x, w, preferred_element_type=None) -> jax.Array:
    """`jnp.einsum(spec, x, w, preferred_element_type=...)`, differentiated as 2-D matmuls.

    `spec` reads "{rows}{contracted},{w axes}->{rows}{out}": x's leading axes are rows
    (batch, length), its trailing axes are contracted with w, and w holds the contracted
    axes and the output axes as two blocks (either first), e.g. "btd,df->btf",
    "btnh,nhd->btd", "btd,vd->btv".

    Why: XLA:CPU computes einsum's own weight gradient as a dot_general contracting over
    both row axes (b and t), markedly slower than the same product as one matmul
    x[R, C].T @ g[R, O] (1.2-1.5x for the MLP, `wo` and LM-head weight gradients).
    The forward is the einsum itself; the backward flattens rows and computes both
    gradients as 2-D matmuls, with the dtypes einsum's own transpose would use.
    """
    return _matmul_fwd(spec, x, w, preferred_element_type)[0]


def _spec_axes(spec: str) -> tuple[str, str, str, str, str, str]:
    """(x axes, w axes, y axes, rows, contracted, out) of a projection's einsum spec:
    rows are x's axes not in w, contracted the axes they share, out w's own axes."""
    operands, y_axes = spec.split("->")
    x_axes, w_axes = operands.split(",")
    rows = "".join(a for a in x_axes if a not in w_axes)
    contracted = "".join(a for a in w_axes if a in x_axes)
    out = "".join(a for a in w_axes if a not in x_axes)
    return x_axes, w_axes, y_axes, rows, contracted, out


def _matmul_axes(spec: str) -> tuple[int, bool]:
    """(number of row axes, whether w's output axes come first) for a `_matmul` spec."""
    x_axes, w_axes, y_axes, rows, contracted, out = _spec_axes(spec)
    if x_axes != rows + contracted or y_axes != rows + out or w_axes not in (
            contracted + out, out + contracted):
        raise ValueError(
            f"_matmul needs '{{rows}}{{contracted}},{{w axes}}->{{rows}}{{out}}', got {spec!r}")
    return len(rows), w_axes == out + contracted


def _matmul_fwd(spec, x, w, preferred_element_type):
    _matmul_axes(spec)  # fail at trace time on a spec the backward cannot flatten
    # A plain einsum (not a nested `_matmul`), so remat's `dots` policy sees the dot.
    return jnp.einsum(spec, x, w, preferred_element_type=preferred_element_type), (x, w)


def _matmul_bwd(spec, preferred_element_type, res, g):
    x, w = res
    n_rows, out_first = _matmul_axes(spec)
    R, C, O = (math.prod(x.shape[:n_rows]), math.prod(x.shape[n_rows:]),
               math.prod(g.shape[n_rows:]))
    x2, g2 = x.reshape(R, C), g.reshape(R, O)
    w_spec = "oc" if out_first else "co"
    w2 = w.reshape((O, C) if out_first else (C, O))
    dtype = preferred_element_type or jnp.result_type(x, w)
    dx = jnp.einsum(f"ro,{w_spec}->rc", g2, w2, preferred_element_type=dtype)
    dw = jnp.einsum(f"rc,ro->{w_spec}", x2, g2, preferred_element_type=dtype)
    return dx.reshape(x.shape).astype(x.dtype), dw.reshape(w.shape).astype(w.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def _dense(spec: str, x, w) -> jax.Array:
    """`jnp.einsum(spec, x, w)`, for `w` in its usual layout or wrapped in `OutMajor`."""
    if not isinstance(w, OutMajor):
        return _matmul(spec, x, w)
    x_axes, _, y_axes, rows, contracted, out = _spec_axes(spec)
    y = jnp.einsum(f"{out}{contracted},{x_axes}->{out}{rows}", w.w, x)
    return jnp.einsum(f"{out}{rows}->{y_axes}", y)


def _layer(config: ModelConfig, p: Params, x_btd, positions_bt, inv_freq, kv, allowed_bts,
           write_index):
    """One block. kv is None (no cache) or (cache_k, cache_v, layer index into a stacked
    cache, or None for this layer's own buffer)."""
    c = config
    h = rms_norm(x_btd, p["attn_norm"], c.rms_norm_eps)
    if "wqkv" in p:  # the fused decode layout of `unstack_layers(out_major=True)`
        qkv = _dense("btd,dnh->btnh", h, p["wqkv"])
        q, k, v = jnp.split(qkv, [c.num_heads, c.num_heads + c.num_kv_heads], axis=2)
    else:
        q = _dense("btd,dnh->btnh", h, p["wq"])
        k = _dense("btd,dkh->btkh", h, p["wk"])
        v = _dense("btd,dkh->btkh", h, p["wv"])
    if c.qkv_bias:
        q, k, v = q + p["bq"], k + p["bk"], v + p["bv"]
    if c.qk_norm:
        q = rms_norm(q, p["q_norm"], c.rms_norm_eps)
        k = rms_norm(k, p["k_norm"], c.rms_norm_eps)
    q = apply_rope(q, positions_bt, inv_freq)
    k = apply_rope(k, positions_bt, inv_freq)
    q = sharding.constrain(q, ("batch", "length", "act_heads", None))
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, K, T, H]
    if kv is not None:
        # Write this layer's new keys/values into the cache in place (a
        # dynamic_update_slice on a donated buffer), then read the layer back.
        cache_k, cache_v, i = kv
        zero = jnp.zeros((), jnp.int32)
        if i is None:
            at = (zero, zero, write_index, zero)
            cache_k = jax.lax.dynamic_update_slice(cache_k, k.astype(cache_k.dtype), at)
            cache_v = jax.lax.dynamic_update_slice(cache_v, v.astype(cache_v.dtype), at)
            k, v = cache_k, cache_v
        else:
            at = (i, zero, zero, write_index, zero)
            cache_k = jax.lax.dynamic_update_slice(cache_k, k.astype(cache_k.dtype)[None], at)
            cache_v = jax.lax.dynamic_update_slice(cache_v, v.astype(cache_v.dtype)[None], at)
            k, v = cache_k[i], cache_v[i]
        kv = (cache_k, cache_v, i)
    out = attention(q, k, v, allowed_bts)
    x_btd = x_btd + _dense("btnh,nhd->btd", out, p["wo"]) + (p["bo"] if c.o_bias else 0)
    x_btd = sharding.constrain(x_btd, ("batch", "length", "act_embed"))
    h = rms_norm(x_btd, p["mlp_norm"], c.rms_norm_eps)
    if "w_gate_up" in p:
        gate, up = jnp.split(_dense("btd,df->btf", h, p["w_gate_up"]), 2, axis=-1)
    else:
        gate = _dense("btd,df->btf", h, p["w_gate"])
        up = _dense("btd,df->btf", h, p["w_up"])
    act = sharding.constrain(jax.nn.silu(gate) * up, ("batch", "length", "act_mlp"))
    x_btd = x_btd + _dense("btf,fd->btd", act, p["w_down"])
    x_btd = sharding.constrain(x_btd, ("batch", "length", "act_embed"))
    return x_btd, kv


def _visibility(query_slots_bt, key_slots_s, key_mask_bs, window):
    allowed = (key_slots_s[None, None, :] <= query_slots_bt[:, :, None]) & key_mask_bs[:, None, :]
    if window is not None:
        allowed &= (query_slots_bt[:, :, None] - key_slots_s[None, None, :]) < window
    return allowed


# ----------------------------------------------------------------------------- forward


def apply(params: Params, tokens_bt: jax.Array, positions_bt: jax.Array | None = None, *,
          config: ModelConfig, mask_bt: jax.Array | None = None, cache: KVCache | None = None,
          output: str = "logits", remat: str = "none", scan_layers: bool = False,
          ) -> tuple[jax.Array, KVCache | None]:
    """Runs the transformer.

    Args:
      params: parameter pytree (see module docstring); `layers` may also be a sequence
        of per-layer dicts (`unstack_layers`), which decode loops use.
      tokens_bt: [B, T] int token ids, left-padded.
      positions_bt: [B, T] rotary positions; default: derived from `mask_bt` (and from
        the cache's filled slots when decoding).
      config: the architecture (static under jit).
      mask_bt: [B, T] 1 for real tokens, 0 for padding; default all ones.
      cache: a KVCache (stacked or per-layer); the T new tokens are written at slots
        [index, index + T) and attend to every filled slot before them.
      output: "logits" ([B, T, V] float32 LM logits, or [B, T, labels] scores for a
        classifier config) or "hidden" ([B, T, D] final-normed hidden states).
      remat: "none", "full" (recompute each block in the backward pass) or "dots"
        (save matmul outputs only).
      scan_layers: `lax.scan` over the stacked layers (compile time flat in depth);
        needs stacked params and a stacked cache.

    Returns:
      (outputs, cache): the cache is None when none was given.
    """
    c = config
    if remat not in REMAT_POLICIES:
        raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {remat!r}")
    if output not in ("logits", "hidden"):
        raise ValueError(f"output must be 'logits' or 'hidden', got {output!r}")
    B, T = tokens_bt.shape
    mask_bt = jnp.ones((B, T), bool) if mask_bt is None else mask_bt.astype(bool)
    if positions_bt is None:
        positions_bt = positions_from_mask(mask_bt)
        if cache is not None:
            positions_bt = positions_bt + jnp.sum(cache.mask, axis=-1, dtype=jnp.int32)[:, None]
    inv_freq = rope_inv_freq(c)

    if cache is None:
        slots = jnp.arange(T)
        allowed = _visibility(jnp.broadcast_to(slots, (B, T)), slots, mask_bt, c.sliding_window)
        write_index = None
    else:
        S = cache.mask.shape[1]
        write_index = cache.index
        new_mask = jax.lax.dynamic_update_slice_in_dim(cache.mask, mask_bt, write_index, axis=1)
        query_slots = jnp.broadcast_to(write_index + jnp.arange(T), (B, T))
        allowed = _visibility(query_slots, jnp.arange(S), new_mask, c.sliding_window)

    x = params["embed"][tokens_bt]
    x = sharding.constrain(x, ("batch", "length", "act_embed"))

    def block(x, layer_params, kv):
        return _layer(c, layer_params, x, positions_bt, inv_freq, kv, allowed, write_index)

    if remat == "full":
        block = jax.checkpoint(block)
    elif remat == "dots":
        block = jax.checkpoint(block, policy=jax.checkpoint_policies.checkpoint_dots)

    layers = params["layers"]
    per_layer = cache is not None and isinstance(cache.k, (tuple, list))
    unstacked = isinstance(layers, (tuple, list))
    if scan_layers and (per_layer or unstacked):
        raise ValueError("scan_layers needs stacked layer params and a stacked KVCache")
    # The whole stacked cache is carried through the layers (never sliced out and
    # re-stacked), so decoding writes each step's keys in place.
    kv_all = None if cache is None else (cache.k, cache.v)
    if scan_layers:
        def body(carry, xs):
            x, kv_all = carry
            p, i = xs
            x, kv = block(x, p, None if kv_all is None else (*kv_all, i))
            return (x, None if kv is None else kv[:2]), None
        (x, kv_all), _ = jax.lax.scan(body, (x, kv_all), (layers, jnp.arange(c.num_layers)))
    else:
        new_k, new_v = [], []
        for i in range(c.num_layers):
            p = layers[i] if unstacked else jax.tree.map(lambda a: a[i], layers)
            if per_layer:
                x, (k_i, v_i, _) = block(x, p, (cache.k[i], cache.v[i], None))
                new_k.append(k_i)
                new_v.append(v_i)
                continue
            x, kv = block(x, p, None if kv_all is None else (*kv_all, jnp.int32(i)))
            kv_all = None if kv is None else kv[:2]
        if per_layer:
            kv_all = (tuple(new_k), tuple(new_v))

    new_cache = None
    if cache is not None:
        new_cache = KVCache(k=kv_all[0], v=kv_all[1], mask=new_mask, index=cache.index + T)

    x = rms_norm(x, params["final_norm"], c.rms_norm_eps)
    if output == "hidden":
        return x, new_cache
    return project(params, x, config=c), new_cache


def unstack_layers(params: Params, *, out_major: bool = False) -> Params:
    """params with `layers` split into a tuple of per-layer dicts, for decode loops.

    Inside a loop, `apply` on stacked params slices (copies) every layer's weights at
    every step; unstacking once before the loop removes those copies. `out_major`
    also stores the projections as `OutMajor` and fuses q/k/v (`wqkv`) and gate/up
    (`w_gate_up`) into one matmul each: fewer, larger matmuls for CPU decoding. Either
    way `apply` computes the same function.
    """
    layers = params["layers"]
    if not isinstance(layers, (tuple, list)):
        n = jax.tree.leaves(layers)[0].shape[0]
        layers = tuple(jax.tree.map(lambda a: a[i], layers) for i in range(n))
    if out_major and "wqkv" not in layers[0]:
        layers = tuple(_out_major_layer(p) for p in layers)
    return {**params, "layers": layers}


def _out_major_layer(p: Params) -> Params:
    out = {k: v for k, v in p.items() if k not in _OUT_MAJOR}
    major = {k: p[k].transpose(_OUT_MAJOR[k]) for k in _OUT_MAJOR}
    out["wqkv"] = OutMajor(jnp.concatenate([major["wq"], major["wk"], major["wv"]], axis=0))
    out["w_gate_up"] = OutMajor(jnp.concatenate([major["w_gate"], major["w_up"]], axis=0))
    out["wo"], out["w_down"] = OutMajor(major["wo"]), OutMajor(major["w_down"])
    return out


def project(params: Params, hidden_btd: jax.Array, *, config: ModelConfig) -> jax.Array:
    """Final hidden states -> float32 LM logits [B, T, V] (or classifier scores)."""
    if config.is_classifier:
        return jnp.einsum("btd,dl->btl", hidden_btd, params["score"],
                          preferred_element_type=jnp.float32)
    if config.tie_word_embeddings:
        logits = _matmul("btd,vd->btv", hidden_btd, params["embed"], jnp.float32)
    else:
        logits = _matmul("btd,dv->btv", hidden_btd, params["lm_head"], jnp.float32)
    return sharding.constrain(logits, ("batch", "length", "act_vocab"))


def last_token_index(mask_bt: jax.Array) -> jax.Array:
    """Index of each row's last non-pad token: [B]."""
    T = mask_bt.shape[-1]
    return jnp.max(jnp.where(mask_bt.astype(bool), jnp.arange(T), -1), axis=-1).clip(0)


def gather_last(values_bt_: jax.Array, mask_bt: jax.Array) -> jax.Array:
    """values at each row's last non-pad token: [B, ...]."""
    idx = last_token_index(mask_bt)
    return jnp.take_along_axis(values_bt_, idx.reshape((-1,) + (1,) * (values_bt_.ndim - 1)),
                               axis=1)[:, 0]


def sequence_scores(params: Params, tokens_bt: jax.Array, mask_bt: jax.Array, *,
                    config: ModelConfig, **kwargs) -> jax.Array:
    """`*ForSequenceClassification` scores at the last non-pad token: [B, labels]."""
    if not config.is_classifier:
        raise ValueError("sequence_scores needs a classifier config (num_labels > 0)")
    scores_btl, _ = apply(params, tokens_bt, config=config, mask_bt=mask_bt, **kwargs)
    return gather_last(scores_btl, mask_bt)
