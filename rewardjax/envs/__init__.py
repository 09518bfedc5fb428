"""Environments for agentic RL: tools and multi-turn environments, and the sandbox that runs model-written code (never in the trainer's process)."""

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

__all__ = [
    "Capabilities",
    "InvalidLimitError",
    "InvalidProgramError",
    "Limits",
    "PythonProgram",
    "Reason",
    "Result",
    "SQLProgram",
    "capabilities",
    "run",
    "run_many",
]
