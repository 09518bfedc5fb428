"""TFDS datasets prepared offline from the shipped data, read back as our records through grain.

Skipped without the `tfds` extra (tensorflow-datasets); the `test` extra installs it.
"""

import json
import os
import pickle
import subprocess
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

tfds = pytest.importorskip(
    "tensorflow_datasets", reason="tensorflow-datasets (the tfds extra) is not installed")

import grain  # noqa: E402

from rewardjax.data import tfds as tfds_lib  # noqa: E402
from rewardjax.data.hh_rlhf import read_hh_rlhf  # noqa: E402
from rewardjax.data.readers import iter_json_lines  # noqa: E402
from rewardjax.data.records import PromptWithAnswer, RecordError, StepSolution  # noqa: E402
from rewardjax.data.synthetic import arithmetic  # noqa: E402
from rewardjax.data.tfds import DataSource, FeatureMapping, FeatureMappingError  # noqa: E402
from tests.experiments.conftest import SMALL, load_experiment  # noqa: E402

GSM8K = Path(str(resources.files("rewardjax"))) / "assets" / "data" / "gsm8k"


def _gsm8k(split: str) -> list[PromptWithAnswer]:
    return [PromptWithAnswer(prompt=o["question"], answer=o["answer"])
            for _, o in iter_json_lines(GSM8K / f"{split}.jsonl")]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Both shipped datasets prepared once for the module (about two seconds)."""
    path = tmp_path_factory.mktemp("tfds")
    for name in tfds_lib.BUILDERS:
        tfds_lib.prepare(name, path)
    return path


def test_gsm8k_prepared_offline_reads_back_through_grain_as_the_jsonl_records(data_dir):
    records = tfds_lib.tfds_records("gsm8k_rewardjax", "test", data_dir=data_dir)
    expected = _gsm8k("test")
    assert len(records) == 1319 and list(records) == expected  # file order kept
    files = [p.name for p in (data_dir / "gsm8k_rewardjax" / "1.0.0").iterdir()]
    assert any(".array_record-" in f for f in files), files
    shuffled = list(grain.MapDataset.source(records).shuffle(seed=0))
    assert shuffled != expected and Counter(shuffled) == Counter(expected)
    # grain's worker processes get the source pickled: it reopens the files there.
    assert pickle.loads(pickle.dumps(records))[5] == expected[5]
    train = tfds_lib.tfds_records("gsm8k_rewardjax", "train", data_dir=data_dir)
    train_expected = _gsm8k("train")
    assert len(train) == 7473
    assert [train[i] for i in (0, 1234, -1)] == [train_expected[i] for i in (0, 1234, -1)]


def test_hh_rlhf_prepared_offline_reads_back_as_read_hh_rlhf_pairs(data_dir):
    records = tfds_lib.tfds_records("hh_rlhf_harmless_base", "test", data_dir=data_dir)
    assert list(records) == read_hh_rlhf().records
    assert sum(not p.chosen for p in records) == 4  # empty replies survive the round trip


def test_the_command_line_prepares_a_subset(tmp_path, capsys):
    tfds_lib.main(["gsm8k_rewardjax", "--data_dir", str(tmp_path),
                   "--max_examples_per_split", "5"])
    assert json.loads(capsys.readouterr().out)["splits"] == {"train": 5, "test": 5}
    assert list(tfds_lib.tfds_records("gsm8k_rewardjax", "test", data_dir=tmp_path)) == \
        _gsm8k("test")[:5]


class ArithStepsForTest(tfds.core.GeneratorBasedBuilder):
    """Synthetic arithmetic step solutions with their own feature names (one nested)."""

    VERSION = tfds.core.Version("0.1.0")

    def _info(self):
        f = tfds.features
        return tfds.core.DatasetInfo(builder=self, disable_shuffling=True, features=f.FeaturesDict({
            "problem": {"question": f.Text()}, "lines": f.Sequence(f.Text()),
            "correct": f.Sequence(np.float32), "kind": f.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, s in enumerate(arithmetic.step_solutions(12, seed=0)):
            yield i, {"problem": {"question": s.prompt}, "lines": list(s.steps),
                      "correct": list(s.labels), "kind": s.subset}
        # Example 12: two labels for one step.
        yield 12, {"problem": {"question": "q"}, "lines": ["1 + 1 = 2"], "correct": [1.0, 0.0],
                   "kind": "bad"}


STEPS = FeatureMapping(record_type=StepSolution, features={
    "prompt": "problem/question", "steps": "lines", "labels": "correct", "subset": "kind"})


def test_any_prepared_dataset_maps_to_step_solutions(tmp_path):
    builder = ArithStepsForTest(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    records = tfds_lib.tfds_records("arith_steps_for_test", "train", data_dir=tmp_path,
                                    mapping=STEPS)
    assert len(records) == 13 and records[:12] == arithmetic.step_solutions(12, seed=0)
    with pytest.raises(RecordError, match=r"^tfds:arith_steps_for_test\[train\] example 12 "
                                          r"\(feature 'correct'\): field 'labels': expected a "
                                          r"list of 1 labels"):
        records[12]
    with pytest.raises(ValueError, match="declares no mapping"):
        tfds_lib.tfds_records("arith_steps_for_test", "train", data_dir=tmp_path)


def test_a_dataset_whose_builder_is_not_imported_reads_from_its_files(tmp_path):
    """Another process, without the builder's code: TFDS reads the prepared files."""
    builder = ArithStepsForTest(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    code = (
        "import json, sys\n"
        "from rewardjax.data.records import StepSolution\n"
        "from rewardjax.data.tfds import FeatureMapping, tfds_records\n"
        "mapping = FeatureMapping.parse(StepSolution, sys.argv[2].split(','))\n"
        "records = tfds_records('arith_steps_for_test', 'train[:12]', data_dir=sys.argv[1],\n"
        "                       mapping=mapping)\n"
        "print(json.dumps([r.to_json() for r in records]))\n")
    items = ",".join(f"{k}={v}" for k, v in STEPS.features.items())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), items], env=env,
                         capture_output=True, text=True, check=True).stdout
    got = [StepSolution.from_json(o) for o in json.loads(out)]
    assert got == arithmetic.step_solutions(12, seed=0)
    texts_as_labels = FeatureMapping(record_type=StepSolution, features={
        "prompt": "kind", "steps": "lines", "labels": "lines"})
    with pytest.raises(FeatureMappingError, match="StepSolution.labels is mapped to feature "
                                                  "'lines': expected a sequence of numbers"):
        tfds_lib.tfds_records("arith_steps_for_test", "train", data_dir=tmp_path,
                              mapping=texts_as_labels)


