"""The main job's terminal output carries our progress and summary lines, not
third-party warnings (issue 13: a new user saw math-verify's "Timeout is disabled" and
transformers' "PyTorch was not found" fill the terminal)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]

# The main install has no torch, and transformers warns on import when it finds none;
# this test environment has torch, so the run hides it as a clean install would lack it.
_WITHOUT_TORCH = """
import runpy, sys
sys.modules["torch"] = None  # find_spec and import now fail, as without the package
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

THIRD_PARTY = [
    re.compile(r"warn", re.IGNORECASE),  # logging's WARNING, warnings' UserWarning, ...
    re.compile(r"Timeout is disabled"),  # math-verify
    re.compile(r"PyTorch was not found"),  # transformers
    re.compile(r"^[WEF]\d{4} "),  # absl / XLA C++ log lines
    re.compile(r"Traceback"),
]


def _lines(text: str) -> list[str]:
    # tqdm redraws with carriage returns; each redraw is a line of its own here.
    return [part for line in text.splitlines() for part in line.split("\r") if part.strip()]


def test_patterns_catch_the_warnings_a_new_user_saw():
    seen = ["WARNING:math_verify.parser:Timeout is disabled as parsing_timeout is None or <= 0",
            "[transformers] PyTorch was not found. Models won't be available and only tokenizers",
            "/x/site-packages/jax/_src/xla_bridge.py:900: UserWarning: something",
            "W0000 00:00:1700000000.000000  123 cpu_client.cc:123] something"]
    assert all(any(p.search(line) for p in THIRD_PARTY) for line in seen)
    ours = ["[grpo_arith] preset=smoke outputs -> runs/grpo_arith-smoke",
            "sft: 100%|██████████| 10/10 [00:23<00:00,  2.37s/it, loss=5.818]",
            "held-out greedy pass@1 before RL: 0.000",
            "RESULT pass1_before=0.0 pass1_after=0.0 minutes=1.56"]
    assert not any(p.search(line) for line in ours for p in THIRD_PARTY)


@pytest.mark.slow
def test_smoke_run_prints_no_third_party_warnings(tmp_path):
    env = dict(os.environ)
    # As a user runs it: one CPU device, not the 8 simulated ones of the test session.
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace(
        "--xla_force_host_platform_device_count=8", "").strip()
    for name in ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, str(ROOT / "experiments" / "grpo_arith.py"),
         "--preset", "smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    output = _lines(proc.stdout + proc.stderr)
    assert proc.returncode == 0, "\n".join(output[-30:])
    assert _lines(proc.stdout)[-1].startswith("RESULT pass1_before="), output[-5:]
    noisy = [line for line in output if any(p.search(line) for p in THIRD_PARTY)]
    assert not noisy, noisy
