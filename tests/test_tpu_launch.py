"""tpu/launch.sh: the commands it prints in dry-run form, and that they mean what they say.

The printed lines are read back by bash into argv; the remote string handed to
`gcloud ... ssh --command` is then run by bash in a scratch home directory with a stand-in
`python3` that records its argv, which is what a worker's login shell would do with it.
A `gcloud` stand-in that fails is first on PATH, so a dry run that called it would fail.
"""

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[1] / "tpu" / "launch.sh"
SSH = ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]
SCP = ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
TRICKY = """note=a b, c's "d" $HOME `x` \\ ;|&*"""


def _script(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def bin_dir(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    # Records its argv when GCLOUD_ARGV is set (a real, non-dry run); otherwise fails.
    _script(d / "gcloud", 'if [ -n "${GCLOUD_ARGV:-}" ]; then printf "%s\\0" "$@" >> "$GCLOUD_ARGV"; '
                          'exit 0; fi\necho "gcloud called in a dry run" >&2; exit 97\n')
    _script(d / "python3", 'printf "%s\\0" "$@" > "$ARGV_FILE"; echo "hello from $0"; '
                           'sleep "${FAKE_SLEEP:-0}"; exit "${FAKE_STATUS:-0}"\n')
    return d


def _env(bin_dir, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("DRY_RUN", "RUN_ID", "TPU_PYTHON")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env.update(extra)
    return env


def launch(bin_dir, *args, dry=True, **extra):
    cmd = ["bash", str(LAUNCH)] + (["--dry-run"] if dry else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(bin_dir, **extra),
                          timeout=30)


def argv_of(line: str) -> list[str]:
    """The argv bash builds from one printed command line."""
    out = subprocess.run(["bash", "-c", 'eval "set -- $1"; printf "%s\\0" "$@"', "_", line],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return out.split("\0")[:-1]


def commands(bin_dir, *args, **extra) -> list[list[str]]:
    result = launch(bin_dir, *args, **extra)
    assert result.returncode == 0, result.stderr
    return [argv_of(line) for line in result.stdout.splitlines()]


def remote_command(argv: list[str], name: str, zone: str) -> str:
    assert argv[:5] == SSH and argv[5] == name
    assert argv[6:9] == [f"--zone={zone}", "--worker=all", "--command"] and len(argv) == 10
    return argv[9]


def run_remote(remote: str, home: Path, bin_dir: Path, **extra):
    return subprocess.run(["bash", "-c", remote], cwd=home, capture_output=True, text=True,
                          env=_env(bin_dir, **extra), timeout=30)


def test_experiment_runs_on_every_worker_and_its_arguments_survive_quoting(tmp_path, bin_dir):
    [ssh] = commands(bin_dir, "experiment", "my-pod", "us-west4-a", "grpo_arith",
                     "--preset", "paper", "--set", "mesh.fsdp=16", "--set", TRICKY, "rl.steps=5",
                     RUN_ID="r1")
    remote = remote_command(ssh, "my-pod", "us-west4-a")
    home = tmp_path / "home"
    (home / "rewardjax").mkdir(parents=True)
    argv_file = tmp_path / "argv"
    done = run_remote(remote, home, bin_dir, ARGV_FILE=str(argv_file), FAKE_STATUS="3")
    # The worker's exit status is the experiment's, not tee's.
    assert done.returncode == 3, done.stderr
    assert argv_file.read_text().split("\0")[:-1] == [
        "experiments/grpo_arith.py", "--preset", "paper", "--set", "mesh.fsdp=16",
        "--set", TRICKY, "--set", "rl.steps=5", "--out", "runs/r1", "--distributed"]
    [log] = (home / "rewardjax" / "runs" / "r1" / "logs").iterdir()
    assert log.name.endswith(".log") and "hello from" in log.read_text()
    assert "hello from" in done.stdout


def test_detached_experiment_keeps_running_after_the_command_returns(tmp_path, bin_dir):
    [ssh] = commands(bin_dir, "experiment", "my-pod", "us-west4-a", "experiments/dr_grpo.py",
                     "--set=rl.steps=2", "--out", "runs/my run", "--detach")
    home = tmp_path / "home"
    (home / "rewardjax").mkdir(parents=True)
    argv_file = tmp_path / "argv"
    start = time.monotonic()
    # The stand-in experiment runs for 3 s; run_remote reads the session's output to its
    # end, so returning sooner shows the run left the session free.
    done = run_remote(remote_command(ssh, "my-pod", "us-west4-a"), home, bin_dir,
                      ARGV_FILE=str(argv_file), FAKE_SLEEP="3")
    assert time.monotonic() - start < 2.5
    assert done.returncode == 0 and done.stdout == "", done.stderr
    deadline = time.monotonic() + 20
    while not (argv_file.exists() and argv_file.read_text().endswith("\0")):
        assert time.monotonic() < deadline, "detached run never started"
        time.sleep(0.05)
    assert argv_file.read_text().split("\0")[:-1] == [
        "experiments/dr_grpo.py", "--set", "rl.steps=2", "--out", "runs/my run",
        "--distributed"]
    logs = home / "rewardjax" / "runs" / "my run" / "logs"
    while not any("hello from" in p.read_text() for p in logs.glob("*.log")):
        assert time.monotonic() < deadline, "detached run wrote no log"
        time.sleep(0.05)


def test_pod_lifecycle_commands(tmp_path, bin_dir):
    ckpt = tmp_path / "deepseek-math-7b-instruct"
    ckpt.mkdir()
    [create] = commands(bin_dir, "create", "my-pod", "us-west4-a", "v5litepod-16", "--spot")
    assert create == ["gcloud", "compute", "tpus", "tpu-vm", "create", "my-pod",
                      "--zone=us-west4-a", "--accelerator-type=v5litepod-16",
                      "--version=v2-alpha-tpuv5-lite", "--spot"]
    [create_v4] = commands(bin_dir, "create", "my-pod", "us-central2-b", "v4-32",
                           "--version=tpu-vm-base")
    assert [a for a in create_v4 if a.startswith("--version")] == ["--version=tpu-vm-base"]

    tar, scp, install = commands(bin_dir, "setup", "my-pod", "us-west4-a", TMPDIR=str(tmp_path))
    archive = str(tmp_path / "rewardjax-my-pod.tgz")
    assert tar[:3] == ["tar", "czf", archive] and tar[-3:] == ["-C", str(LAUNCH.parents[1]), "."]
    assert {"--exclude=.git", "--exclude=checkpoints", "--exclude=runs"} <= set(tar)
    assert scp == SCP + [archive, "my-pod:rewardjax.tgz", "--zone=us-west4-a", "--worker=all"]
    install_cmd = remote_command(install, "my-pod", "us-west4-a")
    assert "python3 -m pip install -q -U 'jax[tpu]'" in install_cmd
    assert install_cmd.endswith("cd rewardjax && python3 -m pip install -q -U pip && python3 -m "
                                "pip install -q -U 'jax[tpu]' && python3 -m pip install -q -e .")

    mkdir, copy = commands(bin_dir, "checkpoint", "my-pod", "us-west4-a", f"{ckpt}/")
    assert remote_command(mkdir, "my-pod", "us-west4-a") == "mkdir -p rewardjax/checkpoints/"
    assert copy == SCP + ["--recurse", str(ckpt), "my-pod:rewardjax/checkpoints/",
                          "--zone=us-west4-a", "--worker=all"]

    [run] = commands(bin_dir, "run", "my-pod", "us-west4-a", "--", "python3", "-c",
                     "import jax; print(jax.device_count())")
    assert (remote_command(run, "my-pod", "us-west4-a")
            == "cd rewardjax && python3 -c 'import jax; print(jax.device_count())'")

    mkdir_local, fetch = commands(bin_dir, "fetch", "my-pod", "us-west4-a", "runs/r1")
    assert mkdir_local == ["mkdir", "-p", "runs"]
    assert fetch == SCP + ["--recurse", "my-pod:rewardjax/runs/r1", "runs",
                           "--zone=us-west4-a", "--worker=0"]

    assert commands(bin_dir, "delete", "my-pod", "us-west4-a") == [
        ["gcloud", "compute", "tpus", "tpu-vm", "delete", "my-pod", "--zone=us-west4-a",
         "--quiet"]]


def test_a_real_run_calls_gcloud_with_the_printed_argv(tmp_path, bin_dir):
    args = ["experiment", "my-pod", "us-west4-a", "grpo_arith", "--preset", "paper",
            "--set", TRICKY]
    [printed] = commands(bin_dir, *args, RUN_ID="r2")
    record = tmp_path / "gcloud_argv"
    real = launch(bin_dir, *args, dry=False, RUN_ID="r2", GCLOUD_ARGV=str(record))
    assert real.returncode == 0, real.stderr
    assert ["gcloud"] + record.read_text().split("\0")[:-1] == printed


@pytest.mark.parametrize("args,message", [
    (["experiment", "my-pod", "us-west4-a", "grpo_arith", "--set", "mesh.fsdp"],
     "--set expects KEY=VALUE, got 'mesh.fsdp'"),
    (["experiment", "my-pod", "us-west4-a", "no_such_experiment"],
     "no experiment 'no_such_experiment' in experiments/; known:"),
    (["experiment", "my-pod"], "expected COMMAND NAME ZONE, got 2 argument(s)"),
    (["create", "my-pod", "us-west4-a", "x9-8"], "no default runtime version for accelerator"),
])
def test_bad_usage_exits_2_with_a_usage_message(bin_dir, args, message):
    result = launch(bin_dir, *args)
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr and "usage: tpu/launch.sh" in result.stderr
