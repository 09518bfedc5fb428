import ast
import dataclasses
import datetime
import json
import pathlib

import pytest

from rewardjax import cli, experiment, results
from rewardjax.train import write_result

# Read by the runner from the module of `run` (here `_toy_run`): the table shows only these.
HEADLINE = ("score",)


def _write(path: pathlib.Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


def _record(**kw):
    return {"experiment": "bradley_terry_rm", "preset": "tiny",
            "paper": "Skywork-Reward-V2: Scaling Preference Data Curation via Human-AI "
                     "Synergy (arXiv:2507.01352)",
            "headline": None, "commit": "0123456789abcdef0123456789abcdef01234567",
            "started": "2025-06-01T10:20:30+00:00", "overrides": [], "processes": 1,
            "minutes": 3.25, **kw}


@pytest.fixture
def tree(tmp_path):
    # Five numeric figures, a string and a bool: the first four numbers other than minutes.
    _write(tmp_path / "bt" / "result.json",
           {"minutes": 3.1, "accuracy": 0.96875, "loss": 0.1234567, "label": "x", "ok": True,
            "margin": 2, "ece": 0.05, "extra": 9.0})
    _write(tmp_path / "bt" / "run.json", _record())
    _write(tmp_path / "grpo" / "result.json",
           {"reward": 0.4, "pass1_before": 0.5, "pass1_after": 0.8945, "minutes": 15.52})
    _write(tmp_path / "grpo" / "run.json",
           _record(experiment="grpo_arith", headline=["pass1_before", "pass1_after"],
                   paper="DeepSeekMath: Pushing the Limits (arXiv:2402.03300)", minutes=None))
    _write(tmp_path / "old" / "result.json", {"pass1_before": 0.5, "pass1_after": 0.9336,
                                              "minutes": 7.8})
    per_seed = [{"seed": 0, "accuracy": 0.875}, {"seed": 1, "accuracy": 0.969}]
    _write(tmp_path / "nested" / "bt3" / "result.json",
           {"accuracy": 0.922, "accuracy_min": 0.875, "accuracy_max": 0.969,
            "seeds": [0, 1], "per_seed": per_seed})
    _write(tmp_path / "nested" / "bt3" / "run.json", _record(preset="paper", seeds=[0, 1]))
    for r in per_seed:
        _write(tmp_path / "nested" / "bt3" / f"seed{r['seed']}" / "result.json", r)
    return tmp_path


def test_rows_pick_headlines_and_mark_runs_without_a_record(tree):
    rows = {r.path: r for r in results.collect(tree)}
    assert sorted(rows) == ["bt", "grpo", "nested/bt3", "old"]  # the seed runs have no rows
    assert rows["bt"].headline == (("accuracy", "0.9688"), ("loss", "0.1235"),
                                   ("margin", "2"), ("ece", "0.05"))
    assert rows["bt"].minutes == 3.25  # the runner's wall clock, not the run's own figure
    assert rows["grpo"].headline == (("pass1_before", "0.5"), ("pass1_after", "0.8945"))
    assert rows["grpo"].minutes == 15.52
    assert rows["nested/bt3"].headline == (("accuracy", "0.922 [0.875, 0.969]"),)
    assert rows["nested/bt3"].seeds == (0, 1)
    old = rows["old"]
    assert (old.experiment, old.preset, old.paper, old.commit) == (
        None, None, None, results.NO_RUN_RECORD)
    assert old.started  # the result file's time stands in for the start
    assert old.headline == (("pass1_before", "0.5"), ("pass1_after", "0.9336"))


def test_table_has_one_line_per_run(tree, capsys):
    assert cli.main(["results", str(tree)]) == 0
    old_date = datetime.datetime.fromtimestamp(
        (tree / "old" / "result.json").stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    out = capsys.readouterr().out
    table = [l for l in out.splitlines() if l.startswith("| ") and "---" not in l]
    assert table[0].startswith("| experiment | preset | paper | headline figures |")
    assert table[1:] == [
        "| bradley_terry_rm | paper (seeds 0,1) | [Skywork-Reward-V2](https://arxiv.org/abs/"
        "2507.01352) | accuracy=0.922 [0.875, 0.969] | 3.2 | 2025-06-01 10:20 | 0123456789 | "
        "`nested/bt3` |",
        "| bradley_terry_rm | tiny | [Skywork-Reward-V2](https://arxiv.org/abs/2507.01352) | "
        "accuracy=0.9688, loss=0.1235, margin=2, ece=0.05 | 3.2 | 2025-06-01 10:20 | "
        "0123456789 | `bt` |",
        "| grpo_arith | tiny | [DeepSeekMath](https://arxiv.org/abs/2402.03300) | "
        "pass1_before=0.5, pass1_after=0.8945 | 15.5 | 2025-06-01 10:20 | 0123456789 | "
        "`grpo` |",
        f"| ? | ? |  | pass1_before=0.5, pass1_after=0.9336 | 7.8 | {old_date} | "
        "before run.json existed | `old` |",
    ]
    assert "python -m rewardjax results runs/ > docs/results.md" in out


def test_bad_inputs_exit_with_the_file_named(tmp_path, capsys):
    assert cli.main(["results", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["results", str(tmp_path)]) == 1
    assert "no result.json" in capsys.readouterr().err
    _write(tmp_path / "a" / "result.json", "{not json")
    assert cli.main(["results", str(tmp_path)]) == 2
    assert f"{tmp_path / 'a' / 'result.json'}: cannot read it as JSON" in capsys.readouterr().err
    _write(tmp_path / "a" / "result.json", "[1, 2]")
    with pytest.raises(results.ResultsError, match="expected a JSON object of figures, found list"):
        results.collect(tmp_path)


def test_paper_of_reads_the_first_arxiv_id_and_its_quoted_title():
    doc = ('Bradley–Terry reward model.\n\nPaper: "Skywork-Reward-V2: Scaling Preference\n'
           'Data Curation" (arXiv:2507.01352), whose loss is the one of "InstructGPT"\n'
           '(arXiv:2203.02155).')
    assert results.paper_of(doc) == ("Skywork-Reward-V2: Scaling Preference Data Curation "
                                     "(arXiv:2507.01352)")
    far = '"a quoted phrase" ' + "x " * 60 + "(arXiv:1707.06347)"
    assert results.paper_of(far) == "arXiv:1707.06347"
    assert results.paper_of("no paper here") is None and results.paper_of(None) is None


def test_paper_of_names_every_shipped_experiment():
    root = pathlib.Path(__file__).parents[1] / "experiments"
    for script in sorted(root.glob("*.py")):
        doc = ast.get_docstring(ast.parse(script.read_text()))
        paper = results.paper_of(doc)
        assert paper and not paper.startswith("arXiv:"), (script.name, paper)


def test_git_commit_never_fails(tmp_path):
    assert results.git_commit(tmp_path) == "unknown"
    assert results.git_commit(tmp_path / "not-there") == "unknown"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Toy:
    seed: int = 0
    steps: int = 3


def _toy_run(config, out):
    result = {"loss": 1.5, "score": config.steps + config.seed / 4, "minutes": 0.01}
    write_result(out, result)
    return result


def test_runner_output_feeds_the_table(tmp_path, capsys):
    doc = '"Toy Paper: a subtitle" (arXiv:2401.00001)'
    experiment.main({"tiny": Toy()}, _toy_run, description=doc,
                    argv=["--out", str(tmp_path / "one"), "--set", "steps=5"])
    experiment.main({"tiny": Toy()}, _toy_run, description=doc,
                    argv=["--out", str(tmp_path / "three"), "--seeds", "0,1,2"])
    capsys.readouterr()
    rows = {r.path: r for r in results.collect(tmp_path)}
    assert sorted(rows) == ["one", "three"]
    assert rows["one"].experiment == "test_results" and rows["one"].preset == "tiny"
    assert rows["one"].paper == "Toy Paper: a subtitle (arXiv:2401.00001)"
    assert rows["one"].headline == (("score", "5.0"),)
    assert rows["three"].headline == (("score", "3.25 [3.0, 3.5]"),)
    assert rows["three"].seeds == (0, 1, 2)
    assert rows["one"].commit != results.NO_RUN_RECORD
    assert json.loads((tmp_path / "one" / "run.json").read_text())["headline"] == ["score"]
