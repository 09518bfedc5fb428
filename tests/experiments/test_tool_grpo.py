"""tool_grpo end to end at a reduced size, and on a (2,2,2) mesh of 8 simulated devices
the same RL losses as on one device."""

import json

from tests.experiments.test_rl_experiments import MODEL, _run

REDUCED = MODEL + ["sft.steps=2", "eval_problems=4", "rl.steps=2", "rl.prompts_per_step=2",
                   "rl.group_size=2"]


def _losses(path, arm):
    return [json.loads(line)["loss"]
            for line in (path / f"rl_{arm}.jsonl").read_text().splitlines()]


def test_tool_grpo_smoke(tmp_path, capsys):
    result, line = _run("tool_grpo", REDUCED, tmp_path, capsys)
    assert line.startswith("RESULT pass1_sft_tool=")
    for key in ("pass1_sft_tool", "pass1_tool", "pass1_sft_no_tool", "pass1_no_tool"):
        assert 0 <= result[key] <= 1
    assert result["tool_vs_no_tool"] == round(result["pass1_tool"] - result["pass1_no_tool"], 4)
    rows = [json.loads(l) for l in (tmp_path / "rl_tool.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"reward/mean", "accuracy", "turns/mean", "end/done"} <= set(rows[-1])
    assert (tmp_path / "rl_curves.png").is_file()


def one_device_and_mesh_losses(name, args, arm, tmp_path, capsys):
    """The RL losses of `arm` when experiment `name` runs on one device and on a (2,2,2)
    mesh of 8 simulated devices."""
    _run(name, args, tmp_path / "one", capsys)
    _run(name, args + ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"], tmp_path / "mesh",
         capsys)
    return _losses(tmp_path / "one", arm), _losses(tmp_path / "mesh", arm)


def test_tool_grpo_on_a_mesh_matches_one_device(tmp_path, capsys):
    one, sharded = one_device_and_mesh_losses("tool_grpo", REDUCED + ["arms=tool"], "tool",
                                              tmp_path, capsys)
    assert len(one) == 2
    for a, b in zip(sharded, one):
        assert abs(a - b) <= 1e-4, (sharded, one)
