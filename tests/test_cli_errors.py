"""Bad input and new-user paths of the `hf-select` command (issue #10): every mistake is one
`hf-select: error:` line with exit 2, Ctrl-C is one line with exit 130, `--split` is honoured or refused,
`--limit` keeps the first rows and says so, and `--help` answers without importing `datasets`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict, load_from_disk
from test_cli import _error  # one `hf-select: error:` line, exit 2, no traceback

from hf_select.cli import main


def _conversation(i: int, words: int = 1) -> dict:
    return {"conversations": [{"from": "human", "value": f"q{i} " * words}, {"from": "gpt", "value": "a " * words}]}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _score(source: Path | str, out: Path, tokenizer: str, *extra: str) -> list[str]:
    return ["score", str(source), "--method", "token-length", "--tokenizer", tokenizer, "-o", str(out), *extra]


def test_help_answers_without_importing_datasets() -> None:
    """`hf-select --help` and `--version` import neither `datasets` nor the scorers; the console script
    still lists every command."""
    probe = (
        "import sys\nfrom hf_select.cli import main\n"
        "for argv in (['--help'], ['--version']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "heavy = ('datasets', 'torch', 'transformers', 'hf_select.scorers')\n"
        "print('LOADED', sorted(m for m in heavy if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []"
    proc = subprocess.run(["hf-select", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for command in ("score", "cluster", "select", "push", "methods", "demo"):
        assert command in proc.stdout
    proc = subprocess.run(["hf-select", "score", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--method" in proc.stdout and "token-length" in proc.stdout


@pytest.mark.parametrize(("argv", "code"), [(["--help"], 0), (["methods"], 141)])
def test_a_closed_pipe_is_quiet(argv: list[str], code: int) -> None:
    """`hf-select methods | head -1`: the reader leaves before hf-select writes; no BrokenPipeError traceback
    (neither from the print nor from the interpreter's final flush), exit 141 as for SIGPIPE. (argparse's
    own help ignores the error and exits 0.)"""
    proc = subprocess.Popen(["hf-select", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the child has imported anything: its first write meets a closed pipe
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code and err.decode() == ""


def test_import_hf_select_is_light_and_its_names_still_work() -> None:
    probe = (
        "import sys, hf_select\nlight = 'datasets' not in sys.modules\n"
        "from hf_select import TokenLengthScorer, select, InputError\n"
        "names = all(getattr(hf_select, n) is not None for n in hf_select.__all__)\n"
        "print(light, TokenLengthScorer.method, callable(select.top_k), names)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["True", "token-length", "True", "True"], proc.stderr


def test_counts_below_one_are_clean_errors(
    tmp_path: Path, tiny_tokenizer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--num-proc -2` used to end in datasets' ValueError traceback."""
    pool = _jsonl(tmp_path / "pool.jsonl", [_conversation(i) for i in range(4)])
    err = _error(capsys, _score(pool, tmp_path / "o", tiny_tokenizer, "--num-proc", "-2"))
    assert err == "hf-select: error: --num-proc must be at least 1, got -2"
    assert "--limit must be at least 1" in _error(capsys, _score(pool, tmp_path / "o", tiny_tokenizer, "--limit", "0"))
    ce = ["score", str(pool), "--method", "ce", "--model", "unused", "--batch-tokens", "0", "-o", str(tmp_path / "o")]
    assert _error(capsys, ce) == "hf-select: error: --batch-tokens must be at least 1, got 0"  # was: the default
    assert not (tmp_path / "o").exists()


