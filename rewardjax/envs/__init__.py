"""Environments for agentic RL: tools and multi-turn environments, and the sandbox that runs model-written code (never in the trainer's process)."""

from rewardjax.envs.base import Environment, Transition, Turn
from rewardjax.envs.calculator import CalculatorConfig, CalculatorEnv
from rewardjax.envs.code_labels import CodeProblem, LabelConfig, code_problems, prm_records
from rewardjax.envs.rollout import EndReason, MultiTurnDriver, RolloutConfig, Rollouts, append_tokens
from rewardjax.envs.sandbox import (
    Capabilities,
    InvalidLimitError,
    InvalidProgramError,
    Limits,
    PythonProgram,
    Reason,
    Result,
    SQLProgram,
    capabilities,
    run,
    run_many,
)
from rewardjax.envs.search import BM25, SearchConfig, SearchEnv
from rewardjax.envs.search import BM25, SearchConfig, SearchEnv, load_documents
from rewardjax.envs.sql import SQLEnv, SQLEnvConfig, SQLReward, SQLRewardWeights, sql_reward
from rewardjax.envs.tool_judge import ToolJudgeConfig, ToolJudgeEnv
from rewardjax.envs.tool_rewards import ToolCall, tool_reward
from rewardjax.envs.training import (EnvRollouts, env_greedy, env_pass_at_1, env_rollout_config,
                                     grpo_arm, tool_warm_start, warm_started_agent)

__all__ = [
    "BM25",
    "CalculatorConfig",
    "CalculatorEnv",
    "Capabilities",
    "CodeProblem",
    "EndReason",
    "EnvRollouts",
    "Environment",
    "InvalidLimitError",
    "InvalidProgramError",
    "LabelConfig",
    "Limits",
    "MultiTurnDriver",
    "PythonProgram",
    "Reason",
    "Result",
    "RolloutConfig",
    "Rollouts",
    "SQLEnv",
    "SQLEnvConfig",
    "SQLProgram",
    "SQLReward",
    "SQLRewardWeights",
    "SearchConfig",
    "SearchEnv",
    "ToolCall",
    "ToolJudgeConfig",
    "ToolJudgeEnv",
    "Transition",
    "Turn",
    "append_tokens",
    "capabilities",
    "code_problems",
    "env_greedy",
    "env_pass_at_1",
    "env_rollout_config",
    "grpo_arm",
    "load_documents",
    "prm_records",
    "run",
    "run_many",
    "sql_reward",
    "tool_reward",
    "tool_warm_start",
    "warm_started_agent",
]
