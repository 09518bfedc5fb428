"""Each experiment's tiny path end to end at a reduced size, and every preset loads."""

from pathlib import Path

import pytest

from tests.experiments.conftest import load_experiment

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
NAMES = tuple(sorted(p.stem for p in EXPERIMENTS.glob("*.py")))


@pytest.mark.parametrize("name", NAMES)
def test_presets_load_and_name_their_paper(name):
    module = load_experiment(name)
    assert {"tiny", "paper"} <= set(module.PRESETS)
    assert "arXiv:" in module.__doc__ and "tiny" in module.__doc__


def test_bradley_terry_smoke(smoke):
    result = smoke("bradley_terry_rm", ["sft.steps=2", "steps=3", "eval_every=3",
                                        "num_train=32", "num_test=16", "buckets=96"])
    assert 0 <= result["accuracy"] <= 1 and result["test_pairs"] == 16


def test_bradley_terry_hh_rlhf_smoke(smoke):
    result = smoke("bradley_terry_rm", ["data=hh_rlhf", "hh_test_fraction=0.01", "sft.steps=0",
                                        "steps=2", "eval_every=2", "buckets=128"])
    assert result["data"] == "hh_rlhf" and 0 <= result["accuracy"] <= 1


def test_process_rm_smoke(smoke):
    result = smoke("process_rm", ["sft.steps=2", "steps=2", "eval_every=2", "num_train=16",
                                  "num_test=16", "num_policy_eval=8", "mc.k=2",
                                  "mc.max_new_tokens=8", "mc.batch_size=32", "buckets=96"])
    assert {"f1", "f1_mc", "f1_always_no_error", "f1_random_step"} <= set(result)


def test_implicit_prm_smoke(smoke):
    result = smoke("implicit_prm", ["sft.steps=2", "steps=2", "eval_every=2", "num_train=16",
                                    "num_test=16", "batch_size=8", "buckets=96",
                                    "prm_result=none"])
    assert {"f1_at_zero", "error_acc_at_zero", "correct_acc_at_zero", "f1_delta",
            "outcome_accuracy"} <= set(result)
    assert "f1" not in result  # no unqualified F1 beside the rules' figures


def test_multi_objective_smoke(smoke):
    result = smoke("multi_objective_rm", ["sft.steps=2", "stage1_steps=2", "stage2_steps=2",
                                          "eval_every=2", "num_rated=16", "num_test_rated=8",
                                          "num_pairs=32", "num_test_pairs=16",
                                          "stage2_batch_size=8", "buckets=96"])
    assert {"gated_accuracy", "uniform_accuracy", "mse_correctness"} <= set(result)
