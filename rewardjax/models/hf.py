"""Hugging Face checkpoints: read and write safetensors directories.

`load(path)` reads `config.json` and single-file or sharded
(`model.safetensors.index.json`) safetensors for `*ForCausalLM` and
`*ForSequenceClassification`. Each tensor is read once from the memory-mapped file,
reshaped into rewardjax's layout, cut into the pieces the target sharding needs and put
on its devices; the whole model is never gathered on one device. `save(path, ...)`
writes a directory that `transformers` loads. Only safetensors are read: never pickle,
never remote code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import struct
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open

from rewardjax import sharding
from rewardjax.models import transformer
from rewardjax.models.config import ModelConfig

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Buffers some older checkpoints carry that are recomputed, never learned.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class CheckpointError(ValueError):
    """A checkpoint that does not match its config or rewardjax's expectations."""


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """How one HF tensor maps to (a layer of) one rewardjax parameter."""

    hf_name: str  # may contain {i} for the layer
    key: tuple[str, ...]  # path in the params tree
    hf_shape: tuple[int, ...]
    to_ours: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]
    fields: str  # config fields that determine the shape, for error messages


def _same(x):
    return x


def _mapping(c: ModelConfig) -> list[_Tensor]:
    D, F, V, N, K, H = (c.hidden_size, c.intermediate_size, c.vocab_size, c.num_heads,
                        c.num_kv_heads, c.head_dim)
    # Every to_ours is a reshape followed by a transpose, so on a memory-mapped tensor it
    # is a view: only the slice a device needs is ever copied.
    def proj_in(n):  # HF [n*H, D] -> [D, n, H]
        return (lambda w: w.reshape(n, H, D).transpose(2, 0, 1),
                lambda w: w.transpose(1, 2, 0).reshape(n * H, D))

    def lin():  # HF [out, in] -> [in, out]
        return (lambda w: w.T, lambda w: w.T)

    heads = f"num_attention_heads={N}, head_dim={H}, hidden_size={D}"
    kv = f"num_key_value_heads={K}, head_dim={H}, hidden_size={D}"
    mlp = f"intermediate_size={F}, hidden_size={D}"
    pre = "model.layers.{i}."
    m = [
        _Tensor("model.embed_tokens.weight", ("embed",), (V, D), _same, _same,
                f"vocab_size={V}, hidden_size={D}"),
        _Tensor("model.norm.weight", ("final_norm",), (D,), _same, _same, f"hidden_size={D}"),
        _Tensor(pre + "input_layernorm.weight", ("layers", "attn_norm"), (D,), _same, _same,
                f"hidden_size={D}"),
        _Tensor(pre + "post_attention_layernorm.weight", ("layers", "mlp_norm"), (D,), _same,
                _same, f"hidden_size={D}"),
        _Tensor(pre + "self_attn.q_proj.weight", ("layers", "wq"), (N * H, D), *proj_in(N), heads),
        _Tensor(pre + "self_attn.k_proj.weight", ("layers", "wk"), (K * H, D), *proj_in(K), kv),
        _Tensor(pre + "self_attn.v_proj.weight", ("layers", "wv"), (K * H, D), *proj_in(K), kv),
        _Tensor(pre + "self_attn.o_proj.weight", ("layers", "wo"), (D, N * H),
                lambda w: w.reshape(D, N, H).transpose(1, 2, 0),
                lambda w: w.transpose(2, 0, 1).reshape(D, N * H), heads),
        _Tensor(pre + "mlp.gate_proj.weight", ("layers", "w_gate"), (F, D), *lin(), mlp),
        _Tensor(pre + "mlp.up_proj.weight", ("layers", "w_up"), (F, D), *lin(), mlp),
        _Tensor(pre + "mlp.down_proj.weight", ("layers", "w_down"), (D, F), *lin(), mlp),
    ]
    if c.qkv_bias:
        for name, n, fields in (("q", N, heads), ("k", K, kv), ("v", K, kv)):
            m.append(_Tensor(pre + f"self_attn.{name}_proj.bias", ("layers", f"b{name}"),
                             (n * H,), lambda w, n=n: w.reshape(n, H),
                             lambda w, n=n: w.reshape(n * H), fields))
    if c.o_bias:
        m.append(_Tensor(pre + "self_attn.o_proj.bias", ("layers", "bo"), (D,), _same, _same,
                         f"hidden_size={D}"))
    if c.qk_norm:
        for name in ("q", "k"):
            m.append(_Tensor(pre + f"self_attn.{name}_norm.weight", ("layers", f"{name}_norm"),
                             (H,), _same, _same, f"head_dim={H}"))
    if c.is_classifier:
        m.append(_Tensor("score.weight", ("score",), (c.num_labels, D), *lin(),
                         f"num_labels={c.num_labels}, hidden_size={D}"))
    elif not c.tie_word_embeddings:
        m.append(_Tensor("lm_head.weight", ("lm_head",), (V, D), *lin(),
                         f"vocab_size={V}, hidden_size={D}"))
    return m


