"""experiments/genarm.py end to end at CI size, its presets, and the same run on a (2,2,2)
mesh of 8 simulated devices giving the one-device ARM losses and pass@1 figures."""

import json
import math

import pytest

from tests.experiments.conftest import load_experiment

# The smoke preset with a narrower model and fewer problems: every stage, in seconds.
SMALL = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_heads=2",
         "model.num_kv_heads=1", "model.head_dim=16", "eval_problems=8", "eval_pairs=8",
         "max_new_tokens=8"]


def _run(overrides, out, capsys):
    module = load_experiment("genarm")
    argv = ["--preset", "smoke", "--out", str(out)]
    for item in SMALL + overrides:
        argv += ["--set", item]
    result = module.experiment.main(module.PRESETS, module.run, argv=argv)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("RESULT ")]
    assert len(lines) == 1 and lines[0].startswith("RESULT pass1_base=")
    assert json.loads((out / "result.json").read_text()) == result
    return result


def test_presets_load_and_reject_bad_betas():
    module = load_experiment("genarm")
    assert {"tiny", "smoke", "paper"} <= set(module.PRESETS)
    assert "arXiv:2410.08193" in module.__doc__ and "tiny" in module.__doc__
    assert math.inf in module.PRESETS["tiny"].betas  # the sweep starts at the base policy
    with pytest.raises(ValueError, match="GenARM beta must be > 0"):
        module.Config(betas=(1.0, 0.0))
    with pytest.raises(ValueError, match="beta_r"):
        module.Config(beta_r=0.0)


def test_genarm_smoke_on_a_mesh_matches_one_device(tmp_path, capsys):
    one = _run([], tmp_path / "one", capsys)
    assert {"pass1_base", "pass1_guided", "best_beta", "arm_pair_accuracy",
            "pass1_beta_inf", "pass1_beta_1"} <= set(one)
    # β = inf through the guided decoder is the base policy's greedy decoding.
    assert one["pass1_beta_inf"] == one["pass1_base"]
    assert (tmp_path / "one" / "beta_sweep.png").is_file()
    assert (tmp_path / "one" / "arm_curves.png").is_file()
    mesh = _run(["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"], tmp_path / "mesh", capsys)

    def losses(d):
        return [json.loads(l)["loss"] for l in (d / "metrics.jsonl").read_text().splitlines()
                if "loss" in json.loads(l)]

    a, b = losses(tmp_path / "one"), losses(tmp_path / "mesh")
    assert a and len(a) == len(b)
    for x, y in zip(a, b):
        assert abs(x - y) <= 1e-4, (a, b)
    for k in ("pass1_base", "pass1_beta_inf", "pass1_beta_1"):
        assert mesh[k] == one[k], k