def test_unreadable_files_name_the_file_and_the_place(
    tmp_path: Path, tiny_tokenizer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken JSON line is named by file and line (datasets only logs it); an empty file says so."""
    lines = [json.dumps(_conversation(i)) for i in range(6)]
    lines[4] = '{"conversations": [{"from": "human", "value": "unterminated'
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = _error(capsys, _score(broken, tmp_path / "o", tiny_tokenizer))
    assert f"{broken}, line 5:" in err and "Unterminated string" in err

    (tmp_path / "array.json").write_text('[\n  {"instruction": "x", "output": "y"},\n  {"instruction": \n]\n')
    assert "array.json, line 4:" in _error(capsys, _score(tmp_path / "array.json", tmp_path / "o", tiny_tokenizer))

    (tmp_path / "empty.jsonl").write_text("")
    err = _error(capsys, _score(tmp_path / "empty.jsonl", tmp_path / "o", tiny_tokenizer))
    assert err.endswith("empty.jsonl is empty: no rows to read")
    (tmp_path / "header.csv").write_text("prompt,response\n")
    assert "header line but no rows" in _error(capsys, _score(tmp_path / "header.csv", tmp_path / "o", tiny_tokenizer))


def test_a_pickle_refused_by_torchs_safe_loader_is_a_clear_error(
    tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Weights in a pickle that `torch.load(weights_only=True)` refuses: one line that says why and what to do,
    instead of a page-long UnpicklingError traceback."""
    import shutil

    import torch
    from safetensors.torch import load_file

    model = tmp_path / "pickled-model"
    shutil.copytree(tiny_model, model)
    weights = load_file(str(model / "model.safetensors"))
    (model / "model.safetensors").unlink()
    weights["extra"] = os.getcwd  # a global the safe loader blocks (it could be any callable)
    torch.save(weights, model / "pytorch_model.bin")
    pool = _jsonl(tmp_path / "pool.jsonl", [_conversation(i) for i in range(3)])
    err = _error(capsys, ["score", str(pool), "--method", "ce", "--model", str(model), "-o", str(tmp_path / "o")])
    assert "torch's safe loader (weights_only=True) refused its pickled weights" in err
    assert "posix.getcwd" in err and "safetensors" in err


@pytest.mark.parametrize("method", ["token-length", "ce"])
def test_ctrl_c_is_one_line_and_exit_130(method: str, tmp_path: Path, tiny_tokenizer: str, tiny_model: str) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during scoring with two worker
    processes (forked for token-length, spawned for the model scorers): one line, no traceback from the
    command or a worker, status 130, no output or staging folder left."""
    pool = _jsonl(tmp_path / "pool.jsonl", [_conversation(i, words=300) for i in range(20_000)])
    out = tmp_path / "scored"
    model = ["--tokenizer", tiny_tokenizer] if method == "token-length" else ["--model", tiny_model]
    argv = ["hf-select", "score", str(pool), "--method", method, *model, "--num-proc", "2", "-o", str(out)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen, deadline = "", time.monotonic() + 300
    while f"hf-select {method} (num_proc=2)" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.read(1)  # the scoring's progress bar: the workers are starting or running
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGINT)
    err = seen + proc.stderr.read()
    assert proc.wait(timeout=120) == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == "hf-select: interrupted (Ctrl-C); outputs are written only when complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.jsonl"]


def test_split_is_refused_for_a_file_or_a_single_dataset(
    tmp_path: Path, tiny_tokenizer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--split test` on one file used to be ignored and recorded as if used; now it is refused, while the
    file's own split name ('train', as datasets names it) is accepted."""
    pool = _jsonl(tmp_path / "pool.jsonl", [_conversation(i) for i in range(4)])
    err = _error(capsys, _score(pool, tmp_path / "o", tiny_tokenizer, "--split", "test"))
    assert "single dataset" in err and "'test'" in err and "'train'" in err
    assert main(_score(pool, tmp_path / "ok", tiny_tokenizer, "--split", "train")) == 0
    assert json.loads((tmp_path / "ok" / "hf_select.json").read_text())["source"]["split"] == "train"

    Dataset.from_dict({"prompt": ["p"], "response": ["r"]}).save_to_disk(str(tmp_path / "saved"))
    err = _error(capsys, _score(tmp_path / "saved", tmp_path / "o2", tiny_tokenizer, "--split", "validation"))
    assert "single dataset" in err and "no split name" in err


def test_split_picks_a_split_of_a_dataset_dict_or_of_split_named_files(
    tmp_path: Path, tiny_tokenizer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder of `train.jsonl` + `test.jsonl` used to be merged into one pool; now its files are splits."""
    folder = tmp_path / "files"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", [_conversation(i) for i in range(5)])
    _jsonl(folder / "test.jsonl", [_conversation(100 + i) for i in range(2)])
    assert main(_score(folder, tmp_path / "test", tiny_tokenizer, "--split", "test")) == 0
    scored = load_from_disk(str(tmp_path / "test"))
    assert [c[0]["value"] for c in scored["conversations"]] == ["q100 ", "q101 "]
    assert json.loads((tmp_path / "test" / "hf_select.json").read_text())["source"]["split"] == "test"
    assert main(_score(folder, tmp_path / "train", tiny_tokenizer)) == 0  # default: 'train'
    assert len(load_from_disk(str(tmp_path / "train"))) == 5

    one = Dataset.from_dict({"prompt": ["p"], "response": ["r"]})
    dd = DatasetDict({"a": one, "b": one})
    dd.save_to_disk(str(tmp_path / "dict"))
    err = _error(capsys, _score(tmp_path / "dict", tmp_path / "o", tiny_tokenizer))
    assert "several splits ['a', 'b']" in err and "--split" in err


def test_limit_scores_the_first_rows_and_records_it(
    tmp_path: Path, tiny_tokenizer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`score --limit N` (like the demo's) keeps the first N rows and records `limit` in the source, which
    `select` carries into its record; a later, smaller limit is recorded as the one that holds."""
    pool = _jsonl(tmp_path / "pool.jsonl", [_conversation(i, words=i + 1) for i in range(10)])
    assert main(_score(pool, tmp_path / "scored", tiny_tokenizer, "--limit", "6")) == 0
    scored = load_from_disk(str(tmp_path / "scored"))
    assert [c[0]["value"].split()[0] for c in scored["conversations"]] == [f"q{i}" for i in range(6)]
    source = json.loads((tmp_path / "scored" / "hf_select.json").read_text())["source"]
    assert source["limit"] == 6 and source["num_rows"] == 6 and source["dataset"] == str(pool)

    from hf_select.record import SelectionRecord

    argv = ["select", str(tmp_path / "scored"), "--method", "top-k", "--column", "n_tokens", "--budget", "2"]
    assert main([*argv, "--limit", "4", "-o", str(tmp_path / "sel")]) == 0
    record = SelectionRecord.load(tmp_path / "sel")
    assert record.source["limit"] == 4 and record.pool["rows"] == 4


def test_a_json_conversation_column_scores_and_selects(
    tmp_path: Path, tiny_tokenizer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A conversation column of mixed shapes (a `Json` column in datasets 5) crashed `score` after it had
    written its output, and made `select` impossible (no `list_value_length` kernel for it). Now both run,
    rows that are not lists of turns get a reason, and the selection folder reads back."""
    rows = [_conversation(i, words=i + 1) for i in range(6)]
    rows[2] = {"conversations": [{"from": "human", "value": ["a", "list"]}, {"from": "gpt", "value": "x"}]}
    rows[4] = {"conversations": "plain text"}
    pool = _jsonl(tmp_path / "pool.jsonl", rows)
    assert main(_score(pool, tmp_path / "scored", tiny_tokenizer)) == 0
    assert "mean turns" in capsys.readouterr().out
    errors = load_from_disk(str(tmp_path / "scored"))["n_tokens_error"]
    assert [bool(e) for e in errors] == [False, False, True, False, True, False]
    assert "not a list of turns: str" in errors[4]
    argv = ["select", str(tmp_path / "scored"), "--method", "top-k", "--column", "n_tokens", "--budget", "2"]
    assert main([*argv, "--controls", "1", "-o", str(tmp_path / "sel")]) == 0
    from hf_select.save import load_selection_folder

    subset = load_selection_folder(tmp_path / "sel")
    assert [c[0]["value"].split()[0] for c in subset["conversations"]] == ["q3", "q5"]  # the two longest
    assert (tmp_path / "sel" / "README.md").read_text().count("mean turns") >= 1


def test_every_module_imports_first() -> None:
    """With `import hf_select` lazy, no module may rely on the package having imported another one first
    (e.g. `hf_select.cluster` and `hf_select.select` import each other: `hf-select cluster` imports
    `hf_select.cluster` first)."""
    import pkgutil

    import hf_select

    names = [m.name for m in pkgutil.walk_packages(hf_select.__path__, "hf_select.") if m.name != "hf_select.__main__"]
    probe = (
        "import importlib, sys\nfailed = []\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'hf_select' or m.startswith('hf_select.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except ImportError as err:\n        failed.append(f'{name}: {err}')\n"
        "print(failed)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert len(names) > 30 and proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr[-2000:]


def test_a_ctrl_c_just_after_a_workers_error_still_counts() -> None:
    """A spawned worker stopped by Ctrl-C mid-import can report its own error (no trace of the interrupt)
    a moment before this process runs its handler: the CLI waits briefly for that Ctrl-C instead of printing
    the worker's traceback (seen once in CI as exit 1 with `Could not import module 'LlamaConfig'`)."""
    import threading

    from hf_select import CLI_PID_VARIABLE, cli

    previous = cli._quiet_workers_on_ctrl_c()
    try:
        assert not cli._ctrl_c_seen(grace=0.05)  # no Ctrl-C: a real error stays an error
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        assert cli._ctrl_c_seen(grace=10)
    finally:
        signal.signal(signal.SIGINT, previous)
        os.environ.pop(CLI_PID_VARIABLE, None)