# ----------------------------------------------------------------------------- reading


class _Files:
    """Name -> tensor access over one or several safetensors files (memory-mapped)."""

    def __init__(self, path: Path):
        index_path, single = path / INDEX_FILE, path / SINGLE_FILE
        if index_path.exists():
            weight_map = json.loads(index_path.read_text())["weight_map"]
            self.where = {name: path / f for name, f in weight_map.items()}
            missing = sorted({str(f) for f in self.where.values() if not f.exists()})
            if missing:
                raise CheckpointError(f"{index_path} lists shard files that do not exist: {missing}")
        elif single.exists():
            with safe_open(single, framework="numpy") as f:
                self.where = {name: single for name in f.keys()}
        else:
            found = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
            raise CheckpointError(
                f"{path}: no {SINGLE_FILE} or {INDEX_FILE} found (directory holds {found}); "
                "only safetensors checkpoints are read (never pickled .bin files)"
            )
        self._open: dict[Path, Any] = {}

    def names(self) -> set[str]:
        return set(self.where)

    def _handle(self, name):
        f = self.where[name]
        if f not in self._open:
            self._open[f] = safe_open(f, framework="numpy")
        return self._open[f]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handle(name).get_slice(name).get_shape())

    def get(self, name: str) -> np.ndarray:
        return self._handle(name).get_tensor(name)


def read_config(path: str | os.PathLike) -> ModelConfig:
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise CheckpointError(f"{path}: no config.json")
    return ModelConfig.from_hf(json.loads(cfg_path.read_text()), source=str(cfg_path))


def load(path: str | os.PathLike, *, dtype=jnp.float32, mesh: jax.sharding.Mesh | None = None,
         rules: sharding.Rules = sharding.DEFAULT_RULES,
         config: ModelConfig | None = None) -> tuple[ModelConfig, transformer.Params]:
    """Loads a Hugging Face directory into (config, params).

    Args:
      path: directory with config.json and safetensors weights.
      dtype: parameter dtype to cast to.
      mesh: place each parameter in its logical sharding on this mesh (default: the
        first device, unsharded).
      rules: logical-axis rules for `mesh`.
      config: use this config instead of reading config.json.
    """
    path = Path(path)
    config = config or read_config(path)
    files = _Files(path)
    mapping = _mapping(config)
    L = config.num_layers
    expected: dict[str, _Tensor] = {}
    for t in mapping:
        for i in (range(L) if "{i}" in t.hf_name else [None]):
            expected[t.hf_name.format(i=i)] = t

    present = files.names()
    for name, t in expected.items():
        if name not in present:
            raise CheckpointError(
                f"{path}: tensor {name!r} is missing; expected shape {t.hf_shape} "
                f"from config ({t.fields}, num_hidden_layers={L})"
            )
        shape = files.shape(name)
        if shape != t.hf_shape:
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {shape} but config ({t.fields}) "
                f"expects {t.hf_shape}"
            )
    allowed_extra = {"lm_head.weight"} if config.tie_word_embeddings else set()
    unexpected = sorted(n for n in present - set(expected) - allowed_extra
                        if not n.endswith(_IGNORED_SUFFIXES))
    if unexpected:
        raise CheckpointError(
            f"{path}: tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''} are not "
            f"expected by config (model_type={config.model_type!r}, architecture="
            f"{config.architecture!r}, num_hidden_layers={L}, tie_word_embeddings="
            f"{config.tie_word_embeddings})"
        )

    axes = transformer.param_axes(config)
    params: dict[str, Any] = {"layers": {}}
    for t in mapping:
        names = [t.hf_name.format(i=i) for i in range(L)] if "{i}" in t.hf_name else [t.hf_name]
        stacked = "{i}" in t.hf_name
        shape = ((L,) if stacked else ()) + t.to_ours(np.empty(t.hf_shape, np.int8)).shape
        logical = _get(axes, t.key)
        if mesh is None:
            target = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        else:
            target = sharding.named_sharding(logical, shape, mesh, rules)
        arr = _assemble(files, names, t.to_ours, shape, stacked, target, dtype)
        _set(params, t.key, arr)
    return config, params


