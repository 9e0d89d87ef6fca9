"""The `hf-select` command line end to end on a small pool: score, select, methods, demo, and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from datasets import load_from_disk

from hf_select.cli import main
from hf_select.record import SelectionRecord
from hf_select.save import load_selection_folder

N_ROWS = 30


def _rows() -> list[dict]:
    rows = []
    for i in range(N_ROWS):
        turns = [{"from": "human", "value": f"Question {i}? " + "more " * i}, {"from": "gpt", "value": "ok " * (i + 1)}]
        if i % 10 == 7:
            turns = turns[:1]  # last turn is not the assistant's
        rows.append({"id": f"r{i}", "conversations": turns, "cluster": i % 3, "source": f"src{i % 2}"})
    return rows


@pytest.fixture
def pool_file(tmp_path: Path) -> Path:
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    return path


@pytest.fixture
def scored(tmp_path: Path, pool_file: Path, tiny_tokenizer: str) -> Path:
    out = tmp_path / "scored"
    assert (
        main(["score", str(pool_file), "--method", "token-length", "--tokenizer", tiny_tokenizer, "-o", str(out)]) == 0
    )
    return out


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err  # progress bars may come first
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("hf-select: error: ")
    return last


def test_score_writes_a_scored_copy_with_provenance(scored: Path, pool_file: Path, tiny_tokenizer: str) -> None:
    """`score` writes every row in order with counts or NaN + reason, and records scorer and source."""
    ds = load_from_disk(str(scored))
    assert ds["id"] == [f"r{i}" for i in range(N_ROWS)]
    errors = ds["n_tokens_error"]
    assert [i for i, e in enumerate(errors) if e] == [7, 17, 27]
    assert all(n == n for n, e in zip(ds["n_tokens"], errors, strict=True) if not e)  # finite where no error
    provenance = json.loads((scored / "hf_select.json").read_text())
    assert provenance["source"]["dataset"] == str(pool_file)
    assert len(provenance["source"]["sha256"]) == 64
    (entry,) = provenance["scorers"]
    assert entry["method"] == "token-length" and entry["template"] == "chat"
    assert entry["config"]["tokenizer"] == tiny_tokenizer and len(entry["tokenizer"]["sha256"]) == 64
    assert entry["command"].startswith("hf-select score ")


def test_select_top_k_with_controls(
    scored: Path, tmp_path: Path, pool_file: Path, capsys: pytest.CaptureFixture
) -> None:
    """`select` writes the selection folder and its same-size random controls, with complete records."""
    out = tmp_path / "longest"
    argv = ["select", str(scored), "--method", "top-k", "--column", "n_tokens", "--budget", "5", "--controls", "2"]
    assert main([*argv, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "random seed 0" in printed and "random seed 1" in printed and str(out) in printed

    subset = load_selection_folder(out)
    scored_ds = load_from_disk(str(scored))
    best = sorted(
        range(N_ROWS), key=lambda i: (-(scored_ds["n_tokens"][i] if not scored_ds["n_tokens_error"][i] else -1), i)
    )[:5]
    assert subset["id"] == [f"r{i}" for i in sorted(best)]
    record = SelectionRecord.load(out)
    assert record.method == "top-k" and record.kept["rows"] == 5
    assert record.source["dataset"] == str(pool_file) and record.scorers[0]["method"] == "token-length"
    assert record.command.startswith("hf-select select ")
    for seed in (0, 1):
        control = SelectionRecord.load(Path(f"{out}-controls") / f"seed-{seed}")
        assert control.method == "random" and control.seed == seed and control.kept["rows"] == 5
        ids = load_selection_folder(Path(f"{out}-controls") / f"seed-{seed}")["id"]
        assert not {"r7", "r17", "r27"} & set(ids)  # controls come from the rows the score can pick from


@pytest.mark.parametrize(
    ("extra", "method_kept"),
    [
        (["--method", "random", "--budget", "0.2", "--seed", "3"], ("random", 6)),
        (["--method", "threshold", "--column", "n_tokens", "--min-value", "0"], ("threshold", 27)),
        (["--method", "within-clusters", "--column", "n_tokens", "--budget", "9"], ("within-clusters", 9)),
        (["--method", "random", "--budget", "200 tokens", "--column", "n_tokens"], ("random", None)),
    ],
)
def test_select_methods(scored: Path, tmp_path: Path, extra: list[str], method_kept: tuple[str, int | None]) -> None:
    """Every selector runs from the CLI and records what it did."""
    out = tmp_path / "sel"
    assert main(["select", str(scored), *extra, "-o", str(out)]) == 0
    record = SelectionRecord.load(out)
    method, kept = method_kept
    assert record.method == method
    if kept is not None:
        assert record.kept["rows"] == kept == len(load_selection_folder(out))
    else:
        assert 0 < record.kept["tokens"] <= 200


def test_select_can_chain_on_a_selection_folder(scored: Path, tmp_path: Path) -> None:
    """A selection folder is itself a valid input."""
    first, second = tmp_path / "first", tmp_path / "second"
    assert (
        main(["select", str(scored), "--method", "top-k", "--column", "n_tokens", "--budget", "10", "-o", str(first)])
        == 0
    )
    assert main(["select", str(first), "--method", "random", "--budget", "3", "-o", str(second)]) == 0
    assert set(load_selection_folder(second)["id"]) <= set(load_selection_folder(first)["id"])


def test_methods_lists_scorers_and_selectors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("token-length", "top-k", "threshold", "random", "within-clusters", "n_tokens_error", "budget"):
        assert name in out


def test_user_errors_are_one_line(
    scored: Path, pool_file: Path, tmp_path: Path, tiny_tokenizer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mistakes print one clear line and exit 2, never a traceback, and never write over the input."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"foo": 1, "bar": "x"}\n')
    err = _error(
        capsys,
        ["score", str(bad), "--method", "token-length", "--tokenizer", tiny_tokenizer, "-o", str(tmp_path / "o1")],
    )
    assert "'foo'" in err and "'bar'" in err
    err = _error(
        capsys, ["select", str(scored), "--method", "top-k", "--column", "n_tokens", "--budget", "5", "-o", str(scored)]
    )
    assert "refusing" in err
    err = _error(
        capsys,
        ["select", str(scored), "--method", "top-k", "--column", "n_tokens", "--budget", "5", "-o", str(scored / "x")],
    )
    assert "refusing" in err
    err = _error(
        capsys,
        ["select", str(scored), "--method", "top-k", "--column", "nope", "--budget", "5", "-o", str(tmp_path / "o2")],
    )
    assert "'nope'" in err and "n_tokens" in err
    err = _error(
        capsys,
        [
            "select",
            str(scored),
            "--method",
            "top-k",
            "--column",
            "n_tokens",
            "--budget",
            "28",
            "-o",
            str(tmp_path / "o3"),
        ],
    )
    assert "27" in err  # 27 rows can be selected
    err = _error(
        capsys,
        [
            "select",
            str(scored),
            "--method",
            "top-k",
            "--column",
            "n_tokens",
            "--budget",
            "lots",
            "-o",
            str(tmp_path / "o4"),
        ],
    )
    assert "'lots'" in err
    err = _error(
        capsys,
        ["select", str(tmp_path / "missing.jsonl"), "--method", "random", "--budget", "1", "-o", str(tmp_path / "o5")],
    )
    assert "no such file" in err
    err = _error(capsys, ["select", str(scored), "--method", "top-k", "--budget", "1", "-o", str(tmp_path / "o6")])
    assert "--column" in err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    err = _error(capsys, ["select", str(scored), "--method", "random", "--budget", "1", "-o", str(tmp_path / "taken")])
    assert "--overwrite" in err
    assert load_from_disk(str(scored)).num_rows == N_ROWS  # the input is untouched


def test_console_script_and_demo(tmp_path: Path) -> None:
    """The installed entry point runs the embedded default (a small slice, so a tenth of it) end to end."""
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_select",
            "demo",
            "--limit",
            "200",  # no --budget: a tenth of the rows
            "--controls",
            "2",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "longest 20" in proc.stdout and "random seed 1" in proc.stdout
    for name in ("pool-scored", "longest-20", "random-seed-0", "random-seed-1"):
        assert (out / name).is_dir()
    record = SelectionRecord.load(out / "longest-20")
    assert record.source["dataset"] == "embedded:sharegpt" and record.scorers[0]["template"] == "chat"
    assert record.kept["rows"] == 20 and record.pool["rows"] == 200
    version = subprocess.run([sys.executable, "-m", "hf_select", "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("hf-select ")


def test_score_with_a_model_scorer_and_select_by_it(
    pool_file: Path, tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`score --method ifd --model` runs the LM engine and records the model; `select` can then use `ifd`."""
    out = tmp_path / "ifd"
    argv = ["score", str(pool_file), "--method", "ifd", "--model", tiny_model, "--template", "paper"]
    assert main([*argv, "--max-length", "64", "--batch-tokens", "256", "-o", str(out)]) == 0
    ds = load_from_disk(str(out))
    assert [i for i, e in enumerate(ds["ifd_error"]) if e] == [7, 17, 27]
    entry = json.loads((out / "hf_select.json").read_text())["scorers"][0]
    assert entry["method"] == "ifd" and entry["template"] == "paper"
    assert entry["config"]["max_length"] == 64 and entry["config"]["batch_tokens"] == 256
    assert len(entry["model"]["config_sha256"]) == 64 and entry["model"]["weights"]
    below_one = [i for i, v in enumerate(ds["ifd"]) if v <= 1.0]  # Cherry LLM drops IFD > 1
    assert below_one  # the tiny random model still gives some
    sel = tmp_path / "sel"
    argv = ["select", str(out), "--method", "top-k", "--column", "ifd", "--max-value", "1.0"]
    assert main([*argv, "--budget", str(len(below_one)), "-o", str(sel)]) == 0
    assert load_selection_folder(sel)["id"] == [f"r{i}" for i in below_one]
    assert SelectionRecord.load(sel).scorers[0]["method"] == "ifd"


