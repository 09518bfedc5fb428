"""The one backbone description every experiment uses, and how it is loaded onto a mesh.

A backbone is either a local Hugging Face directory (weights + tokenizer: the `paper`
presets) or a small random Qwen2-style model on the default tokenizer (the `tiny`
presets). `load_backbone(spec, key, mesh)` returns it with its params already placed
by the mesh's logical rules (an HF checkpoint is read straight into its shardings) and
the `Placement` every trainer takes.

Precision is two settings: `dtype` is what the params (and so the float32 master
weights and optimizer state, by default) are stored in, `compute_dtype` what the
forward and backward pass see (None: the same). `dtype="float32",
compute_dtype="bfloat16"` is mixed precision; the model keeps RMSNorm statistics,
softmax and logits in float32 whatever the dtype.

`lora` makes the run train LoRA adapters on frozen base weights
(`rewardjax.models.lora`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rewardjax.data.tokenizer import default_tokenizer, load_tokenizer
from rewardjax.models import ModelConfig, hf, init_params
from rewardjax.models.lora import LoraConfig
from rewardjax.sharding import MeshConfig
from rewardjax.train.placement import Placement

REMAT = ("none", "full", "dots")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BackboneConfig:
    """A local Hugging Face checkpoint (`hf_path`) or a small random model.

    Attributes:
      hf_path: directory with config.json, safetensors and the tokenizer; when set the
        size fields below are ignored.
      dtype: parameter (master weight) dtype name.
      compute_dtype: dtype of the params in the forward/backward pass (None: `dtype`).
      model_type ... rope_theta: the random model's architecture (vocabulary: the default
        tokenizer's). `head_dim` None: hidden_size / num_heads.
      init_std: std of the random weights; None: 1/sqrt(hidden_size). GPT-2's 0.02 is
        too small for narrow models: at width 64 every residual branch starts ~40x below
        the embeddings, and a 2-layer model then needs hundreds of steps to learn even to
        copy the previous token (at 1/sqrt(D) it does so within 100 SFT steps).
      remat, scan_layers: passed to the backbone in training losses.
      lora: train LoRA adapters on the frozen backbone (None: full fine-tuning).
    """

    hf_path: str | None = None
    dtype: str = "float32"
    compute_dtype: str | None = None
    model_type: str = "qwen2"
    hidden_size: int = 64
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int | None = 16
    rope_theta: float = 10000.0
    init_std: float | None = None
    remat: str = "none"
    scan_layers: bool = False
    lora: LoraConfig | None = None

    def __post_init__(self):
        for name in ("dtype", "compute_dtype"):
            value = getattr(self, name)
            if value is not None and value not in ("float32", "bfloat16", "float16"):
                raise ValueError(f"backbone.{name} must be float32, bfloat16 or float16, "
                                 f"got {value!r}")
        if self.remat not in REMAT:
            raise ValueError(f"backbone.remat must be one of {REMAT}, got {self.remat!r}")

    @property
    def apply_kwargs(self) -> dict:
        return {"remat": self.remat, "scan_layers": self.scan_layers}


class Backbone(NamedTuple):
    """A loaded backbone: its config, params (placed), tokenizer and placement."""

    spec: BackboneConfig
    config: ModelConfig
    params: Any
    tokenizer: Any
    placement: Placement


def model_config(spec: BackboneConfig, tokenizer) -> ModelConfig:
    """The random model's `ModelConfig` (on `tokenizer`'s vocabulary)."""
    return ModelConfig(
        model_type=spec.model_type, vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_layers=spec.num_layers,
        num_heads=spec.num_heads, num_kv_heads=spec.num_kv_heads,
        head_dim=spec.head_dim or spec.hidden_size // spec.num_heads,
        rope_theta=spec.rope_theta, qkv_bias=spec.model_type == "qwen2", tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)


def load_backbone(spec: BackboneConfig, key: jax.Array, mesh: MeshConfig = MeshConfig()
                  ) -> Backbone:
    """The backbone of `spec` on the mesh of `mesh` (built over every device)."""
    built = mesh.build()
    dtype = jnp.dtype(spec.dtype)
    compute = jnp.dtype(spec.compute_dtype) if spec.compute_dtype else None
    if spec.hf_path is not None:
        if not os.path.isdir(spec.hf_path):
            raise FileNotFoundError(f"backbone.hf_path {spec.hf_path!r} is not a directory")
        config, params = hf.load(spec.hf_path, dtype=dtype, mesh=built, rules=mesh.rules)
        tokenizer = load_tokenizer(spec.hf_path)
    else:
        tokenizer = default_tokenizer()
        config = model_config(spec, tokenizer)
        std = spec.init_std if spec.init_std is not None else spec.hidden_size ** -0.5
        params = init_params(config, key, dtype=dtype, std=std)
    if spec.lora is not None:
        spec.lora.check(config)
    placement = Placement(mesh=built, rules=mesh.rules, config=config, compute_dtype=compute)
    return Backbone(spec=spec, config=config, params=placement.params(params),
                    tokenizer=tokenizer, placement=placement)
