"""benchmarks/rl_step.py end to end on a tiny model: both trainers run, the figures come out."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "rl_step.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_rl_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rl_step_smoke(tmp_path, capsys):
    bench = load_benchmark()
    line = bench.main(["--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
                       "--mlp", "128", "--new-tokens", "4", "--prompts", "2", "--group", "2",
                       "--steps", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == line and line.startswith("RESULT ")
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["jax_step_s"] > 0 and result["trl_step_s"] > 0 and result["speedup"] > 0
    # same weights, same prompt ids, same prompts each step, exactly T tokens on both sides
    assert float(result["logit_max_diff"]) < 1e-4
    assert result["same_prompt_ids"] and result["same_prompts"] and result["same_lengths"]
    assert result["jax_timed_compiles"] == 0