def _assemble(files, names, to_ours, shape, stacked, target, dtype) -> jax.Array:
    """Reads each HF tensor once and scatters the slices each local device needs."""
    index_map = target.addressable_devices_indices_map(shape)
    # Devices holding the same slice share one host buffer.
    pieces: dict[tuple, np.ndarray] = {}
    for idx in index_map.values():
        key = _key(idx, shape)
        if key not in pieces:
            pieces[key] = np.empty(tuple(stop - start for start, stop in key), dtype)
    for layer, name in enumerate(names):
        w = to_ours(files.get(name))
        for key, buf in pieces.items():
            sl = tuple(slice(*bounds) for bounds in key)
            if stacked:
                start, stop = key[0]
                if start <= layer < stop:
                    buf[layer - start] = w[sl[1:]].astype(dtype)
            else:
                buf[...] = w[sl].astype(dtype)
    arrays = [jax.device_put(pieces[_key(idx, shape)], d) for d, idx in index_map.items()]
    return jax.make_array_from_single_device_arrays(shape, target, arrays)


def _key(idx, shape) -> tuple[tuple[int, int], ...]:
    # (start, stop) pairs: slices are unhashable before Python 3.12.
    return tuple(s.indices(n)[:2] for s, n in zip(idx, shape))


def _get(tree, key):
    for k in key:
        tree = tree[k]
    return tree


def _set(tree, key, value):
    for k in key[:-1]:
        tree = tree.setdefault(k, {})
    tree[key[-1]] = value


# ----------------------------------------------------------------------------- writing


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One HF tensor to write: which parameter (and layer) it comes from, and its form."""

    name: str
    tensor: _Tensor
    layer: int | None
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.tensor.hf_shape) * self.dtype.itemsize


def _entries(config: ModelConfig, params: transformer.Params, dtype) -> list[_Entry]:
    """Every HF tensor in file order, its shape checked against the config up front, so a
    bad params tree fails before anything is gathered or written."""
    L = config.num_layers
    out = []
    for t in _mapping(config):
        stacked = "{i}" in t.hf_name
        try:
            leaf = _get(params, t.key)
        except (KeyError, TypeError):
            raise CheckpointError(
                f"params has no {'/'.join(t.key)!r}, which config ({t.fields}) needs for "
                f"{t.hf_name.format(i=0)!r}") from None
        want = ((L,) if stacked else ()) + t.to_ours(np.empty(t.hf_shape, np.int8)).shape
        if tuple(leaf.shape) != want:
            raise CheckpointError(
                f"params {'/'.join(t.key)!r} has shape {tuple(leaf.shape)} but config "
                f"({t.fields}, num_hidden_layers={L}) expects {want}")
        out_dtype = np.dtype(leaf.dtype if dtype is None else dtype)
        for i in (range(L) if stacked else [None]):
            out.append(_Entry(t.hf_name.format(i=i), t, i, out_dtype))
    return out


@jax.jit
def _layer(x: jax.Array, i: jax.Array) -> jax.Array:
    # The layer index is traced, so each stacked parameter compiles one slice program
    # rather than one per layer.
    return jax.lax.dynamic_index_in_dim(x, i, keepdims=False)


def _gather(entry: _Entry, params: transformer.Params) -> np.ndarray:
    """The full HF tensor on this host; every process must call it (multi-host gather)."""
    x = _get(params, entry.tensor.key)
    if entry.layer is not None:
        x = _layer(x, entry.layer)
    full = sharding.host_local_array(x).astype(entry.dtype, copy=False)
    return np.ascontiguousarray(entry.tensor.to_hf(full))


def hf_tensors(config: ModelConfig, params: transformer.Params,
               dtype=None) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, host array) pairs for every tensor, one at a time.

    Each tensor is gathered alone (one layer of a stacked parameter at a time), so a
    sharded model never has more than one tensor on the host. With several processes,
    every process must consume the iterator in step: each tensor is an all-gather.
    """
    for entry in _entries(config, params, dtype):
        yield entry.name, _gather(entry, params)