def test_wrong_feature_mapping_names_the_feature(data_dir):
    missing = FeatureMapping(record_type=PromptWithAnswer,
                             features={"prompt": "questoin", "answer": "answer"})
    with pytest.raises(FeatureMappingError) as e:
        tfds_lib.tfds_records("gsm8k_rewardjax", "test", data_dir=data_dir, mapping=missing)
    message = str(e.value)
    assert "PromptWithAnswer.prompt" in message and "'questoin'" in message
    assert "answer, question" in message  # what the dataset has

    mistyped = FeatureMapping(record_type=StepSolution, features={
        "prompt": "question", "steps": "answer", "labels": "answer"})
    with pytest.raises(FeatureMappingError) as e:
        tfds_lib.tfds_records("gsm8k_rewardjax", "test", data_dir=data_dir, mapping=mistyped)
    message = str(e.value)
    assert "StepSolution.steps" in message and "feature 'answer'" in message
    assert "a sequence of text" in message and "found Text(shape=(), dtype=string)" in message

    with pytest.raises(ValueError, match="missing: answer"):
        FeatureMapping(record_type=PromptWithAnswer, features={"prompt": "question"})
    with pytest.raises(FileNotFoundError, match="no TFDS dataset 'nope_not_prepared'"):
        tfds_lib.tfds_records("nope_not_prepared", "test", data_dir=data_dir, mapping=missing)


