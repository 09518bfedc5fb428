"""benchmarks/search.py end to end on a tiny model: both methods run, the figures come out."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "search.py"


def test_search_benchmark_quick(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_search", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    line = bench.main(["--quick", "--out", str(tmp_path)])
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == line
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["bon_tok_s"] > 0 and result["beam_tok_s"] > 0
    assert result["timed_compiles"] == 0
    assert result["bon_gather_share"] == 0 and result["beam_gather_share"] > 0
    for m in ("bon", "beam"):
        assert 0 < result[f"{m}_decode_share"] < 1 and 0 < result[f"{m}_score_share"] < 1
