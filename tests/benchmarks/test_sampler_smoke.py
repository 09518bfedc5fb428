"""benchmarks/sampler.py and decode_profile.py end to end on a tiny model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
TINY = ["--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--mlp", "128",
        "--threads", "1"]


def run(script, *args):
    # A fresh interpreter, as a user runs it: the benchmarks import their siblings and set
    # XLA's thread flags before jax starts (the test session's jax has started already).
    proc = subprocess.run([sys.executable, str(BENCH / script), *TINY, *args],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.rstrip().splitlines()[-1]


def test_sampler_benchmark_both_prompt_sets(tmp_path):
    line = run("sampler.py", "--batch", "2", "--prompt-len", "128", "--new-tokens", "4",
               "--runs", "1", "--reps", "1", "--out", str(tmp_path))
    assert line.startswith("RESULT ")
    result = json.loads((tmp_path / "result.json").read_text())
    for case in ("equal_b2", "natural_b2"):
        assert result[f"{case}_jax_e2e_tok_s"] > 0 and result[f"{case}_hf_e2e_tok_s"] > 0
        assert result[f"{case}_e2e_speedup"] > 0
    # same weights and prompts on both sides: greedy decoding agrees token for token
    assert result["greedy_match_min"] == 1.0
    # the natural set is left-padded, the equal set is not
    assert 0.2 < result["natural_pad_share"] < 0.8
    runs = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert len(runs["rewardjax"]) == len(runs["transformers"]) == 1


def test_decode_profile_pieces(tmp_path):
    line = run("decode_profile.py", "--batch", "2", "--prompt-len", "32", "--new-tokens", "32",
               "--iters", "2", "--reps", "1", "--out", str(tmp_path))
    assert line.startswith("RESULT ")
    result = json.loads((tmp_path / "result.json").read_text())
    for piece in ("qkv", "cache_write", "attention", "o_proj", "mlp", "final", "step", "decode"):
        assert result[f"{piece}_ms"] > 0 and result[f"{piece}_floor_ms"] >= 0
    # 32 new tokens decode in one phase over a cache of prompt + 32 slots
    assert result["cache_len"] == 64


def test_topk_benchmark_quick(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "sampling_topk.py"), "--quick",
                           "--threads", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.rstrip().splitlines()[-1].startswith("RESULT ")
    result = json.loads((tmp_path / "result.json").read_text())
    # the script raises before timing if the three masks differ; both ratios are measured
    assert result["8x2048_k10_ms"] > 0
    assert result["8x2048_k10_vs_torch"] > 0 and result["8x2048_k10_vs_lax"] > 0