def test_rl_recipe_prompt_pool_from_tfds_gsm8k(data_dir):
    from rewardjax.recipes.rl_arith import RLRecipe, rl_prompt_records
    cfg = RLRecipe(data=DataSource(source="tfds:gsm8k_rewardjax", data_dir=str(data_dir)))
    pool = rl_prompt_records(cfg, cfg.prompt_pool, seed=0, split="train")
    assert isinstance(pool, tfds_lib.TfdsRecords) and len(pool) == 7473  # stays on disk
    assert pool[5] == _gsm8k("train")[5]
    assert rl_prompt_records(cfg, 8, seed=0, split="test") == _gsm8k("test")[:8]
    with pytest.raises(FeatureMappingError, match="mapped to PreferencePair records; expected "
                                                  "PromptWithAnswer"):
        rl_prompt_records(RLRecipe(data=DataSource(source="tfds:hh_rlhf_harmless_base",
                                                   data_dir=str(data_dir))), 8, seed=0,
                          split="train")
    with pytest.raises(ValueError, match="DataSource.source"):
        DataSource(source="gsm8k")
    # `data.features=field=feature,...` declares the mapping from a command line.
    solutions_as_prompts = DataSource(source="tfds:gsm8k_rewardjax", data_dir=str(data_dir),
                                      features=("prompt=answer", "answer=answer"))
    assert solutions_as_prompts.records(PromptWithAnswer, split="test")[0].prompt == \
        _gsm8k("test")[0].answer
    misspelt = DataSource(source="tfds:gsm8k_rewardjax", data_dir=str(data_dir),
                          features=("prompt=questoin", "answer=answer"))
    with pytest.raises(FeatureMappingError, match="feature 'questoin'"):
        misspelt.records(PromptWithAnswer)


@pytest.mark.slow  # ~30 s, compiles dominate: the RL recipe end to end
def test_rl_recipe_runs_on_tfds_gsm8k_prompts(data_dir, tmp_path, monkeypatch):
    """`--set data.source=tfds:gsm8k_rewardjax`: GRPO's prompts and held-out problems
    are GSM8K questions (the first two of each split fit 96 prompt tokens)."""
    from rewardjax.recipes import rl_arith
    seen = {}

    def trainer_spy(*args, **kwargs):
        seen["trainer"] = trainer = arith_trainer(*args, **kwargs)
        return trainer

    def evaluate_spy(params, records, **kwargs):
        seen["held_out"] = list(records)
        return greedy_accuracy(params, records, **kwargs)

    arith_trainer, greedy_accuracy = rl_arith.arith_trainer, rl_arith.greedy_accuracy
    monkeypatch.setattr(rl_arith, "arith_trainer", trainer_spy)
    monkeypatch.setattr(rl_arith, "greedy_accuracy", evaluate_spy)
    module = load_experiment("grpo_arith")
    overrides = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=1",
                 "model.num_heads=2", "model.num_kv_heads=1", "sft.steps=0", "eval_problems=2",
                 "rl.steps=1", "rl.prompts_per_step=2", "rl.group_size=2", "rl.max_new_tokens=4",
                 "rl.minibatches=1", "rl.micro_batches=1", "rl.max_sampling_rounds=1",
                 "rl.prompt_length=96", "data.source=tfds:gsm8k_rewardjax",
                 f"data.data_dir={data_dir}"]
    argv = ["--preset", "tiny", "--out", str(tmp_path)]
    for item in overrides:
        argv += ["--set", item]
    result = module.experiment.main(module.PRESETS, module.run, argv=argv)
    assert 0 <= result["pass1_before"] <= 1 and (tmp_path / "rl.jsonl").is_file()
    assert seen["held_out"] == _gsm8k("test")[:2]
    assert list(seen["trainer"].prompts_fn(0, 0)) == _gsm8k("train")[:2]


def test_bradley_terry_trains_on_tfds_hh_rlhf_pairs(data_dir, tmp_path, capsys):
    module = load_experiment("bradley_terry_rm")
    via_tfds = module.Config(data="tfds:hh_rlhf_harmless_base", data_dir=str(data_dir))
    assert module._data(via_tfds) == module._data(module.Config(data="hh_rlhf"))
    argv = ["--preset", "tiny", "--out", str(tmp_path)]
    for item in SMALL + ["data=tfds:hh_rlhf_harmless_base", f"data_dir={data_dir}",
                         "hh_test_fraction=0.01", "sft.steps=0", "steps=2", "eval_every=2",
                         "buckets=128"]:
        argv += ["--set", item]
    result = module.experiment.main(module.PRESETS, module.run, argv=argv)
    assert result["data"] == "tfds:hh_rlhf_harmless_base" and 0 <= result["accuracy"] <= 1
    assert result["test_pairs"] > 0 and result["train_pairs"] > 1000
