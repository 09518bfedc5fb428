"""Agents: tools and environments for multi-turn rollouts, and the sandbox that runs model-written code."""

from rewardjax.agents.sandbox import (
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
