"""An experiment on a (2,2,2) mesh of 8 simulated devices follows the one-device run:
the main job's recipe, reduced, gives the same RL losses step by step."""

import json

from tests.experiments.test_rl_experiments import MODEL, RL, _run


def _losses(path):
    return [json.loads(line)["loss"] for line in (path / "rl.jsonl").read_text().splitlines()]


def test_grpo_recipe_on_a_mesh_matches_one_device(tmp_path, capsys):
    steps = RL + ["rl.steps=3"]
    _run("grpo_arith", MODEL + steps, tmp_path / "one", capsys)
    mesh = ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]
    _run("grpo_arith", MODEL + steps + mesh, tmp_path / "mesh", capsys)
    one, sharded = _losses(tmp_path / "one"), _losses(tmp_path / "mesh")
    assert len(one) == 3
    for a, b in zip(sharded, one):
        assert abs(a - b) <= 1e-4, (sharded, one)
