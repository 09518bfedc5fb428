"""The tutorial notebooks run top to bottom at CI sizes and are committed without outputs.

Each notebook's first code cell is tagged `parameters` and holds plain assignments. As
papermill does, the test inserts a cell right after it that assigns the CI sizes below
(each name must be one of the notebook's parameters), then runs every cell in a fresh
kernel with nbclient, in a temporary working directory. Any cell error fails the test, and
so does a notebook that shows no figure. The kernel sees one CPU device, as a user's does
(the test session simulates eight).
"""

import ast
import os
import time
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
PARAMETERS_TAG = "parameters"
CELL_TIMEOUT_S = 600

# CI sizes: every stage runs, the figures measure nothing. Budget ~90 s CPU per notebook.
CI_PARAMETERS = {
    "01_models_and_sampling": {"NUM_SAMPLES": 2, "MAX_NEW_TOKENS": 16},
    "02_reward_model": {"SFT_STEPS": 20, "STEPS": 40, "NUM_TEST": 128, "EVAL_EVERY": 40},
    "03_process_rewards": {"SFT_STEPS": 20, "STEPS": 40, "NUM_TRAIN": 256, "NUM_TEST": 128},
    "04_grpo_and_editing_a_loss": {"SFT_STEPS": 20, "RL_STEPS": 2, "PROMPTS_PER_STEP": 4,
                                   "GROUP_SIZE": 4, "EVAL_PROBLEMS": 16},
    "05_test_time_scaling": {"PRESET": "smoke", "NUM_EVAL": 4, "NS": [1, 2], "SHOW_N": 2},
}


def _parameters_cell(nb, name: str) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert PARAMETERS_TAG in cell.metadata.get("tags", []), (
                f"{name}: the first code cell (cell {i}) must be tagged {PARAMETERS_TAG!r}")
            return i
    raise AssertionError(f"{name}: no code cell")


def _parameter_names(source: str, name: str) -> set[str]:
    names = set()
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
            node.targets[0], ast.Name), (
            f"{name}: the parameters cell may hold only `NAME = value` lines, found "
            f"{ast.unparse(node)!r}")
        ast.literal_eval(node.value)  # a literal, so CI and users can replace it
        names.add(node.targets[0].id)
    return names


def _kernel_env() -> dict:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    # The kernel runs in a temporary directory: put this checkout first on its path, so
    # the notebooks test this package whatever copy the environment has installed.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "XLA_FLAGS": " ".join(flags), "PYTHONPATH": path}


def test_the_issue_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == sorted(CI_PARAMETERS), (
        f"notebooks/ holds {[p.name for p in NOTEBOOKS]}; each needs CI sizes in CI_PARAMETERS")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{path.name} cell {i} has outputs or an execution count; strip them "
                f"(jupyter nbconvert --clear-output --inplace {path.name})")
    assert "widgets" not in nb.metadata, f"{path.name}: widget state in the metadata"
    cell = nb.cells[_parameters_cell(nb, path.name)]
    _parameter_names(cell.source, path.name)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_at_ci_size(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    at = _parameters_cell(nb, path.name)
    known = _parameter_names(nb.cells[at].source, path.name)
    ci = CI_PARAMETERS[path.stem]
    unknown = sorted(set(ci) - known)
    assert not unknown, f"{path.name}: CI sets {unknown}, which are not among its parameters {sorted(known)}"
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in ci.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(at + 1, injected)

    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute(env=_kernel_env())
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
    # the figures reach the notebook (a backend switched to Agg would drop them silently)
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if "image/png" in o.get("data", {})]
    assert figures, f"{path.name} showed no figure"
