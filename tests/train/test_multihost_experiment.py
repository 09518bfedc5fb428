"""A reward-model experiment on two processes (4 simulated devices each, gloo) ends with
the parameters of one process with 8 devices; only process 0 reports; its checkpoint
restores in a one-process run on another mesh and continues to the parameters of an
uninterrupted run."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "experiments" / "bradley_terry_rm.py")
# A small model and run; a constant learning rate, so a 4-step run continued to 6 steps
# follows the schedule of a 6-step run, and Adam's eps large enough that a gradient near
# zero does not turn reduction-order rounding into a full-size step.
SETTINGS = ["backbone.hidden_size=32", "backbone.intermediate_size=64", "backbone.num_layers=1",
            "backbone.num_heads=2", "backbone.num_kv_heads=2", "backbone.head_dim=16",
            "num_train=256", "num_test=16", "sft.steps=2", "sft.num_examples=128",
            "batch_size=8", "eval_every=100", "optimizer.lr=1e-3",
            "optimizer.warmup_steps=0", "optimizer.min_lr_ratio=1.0", "optimizer.eps=1e-3"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out, steps, mesh, devices, extra=()):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    cmd = [sys.executable, SCRIPT, "--preset", "tiny", "--out", str(out), "--set", *SETTINGS,
           f"steps={steps}", *(f"mesh.{k}={v}" for k, v in mesh.items()), *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait(procs):
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    return logs


def _params(out: Path) -> dict:
    """The RM stage's latest checkpointed params, as numpy."""
    directory = out / "checkpoints" / "metrics"
    step = max(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    path = directory / str(step) / "state"
    with ocp.PyTreeCheckpointer() as ckptr:
        meta = ckptr.metadata(path).item_metadata.tree
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
        state = ckptr.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))
    return state["params"]


def _close(a, b, tol):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=tol), a, b)


@pytest.mark.slow
def test_two_process_experiment_equals_one_process_and_resumes_on_another_mesh(tmp_path):
    mesh = {"data": 2, "fsdp": 2, "tensor": 2}
    port = _free_port()
    two = tmp_path / "two"
    procs = [_launch(two, 4, mesh, 4, ["--coordinator", f"127.0.0.1:{port}",
                                       "--num-processes", "2", "--process-id", str(i)])
             for i in range(2)]
    one = _launch(tmp_path / "one", 4, mesh, 8)
    logs = _wait(procs + [one])
    assert [log.count("RESULT ") for log in logs] == [1, 0, 1]  # process 1 reports nothing
    assert (two / "result.json").is_file()
    _close(_params(two), _params(tmp_path / "one"), 1e-6)

    # The two-process checkpoint continues from step 4 to 6 on one process and another mesh.
    resumed = tmp_path / "resumed"
    shutil.copytree(two, resumed)
    other = {"data": 1, "fsdp": 4, "tensor": 1}
    logs = _wait([_launch(resumed, 6, other, 4), _launch(tmp_path / "straight", 6, other, 4)])
    assert "metrics:  67%" in logs[0] or "4/6" in logs[0], logs[0][-2000:]
    _close(_params(resumed), _params(tmp_path / "straight"), 1e-6)
