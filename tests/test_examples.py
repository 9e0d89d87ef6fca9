"""The long-running examples, shrunk to a few rows of the embedded ShareGPT pool on the tiny model: each
runs end to end from its command line, writes what its docstring says, and honours --overwrite."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from datasets import load_from_disk

from hf_select.record import SelectionRecord
from hf_select.save import load_selection_folder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory: pytest.TempPathFactory) -> str:
    from hf_select import embedded
    from hf_select.pool import load_pool

    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    pool = load_pool(embedded.SHAREGPT).dataset.select(range(40))
    path.write_text("".join(json.dumps(row) + "\n" for row in pool), encoding="utf-8")
    return str(path)


def test_diverse_evol_example(small_pool: str, tiny_model: str, tmp_path: Path) -> None:
    out = tmp_path / "de"
    argv = ["--pool", small_pool, "--model", tiny_model, "--init", "6", "--n-query", "4", "--rounds", "2"]
    argv += ["--max-length", "64", "--batch-size", "4", "-o", str(out)]
    main = _example("diverse_evol").main
    assert main(argv) == 0
    record = SelectionRecord.load(out)
    assert record.method == "diverseevol" and record.kept["rows"] == 6 + 2 * 4
    assert [len(d["picks"]) for d in record.parameters["round_details"]] == [4, 4]
    assert len(load_selection_folder(out)) == 14 and (out / "README.md").is_file()
    assert main(argv) == 2  # the output exists
    assert main([*argv, "--overwrite"]) == 0


def test_ifd_pre_experience_example(small_pool: str, tiny_model: str, tmp_path: Path) -> None:
    out = tmp_path / "ifd"
    argv = ["--pool", small_pool, "--model", tiny_model, "--clusters", "3", "--per-cluster", "2"]
    argv += ["--max-length", "2048", "--batch-size", "4", "--budget", "3", "-o", str(out)]
    assert _example("ifd_pre_experience").main(argv) == 0
    assert {p.name for p in out.iterdir()} == {"pre-experience", "model", "pool-scored", "ifd-top"}
    scored = load_from_disk(str(out / "pool-scored"))
    assert len(scored) == 40 and {"instruction_embedding", "instruction_ppl", "ifd"} <= set(scored.column_names)
    top = SelectionRecord.load(out / "ifd-top")
    assert top.kept["rows"] == 3 and top.parameters["max_value"] == 1.0
    ifd = next(
        s for s in json.loads((out / "pool-scored" / "hf_select.json").read_text())["scorers"] if s["method"] == "ifd"
    )
    assert ifd["config"]["model"] == str(out / "model")  # IFD under the fine-tuned model, at its final path
