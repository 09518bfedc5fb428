"""Decoder-only transformer families and Hugging Face interop."""

from rewardjax.models import hf
from rewardjax.models import lora
from rewardjax.models.config import ConfigError, ModelConfig, RopeScaling
from rewardjax.models.hf import CheckpointError
from rewardjax.models.transformer import (
    KVCache,
    Params,
    abstract_params,
    apply,
    gather_last,
    init_params,
    last_token_index,
    param_axes,
    positions_from_mask,
    project,
    sequence_scores,
)