def test_score_dry_run_estimates_and_writes_nothing(
    pool_file: Path, tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--dry-run` prints rows, tokens and an estimated time from a timed probe, and writes no output."""
    out = tmp_path / "never"
    argv = ["score", str(pool_file), "--method", "ce", "--model", tiny_model, "--dry-run", "--probe-rows", "8"]
    assert main([*argv, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"ce on {N_ROWS} rows" in printed and "estimated time" in printed and "probe: 8 random rows" in printed
    assert not out.exists()


def test_score_option_mistakes(
    pool_file: Path, tmp_path: Path, tiny_tokenizer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "o")
    assert "needs --model" in _error(capsys, ["score", str(pool_file), "--method", "ce", "-o", out])
    err = _error(
        capsys,
        [
            "score",
            str(pool_file),
            "--method",
            "token-length",
            "--tokenizer",
            tiny_tokenizer,
            "--turns",
            "all",
            "-o",
            out,
        ],
    )
    assert "does not take --turns" in err
    err = _error(
        capsys,
        [
            "score",
            str(pool_file),
            "--method",
            "token-length",
            "--tokenizer",
            tiny_tokenizer,
            "--columns",
            "a",
            "-o",
            out,
        ],
    )
    assert "--columns needs --format" in err


def test_example_score_select_push_runs_against_the_hub_endpoint(fake_hub: Any, tmp_path: Path) -> None:
    """examples/score_select_push.py scores, selects and publishes to HF_ENDPOINT (here the loopback fake)."""
    repo_id = fake_hub.new_repo_id("example")
    script = Path(__file__).resolve().parents[1] / "examples" / "score_select_push.py"
    proc = subprocess.run(
        [sys.executable, str(script), repo_id, "--rows", "60", "--budget", "10"],
        capture_output=True, text=True, timeout=600, env={**os.environ},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"pushed 10 rows to {repo_id}" in proc.stdout
    files = fake_hub.files(repo_id)
    assert {"README.md", "selection.json", "data/train-00000-of-00001.parquet"} <= set(files)
    assert "scores/train-00000-of-00001.parquet" in files and len(fake_hub.commits(repo_id)) == 2


def test_select_ifd_drops_rows_above_one(tmp_path: Path) -> None:
    """`select --method ifd` keeps the highest IFD among rows with IFD <= 1 (Cherry LLM), not the highest overall."""
    pool = tmp_path / "ifd.jsonl"
    values = [0.5, 1.4, 0.9, float("nan"), 0.95, 2.0]
    pool.write_text("".join(json.dumps({"id": i, "ifd": v}) + "\n" for i, v in enumerate(values)))
    out = tmp_path / "sel"
    assert main(["select", str(pool), "--method", "ifd", "--budget", "2", "-o", str(out)]) == 0
    assert load_selection_folder(out)["id"] == [2, 4]
    record = SelectionRecord.load(out)
    assert record.method == "ifd" and record.parameters["max_value"] == 1.0


def test_select_zip_and_kcenter(scored: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The diversity selectors run from the CLI, write a card and a record, and keep their pick order."""
    out = tmp_path / "zip"
    argv = ["select", str(scored), "--method", "zip", "--budget", "6", "--k1", "20", "--k2", "8", "--k3", "3"]
    assert main([*argv, "--workers", "1", "--controls", "1", "-o", str(out)]) == 0
    record = SelectionRecord.load(out)
    assert record.method == "zip" and record.kept["rows"] == 6 and (out / "README.md").is_file()
    assert not {"r7", "r17", "r27"} & set(load_selection_folder(out)["id"])  # bad rows are never picked

    rows = load_from_disk(str(scored)).to_list()
    for i, row in enumerate(rows):
        row["embedding"] = [float(i % 5), float(i // 5), 1.0]
    pool = tmp_path / "emb.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "kc"
    argv = ["select", str(pool), "--method", "kcenter", "--column", "embedding", "--budget", "5", "--init", "0,29"]
    assert main([*argv, "--controls", "1", "-o", str(out)]) == 0
    record = SelectionRecord.load(out)
    assert record.method == "kcenter" and record.kept["rows"] == 5
    assert {"r0", "r29"} <= set(load_selection_folder(out)["id"]) and (out / "README.md").is_file()


def test_select_centroid_after_kmeans(tmp_path: Path) -> None:
    """`select --method centroid` fills per-cluster quotas with the rows nearest their centroid."""
    rows = [{"id": i, "cluster": i % 2, "cluster_distance": float(i), "n_tokens": 10.0} for i in range(10)]
    pool = tmp_path / "clustered.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "sel"
    assert main(["select", str(pool), "--method", "centroid", "--budget", "4", "-o", str(out)]) == 0
    assert load_selection_folder(out)["id"] == [0, 1, 2, 3]
    assert SelectionRecord.load(out).parameters["mode"] == "centroid"


def test_score_embed_from_the_cli(pool_file: Path, tmp_path: Path, tiny_model: str) -> None:
    """`score --method embed --normalize` writes unit vectors, and NaN vectors + a reason for bad rows."""
    out = tmp_path / "emb"
    argv = ["score", str(pool_file), "--method", "embed", "--model", tiny_model, "--normalize", "-o", str(out)]
    assert main(argv) == 0
    ds = load_from_disk(str(out))
    vectors = ds["embedding"]
    for i, (vector, error) in enumerate(zip(vectors, ds["embedding_error"], strict=True)):
        if i in (7, 17, 27):
            assert error and all(v != v for v in vector)
        else:
            assert not error and abs(sum(v * v for v in vector) - 1.0) < 1e-4


def test_select_kmeans_by_score_and_by_centroid(tmp_path: Path) -> None:
    """`select --method kmeans` clusters the embeddings, then fills per-cluster quotas by a score or by
    distance to the centroid; two well-separated blobs get proportional quotas."""
    rows = []
    for i in range(12):
        blob = 0 if i < 8 else 1  # 8 rows near (0, 0), 4 near (10, 10)
        rows.append({"id": i, "embedding": [10.0 * blob + 0.01 * i, 10.0 * blob], "n_tokens": float(i)})
    pool = tmp_path / "emb.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = ["select", str(pool), "--method", "kmeans", "--column", "embedding", "--n-clusters", "2", "--budget", "3"]
    out = tmp_path / "by-score"
    assert main([*base, "--score-column", "n_tokens", "-o", str(out)]) == 0
    assert load_selection_folder(out)["id"] == [6, 7, 11]  # 2 of the 8-row blob, 1 of the 4-row blob, longest
    record = SelectionRecord.load(out)
    assert record.method == "kmeans" and record.parameters["mode"] == "score"
    assert record.parameters["clustering"]["config"]["n_clusters"] == 2
    out = tmp_path / "by-centroid"
    assert main([*base, "-o", str(out)]) == 0
    assert SelectionRecord.load(out).parameters["mode"] == "centroid" and len(load_selection_folder(out)) == 3


def test_overwrite_replaces_an_output_only_once_the_new_one_is_complete(
    scored: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A run with --overwrite that fails (here: a column the pool lacks) leaves the previous output whole;
    one that succeeds replaces it entirely, its controls folder included, and leaves no staging folder."""
    out = tmp_path / "sel"
    argv = ["select", str(scored), "--method", "top-k", "--column", "n_tokens", "-o", str(out), "--overwrite"]
    assert main([*argv, "--budget", "5", "--controls", "2"]) == 0
    before = SelectionRecord.load(out / "selection.json")
    (out / "data" / "train-00001-of-00002.parquet").write_bytes(b"a stale shard of an older run")
    capsys.readouterr()

    bad = [a if a != "n_tokens" else "no_such_column" for a in argv]
    assert "no_such_column" in _error(capsys, [*bad, "--budget", "3"])
    assert SelectionRecord.load(out / "selection.json").indices_sha256 == before.indices_sha256
    assert (out / "data" / "train-00001-of-00002.parquet").exists()

    assert main([*argv, "--budget", "3", "--controls", "1"]) == 0
    assert len(load_selection_folder(out)) == 3  # the stale shard went with the old folder
    assert not (out / "data" / "train-00001-of-00002.parquet").exists()
    assert sorted(p.name for p in Path(f"{out}-controls").iterdir()) == ["seed-0"]
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_staged_output_cleans_up_after_an_interrupted_write(tmp_path: Path) -> None:
    from hf_select.pool import staged_output

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), staged_output(out, [], overwrite=True) as folder:
        (folder / "new.txt").write_text("half")
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "old.txt").read_text() == "old"
    with staged_output(out, [], overwrite=True) as folder:
        (folder / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def test_save_selection_into_a_used_folder_keeps_only_its_own_shards(tmp_path: Path) -> None:
    from datasets import Dataset

    from hf_select import select
    from hf_select.save import save_selection

    ds = Dataset.from_dict({"x": list(range(10)), "n_tokens": list(range(10))})
    folder = tmp_path / "sel"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train-00003-of-00004.parquet").write_bytes(b"stale")
    sel = select.top_k(ds, "x", 4)
    save_selection(sel.dataset, folder, sel.record, card=False)
    assert sorted(load_selection_folder(folder)["x"]) == [6, 7, 8, 9]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_demo_with_a_limit_and_a_budget_records_the_limit(tmp_path: Path) -> None:
    """`--limit` with an explicit `--budget`: the record says which slice of the pool was used."""
    from hf_select.demo import run_demo

    result = run_demo(tmp_path / "demo", budget=5, controls=1, limit=60)
    assert set(result["written"]) == {"scored pool", "longest 5", "random seed 0"}
    record = SelectionRecord.load(tmp_path / "demo" / "longest-5")
    assert record.kept["rows"] == 5 and record.pool["rows"] == 60
    assert record.source["limit"] == 60 and record.source["num_rows"] == 60
