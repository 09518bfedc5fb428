"""Sampling: the KV-cache rollout engine, step-wise continuation and teacher-forced log-probs.

    sampler.py    prefill / decode / sample: G completions per prompt with exact log-probs
    stepwise.py   StepGenerator: decode one reasoning step at a time, select / copy rows
                  of the KV cache and continue (search, multi-turn rollouts)

Search and selection with reward models (best-of-N, voting, beam search, MCTS, guided
decoding) build on these in `rewardjax.search`.
"""

from rewardjax.sampling.config import FinishReason, SamplerConfig
from rewardjax.sampling.controls import select_tokens, token_logprobs, truncation_mask
from rewardjax.sampling.logprobs import completion_logprobs, left_align, sequence_logprobs
from rewardjax.sampling.sampler import Samples, SamplingState, decode, prefill, sample
from rewardjax.sampling.stepwise import StepConfig, StepDelimiterError, StepGenerator, StepState

__all__ = [
    "FinishReason",
    "SamplerConfig",
    "Samples",
    "SamplingState",
    "StepConfig",
    "StepDelimiterError",
    "StepGenerator",
    "StepState",
    "completion_logprobs",
    "decode",
    "left_align",
    "prefill",
    "sample",
    "select_tokens",
    "sequence_logprobs",
    "token_logprobs",
    "truncation_mask",
]