# safetensors orders a file's tensors by dtype (this order) and then by name; writing
# the same order makes our files byte-identical to `safetensors.numpy.save_file`'s.
_SAFETENSORS_DTYPES = {
    "uint64": "U64", "int64": "I64", "float64": "F64", "complex64": "C64",
    "float32": "F32", "uint32": "U32", "int32": "I32", "bfloat16": "BF16", "float16": "F16",
    "uint16": "U16", "int16": "I16", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "int8": "I8", "uint8": "U8", "bool": "BOOL",
}
_DTYPE_RANK = {name: k for k, name in enumerate(_SAFETENSORS_DTYPES)}


def _safetensors_header(entries: list[_Entry], metadata: dict[str, str]) -> tuple[bytes, dict]:
    """The length-prefixed JSON header of a safetensors file and each tensor's data offset.

    Format: 8-byte little-endian header length, the JSON header (space-padded to a
    multiple of 8 bytes), then the tensors' bytes back to back in header order.
    """
    for e in entries:
        if e.dtype.name not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"tensor {e.name!r}: dtype {e.dtype.name} has no safetensors "
                                  f"code; expected one of {sorted(_SAFETENSORS_DTYPES)}")
    header: dict[str, Any] = {"__metadata__": metadata}
    offsets, begin = {}, 0
    for e in sorted(entries, key=lambda e: (_DTYPE_RANK[e.dtype.name], e.name)):
        header[e.name] = {"dtype": _SAFETENSORS_DTYPES[e.dtype.name],
                          "shape": list(e.tensor.hf_shape),
                          "data_offsets": [begin, begin + e.nbytes]}
        offsets[e.name] = begin
        begin += e.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, offsets


def _write_file(file: Path, entries: list[_Entry], params: transformer.Params,
                writer: bool) -> None:
    """Writes one safetensors file tensor by tensor: the header goes first (shapes are
    known without data), then each tensor, once gathered, at its offset. Only `writer`
    touches the file; every process gathers."""
    header, offsets = _safetensors_header(entries, {"format": "pt"})
    with open(file, "wb") if writer else contextlib.nullcontext() as f:
        if writer:
            f.write(header)
        for e in entries:
            arr = _gather(e, params)
            if writer:
                f.seek(len(header) + offsets[e.name])
                f.write(arr.reshape(-1).view(np.uint8))


def save(path: str | os.PathLike, config: ModelConfig, params: transformer.Params, *,
         dtype=None, max_shard_bytes: int | None = None) -> Path:
    """Writes config.json and safetensors (sharded with an index past `max_shard_bytes`).

    Works from params sharded over any mesh, on one or several processes, without the
    model ever being whole on one host: each tensor is gathered alone (an all-gather
    that every process joins), written at its place in its file and dropped, so host
    memory holds one tensor at a time whatever `max_shard_bytes` is. safetensors' own
    writer needs a file's tensors all at once, so the file format is written here
    (byte-identical to it). Only process 0 writes; every process must call `save`.

    Args:
      dtype: numpy/ml_dtypes dtype to store (default: the params' dtype).
      max_shard_bytes: start a new file before a tensor that would take the current one
        past this many bytes (default: one file).
    """
    path = Path(path)
    writer = jax.process_index() == 0
    entries = _entries(config, params, dtype)
    files: list[list[_Entry]] = [[]]
    size = 0
    for e in entries:
        if max_shard_bytes is not None and files[-1] and size + e.nbytes > max_shard_bytes:
            files.append([])
            size = 0
        files[-1].append(e)
        size += e.nbytes
    names = ([SINGLE_FILE] if len(files) == 1 else
             [f"model-{k + 1:05d}-of-{len(files):05d}.safetensors" for k in range(len(files))])
    if writer:
        path.mkdir(parents=True, exist_ok=True)
    for name, file_entries in zip(names, files):
        _write_file(path / name, file_entries, params, writer)
    if writer:
        if len(files) > 1:
            weight_map = {e.name: name for name, fe in zip(names, files) for e in fe}
            (path / INDEX_FILE).write_text(json.dumps(
                {"metadata": {"total_size": sum(e.nbytes for e in entries)},
                 "weight_map": weight_map}, indent=2))
        hf_config = config.to_hf()
        hf_config["torch_dtype"] = np.dtype(params["embed"].dtype if dtype is None else dtype).name
        (path / "config.json").write_text(json.dumps(hf_config, indent=2))
    if jax.process_count() > 1:
        # No process returns before the directory is complete.
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(f"rewardjax.hf.save:{path}")
    return path
