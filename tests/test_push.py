"""`push_folder` / `push_selection` / `hf-select push` against the loopback fake Hub (real HTTP, real clients)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# HF_ENDPOINT & co. must be set before huggingface_hub/datasets are imported (tests/conftest.py does it;
# start_session_hub() is idempotent, so the module also runs on its own).
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)
from fake_hub import FAKE_TOKEN, FakeHub, fake_hub_fixture, start_session_hub  # noqa: E402, F401

if os.environ.get("HF_SELECT_HUB_TESTS") != "1":
    start_session_hub()

import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from datasets import Dataset, load_dataset  # noqa: E402
from huggingface_hub import DatasetCard, HfApi  # noqa: E402

import hf_select.save  # noqa: E402
from hf_select import select  # noqa: E402
from hf_select.cli import main  # noqa: E402
from hf_select.errors import InputError  # noqa: E402
from hf_select.push import (  # noqa: E402
    PushConflictError,
    PushError,
    PushTimeoutError,
    plan_folder,
    push_folder,
    push_selection,
)
from hf_select.save import save_selection  # noqa: E402

FAST = 0.001  # backoff base in seconds: retries in tests take milliseconds


def _pool(n: int = 40, offset: int = 0) -> Dataset:
    rows = [
        {
            "conversations": [
                {"from": "human", "value": f"question {i + offset}"},
                {"from": "gpt", "value": "answer " * (i % 7 + 1)},
            ],
            "n_tokens": (i * 7) % 23 + 1,
        }
        for i in range(n)
    ]
    return Dataset.from_list(rows)


def _selection(k: int = 10, n: int = 40, offset: int = 0) -> select.Selection:
    return select.top_k(_pool(n, offset), "n_tokens", k)


def _folder(tmp_path: Path, name: str = "sel", *, k: int = 10, scores: bool = True, readme: str | None = None) -> Path:
    pool = _pool()
    sel = select.top_k(pool, "n_tokens", k)
    folder = save_selection(
        sel.dataset, tmp_path / name, sel.record, scores=pool if scores else None, card=readme is None
    )
    if readme is not None:
        (folder / "README.md").write_text(readme, encoding="utf-8")
    return folder


def _load(repo_id: str, tmp_path: Path, config: str | None = None) -> Dataset:
    cache = tmp_path / f"cache-{time.monotonic_ns()}"
    return load_dataset(repo_id, config, split="train", cache_dir=str(cache), download_mode="force_redownload")


def _card(hub: FakeHub, repo_id: str) -> dict:
    return DatasetCard(hub.files(repo_id)["README.md"].decode()).data.to_dict()


def _assert_no_token(hub: FakeHub, repo_id: str) -> None:
    for path, data in hub.files(repo_id).items():
        assert FAKE_TOKEN.encode() not in data, path
    for commit in hub.commits(repo_id):
        assert FAKE_TOKEN not in commit["summary"] + commit["description"]


# ---------------------------------------------------------------------------------------------- round trip
def test_push_selection_round_trip(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id = fake_hub.new_repo_id("sel")
    pool = _pool()
    sel = select.top_k(pool, "n_tokens", 10)
    info = push_selection(sel.dataset, repo_id, sel.record, scores=pool)

    commits = fake_hub.commits(repo_id)
    assert [c["summary"] for c in commits] == [
        "initial commit",
        "hf-select: top-k selection of 10 rows (budget 10 rows)",
    ]
    assert info.oid == commits[-1]["sha"] == fake_hub.head(repo_id)
    assert fake_hub.count("/commit/", "POST") == 1  # one atomic commit
    files = fake_hub.files(repo_id)
    assert set(files) == {
        ".gitattributes", "README.md", "selection.json", "assets/hist-n_tokens.png",
        "data/train-00000-of-00001.parquet", "scores/train-00000-of-00001.parquet",
    }  # fmt: skip
    assert set(commits[-1]["lfs_files"]) >= {"data/train-00000-of-00001.parquet", "scores/train-00000-of-00001.parquet"}
    assert f"load_dataset({repo_id!r}" in files["README.md"].decode()  # the card's snippet names the repo
    assert json.loads(files["selection.json"]) == json.loads(sel.record.to_json())

    assert _load(repo_id, tmp_path).to_list() == sel.dataset.to_list()  # same rows, same order
    assert _load(repo_id, tmp_path, "scores").to_list() == pool.to_list()
    card = DatasetCard.load(repo_id, repo_type="dataset")
    assert card.data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]},
        {"config_name": "scores", "data_files": [{"split": "train", "path": "scores/train-*"}]},
    ]
    _assert_no_token(fake_hub, repo_id)
    assert fake_hub.unhandled == []


def test_push_folder_with_card_metadata(fake_hub: FakeHub, tmp_path: Path) -> None:
    readme = "---\nlicense: apache-2.0\npretty_name: Longest 10\ntags:\n- hf-select\n---\n# Longest 10\n\nBody.\n"
    folder = _folder(tmp_path, readme=readme, scores=False)
    (folder / "assets").mkdir()
    (folder / "assets" / "hist.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    repo_id = fake_hub.new_repo_id("card")
    push_folder(folder, repo_id, commit_message="with a card")

    card = DatasetCard.load(repo_id, repo_type="dataset")
    assert card.data.license == "apache-2.0" and card.data.pretty_name == "Longest 10"
    assert card.data.tags == ["hf-select"]
    assert card.data.configs == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert card.text.strip() == "# Longest 10\n\nBody."
    files = fake_hub.files(repo_id)
    assert files["assets/hist.png"] == (folder / "assets" / "hist.png").read_bytes()
    assert fake_hub.commits(repo_id)[-1]["summary"] == "with a card"


# ---------------------------------------------------------------------------------------------- existing repos
def test_second_push_keeps_other_config_and_deletes_stale_shards(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo_id = fake_hub.new_repo_id("merge")
    other = Dataset.from_dict({"x": [1, 2, 3]})
    other.push_to_hub(repo_id, config_name="other")
    # Their card also says something of its own (license, a custom key) that a push must keep.
    theirs = _card(fake_hub, repo_id)
    theirs.update(license="mit", pretty_name="Theirs", custom_key={"keep": True})
    text = f"---\n{yaml.safe_dump(theirs, sort_keys=False)}---\n# Their dataset\n"
    fake_hub.external_commit(repo_id, {"README.md": text.encode()}, summary="their card")

    monkeypatch.setattr(hf_select.save, "MAX_SHARD_BYTES", 2_000)  # several shards in the first push
    big = _folder(tmp_path, "big", k=30)
    assert len(list((big / "data").glob("*.parquet"))) > 1
    before = len(fake_hub.commits(repo_id))
    push_folder(big, repo_id, backoff_base=FAST)
    assert len(fake_hub.commits(repo_id)) == before + 1

    monkeypatch.setattr(hf_select.save, "MAX_SHARD_BYTES", 500 << 20)
    ours = "---\npretty_name: Ours\ntags:\n- hf-select\n---\n# Ours\n"
    small = _folder(tmp_path, "small", k=5, readme=ours)
    fake_hub.clear_log()
    push_folder(small, repo_id, backoff_base=FAST)

    commits = fake_hub.commits(repo_id)
    assert len(commits) == before + 2 and fake_hub.count("/commit/", "POST") == 1
    files = fake_hub.files(repo_id)
    assert sorted(p for p in files if p.startswith("data/")) == ["data/train-00000-of-00001.parquet"]
    assert sorted(p for p in files if p.startswith("scores/")) == ["scores/train-00000-of-00001.parquet"]
    assert any(p.startswith("other/") for p in files)  # their files are kept...
    assert all(p.startswith(("data/", "scores/")) for p in commits[-1]["deleted"])
    card = _card(fake_hub, repo_id)
    assert [c["config_name"] for c in card["configs"]] == ["other", "default", "scores"]  # ...and their config
    assert card["license"] == "mit" and card["custom_key"] == {"keep": True}  # their other metadata
    assert card["pretty_name"] == "Ours" and card["tags"] == ["hf-select"]  # ours win on our keys
    assert [i["config_name"] for i in card["dataset_info"]] == ["other"]

    assert _load(repo_id, tmp_path, "other").to_dict() == other.to_dict()
    small_rows = pq.read_table(small / "data" / "train-00000-of-00001.parquet").to_pylist()
    assert _load(repo_id, tmp_path).to_list() == small_rows
    _assert_no_token(fake_hub, repo_id)


def test_same_folder_again_makes_no_commit(fake_hub: FakeHub, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    repo_id = fake_hub.new_repo_id("noop")
    first = push_folder(folder, repo_id)
    again = push_folder(folder, repo_id)
    assert again.oid == first.oid == fake_hub.head(repo_id) and len(fake_hub.commits(repo_id)) == 2


def test_create_pr_and_branch(fake_hub: FakeHub, tmp_path: Path) -> None:
    folder = _folder(tmp_path, scores=False)
    repo_id = fake_hub.new_repo_id("pr")
    fake_hub.create_repo(repo_id)
    main_before = fake_hub.files(repo_id)
    info = push_folder(folder, repo_id, create_pr=True)
    assert info.pr_url is not None and fake_hub.files(repo_id) == main_before
    assert "data/train-00000-of-00001.parquet" in fake_hub.files(repo_id, "refs/pr/1")
    push_folder(folder, repo_id, revision="candidate")
    assert "selection.json" in fake_hub.files(repo_id, "candidate") and fake_hub.files(repo_id) == main_before


def test_private_flag_refuses_existing_public_repo(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id = fake_hub.new_repo_id("public")
    fake_hub.create_repo(repo_id)
    with pytest.raises(PushError, match="exists and is public"):
        push_folder(_folder(tmp_path), repo_id, private=True)
    assert len(fake_hub.commits(repo_id)) == 1
    new_id = fake_hub.new_repo_id("private")
    push_folder(_folder(tmp_path, "again"), new_id, private=True)
    assert HfApi().repo_info(new_id, repo_type="dataset").private is True


# ---------------------------------------------------------------------------------------------- failures
def _existing(fake_hub: FakeHub, tmp_path: Path) -> tuple[str, Path, str, dict[str, bytes]]:
    """A repo holding a first selection, and the folder of a different second one."""
    repo_id = fake_hub.new_repo_id("fail")
    push_folder(_folder(tmp_path, "first", k=10), repo_id)
    second = _folder(tmp_path, "second", k=4, scores=False)
    fake_hub.clear_log()
    return repo_id, second, fake_hub.head(repo_id), fake_hub.files(repo_id)


def test_commit_500_once_is_retried(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id, second, head, _ = _existing(fake_hub, tmp_path)
    fake_hub.fail_next("/commit/", 500)
    info = push_folder(second, repo_id, backoff_base=FAST)
    assert fake_hub.count("/commit/", "POST") == 2
    commits = fake_hub.commits(repo_id)
    assert commits[-2]["sha"] == head and commits[-1]["sha"] == info.oid  # exactly one new commit


def test_429_retry_after_is_honoured(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id, second, head, _ = _existing(fake_hub, tmp_path)
    fake_hub.fail_next("/commit/", 429, headers={"Retry-After": "1"}, body={"error": "slow down"})
    start = time.monotonic()
    push_folder(second, repo_id, backoff_base=FAST)
    assert time.monotonic() - start >= 1.0  # the backoff alone would have waited a millisecond
    assert fake_hub.count("/commit/", "POST") == 2 and fake_hub.commits(repo_id)[-2]["sha"] == head


def test_commit_500_every_time_leaves_repo_unchanged(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id, second, head, files = _existing(fake_hub, tmp_path)
    fake_hub.fail_next("/commit/", 500, times=None)
    with pytest.raises(PushError) as exc:
        push_folder(second, repo_id, max_retries=3, backoff_base=FAST)
    assert type(exc.value) is PushError and exc.value.status == 500
    assert "after 4 attempts" in str(exc.value) and "unchanged" in str(exc.value)
    assert FAKE_TOKEN not in str(exc.value)
    assert fake_hub.count("/commit/", "POST") == 4
    assert fake_hub.head(repo_id) == head and fake_hub.files(repo_id) == files


def test_client_errors_are_not_retried(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id, second, head, files = _existing(fake_hub, tmp_path)
    fake_hub.fail_next("/commit/", 403, body={"error": "You don't have the rights to write here"})
    with pytest.raises(PushError, match="HTTP 403") as exc:
        push_folder(second, repo_id, backoff_base=FAST)
    assert exc.value.status == 403 and fake_hub.count("/commit/", "POST") == 1
    assert fake_hub.head(repo_id) == head and fake_hub.files(repo_id) == files


def test_lost_response_after_commit_is_not_a_conflict(fake_hub: FakeHub, tmp_path: Path) -> None:
    """A 502 after the commit landed: the retry's 412 is our own commit, recognised by its files."""
    repo_id, second, head, _ = _existing(fake_hub, tmp_path)
    fake_hub.fail_next("/commit/", 502, after=True)
    info = push_folder(second, repo_id, backoff_base=FAST)
    commits = fake_hub.commits(repo_id)
    assert fake_hub.count("/commit/", "POST") == 2
    assert commits[-2]["sha"] == head and commits[-1]["sha"] == info.oid == fake_hub.head(repo_id)


def test_concurrent_writer_is_a_conflict(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id, second, head, files = _existing(fake_hub, tmp_path)

    def other_writer(request: object) -> None:  # commits while we pre-upload, after we read the head
        fake_hub.external_commit(repo_id, {"NOTES.md": b"their change"}, summary="their commit")

    fake_hub.on_request("/preupload/", other_writer)
    with pytest.raises(PushConflictError) as exc:
        push_folder(second, repo_id, backoff_base=FAST)
    message = str(exc.value)
    assert "another writer" in message and head[:8] in message and "their commit" in message
    assert exc.value.status == 412 and fake_hub.count("/commit/", "POST") == 1  # never retried
    commits = fake_hub.commits(repo_id)
    assert commits[-1]["summary"] == "their commit" and commits[-2]["sha"] == head
    assert fake_hub.files(repo_id) == {**files, "NOTES.md": b"their change"}


# ---------------------------------------------------------------------------------------------- the token
def test_token_never_leaks(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id = fake_hub.new_repo_id("token")
    push_folder(_folder(tmp_path), repo_id, token=FAKE_TOKEN)
    _assert_no_token(fake_hub, repo_id)

    wrong = "hf_wrong_token_that_must_not_show"
    with pytest.raises(PushError) as exc:
        push_folder(_folder(tmp_path, "wrong"), fake_hub.new_repo_id("token"), token=wrong)
    assert exc.value.status == 401 and wrong not in str(exc.value) and "HF_TOKEN" in str(exc.value)

    leaky = _folder(tmp_path, "leaky")
    (leaky / "notes.txt").write_text(f"pushed with {FAKE_TOKEN}\n")
    fake_hub.clear_log()
    with pytest.raises(PushError, match="contains your Hugging Face token") as exc:
        push_folder(leaky, repo_id)
    assert FAKE_TOKEN not in str(exc.value)
    assert fake_hub.count("/commit/") == 0 and fake_hub.count("/preupload/") == 0


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_dry_run_sends_nothing(fake_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path)
    repo_id = fake_hub.new_repo_id("dry")
    fake_hub.clear_log()
    assert main(["push", str(folder), "--repo-id", repo_id, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert fake_hub.requests == [] and not fake_hub.repo_exists(repo_id)
    assert "config_name: scores" in out and "path: data/train-*" in out
    for path in ("data/train-00000-of-00001.parquet", "scores/train-00000-of-00001.parquet", "selection.json"):
        assert path in out
    assert "nothing was sent" in out


def test_cli_push_end_to_end(fake_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path)
    repo_id = fake_hub.new_repo_id("cli")
    assert main(["push", str(folder), "--repo-id", repo_id, "--message", "Longest 10"]) == 0
    out = capsys.readouterr().out
    commit = fake_hub.commits(repo_id)[-1]
    assert commit["summary"] == "Longest 10" and commit["sha"] in out
    assert _load(repo_id, tmp_path).num_rows == 10
    other = _folder(tmp_path, "b", k=3)
    capsys.readouterr()  # progress bars of the loader and the parquet writer

    fake_hub.fail_next("/commit/", 403)
    assert main(["push", str(other), "--repo-id", repo_id, "--token", FAKE_TOKEN]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-select: error: push to") and "HTTP 403" in err and FAKE_TOKEN not in err
    assert len(err.strip().splitlines()) == 1

    assert main(["push", str(tmp_path / "missing"), "--repo-id", repo_id]) == 2
    assert "is not a folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- timeouts
def _within(seconds: float, fn: Callable[[], Any]) -> Any:
    """`fn()`'s result or exception, failing the test if it has not returned after `seconds` (a hang)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as err:  # handed to the test below
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: the request is not bounded"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_a_commit_never_answered_times_out_naming_the_step(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id, second, head, files = _existing(fake_hub, tmp_path)
    fake_hub.stall_next("/commit/", times=None, seconds=30)
    start = time.monotonic()
    with pytest.raises(PushTimeoutError) as exc:
        _within(20, lambda: push_folder(second, repo_id, timeout=0.5, max_retries=2, backoff_base=FAST))
    message = str(exc.value)
    assert "the commit" in message and "timed out" in message and "0.5 s" in message and "3 attempts" in message
    assert time.monotonic() - start < 15
    assert fake_hub.count("/commit/", "POST") == 3  # retried within the retry policy
    assert fake_hub.head(repo_id) == head and fake_hub.files(repo_id) == files


def test_a_commit_stalled_once_is_retried(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id, second, head, _ = _existing(fake_hub, tmp_path)
    fake_hub.stall_next("/commit/", seconds=30)
    info = _within(20, lambda: push_folder(second, repo_id, timeout=0.5, backoff_base=FAST))
    commits = fake_hub.commits(repo_id)
    assert fake_hub.count("/commit/", "POST") == 2 and commits[-2]["sha"] == head and commits[-1]["sha"] == info.oid


def test_reading_the_repo_times_out_and_creates_nothing(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id = fake_hub.new_repo_id("stall")
    folder = _folder(tmp_path)
    fake_hub.stall_next(f"/api/datasets/{repo_id}", times=None, method="GET", seconds=30)
    with pytest.raises(PushTimeoutError, match=r"reading the repo for .* timed out") as exc:
        _within(20, lambda: push_folder(folder, repo_id, timeout=0.3, max_retries=0))
    assert "1 attempt)" in str(exc.value) and not fake_hub.repo_exists(repo_id)


def test_cli_timeout_option(fake_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo_id, second, head, _ = _existing(fake_hub, tmp_path)
    fake_hub.stall_next("/commit/", seconds=60)  # without --timeout, the default (120 s) outlasts the test
    assert _within(30, lambda: main(["push", str(second), "--repo-id", repo_id, "--timeout", "0.5"])) == 0
    assert fake_hub.count("/commit/", "POST") == 2 and fake_hub.commits(repo_id)[-2]["sha"] == head
    assert fake_hub.commits(repo_id)[-1]["sha"] in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- refused early
def test_a_token_in_a_row_is_refused_before_any_request(fake_hub: FakeHub, tmp_path: Path) -> None:
    pool = Dataset.from_dict({"text": ["fine", f"my token is {FAKE_TOKEN}"], "n_tokens": [1.0, 2.0]})
    sel = select.top_k(pool, "n_tokens", 2)
    folder = save_selection(sel.dataset, tmp_path / "leaky", sel.record)
    repo_id = fake_hub.new_repo_id("leak")
    with pytest.raises(PushError, match="contains your Hugging Face token"):
        push_folder(folder, repo_id)
    assert fake_hub.requests == [] and not fake_hub.repo_exists(repo_id)


def test_an_invalid_card_creates_no_repo(fake_hub: FakeHub, tmp_path: Path) -> None:
    folder = _folder(tmp_path, readme="---\nlicense: [unclosed\n---\n# Card\n")
    repo_id = fake_hub.new_repo_id("yaml")
    with pytest.raises(InputError, match="invalid YAML"):
        push_folder(folder, repo_id)
    assert fake_hub.requests == [] and not fake_hub.repo_exists(repo_id)
    # metadata the Hub rejects: refused by its validation, before the repo is created
    fake_hub.fail_next("/api/validate-yaml", 400, body={"errors": [{"message": "license must be a license id"}]})
    with pytest.raises(PushError, match="license must be a license id"):
        push_folder(_folder(tmp_path, "hub-rejects"), repo_id)
    assert not fake_hub.repo_exists(repo_id) and fake_hub.count("/api/repos/create") == 0


def test_a_failed_upload_leaves_no_new_repo(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id = fake_hub.new_repo_id("upload")
    fake_hub.fail_next("/preupload/", 403, body={"error": "uploads are disabled"})
    with pytest.raises(PushError, match="HTTP 403") as exc:
        push_folder(_folder(tmp_path), repo_id, backoff_base=FAST)
    assert "created was deleted" in str(exc.value)
    assert fake_hub.count("/api/repos/create") == 1 and not fake_hub.repo_exists(repo_id)
    # an existing repo is never deleted: it is left as it was
    repo_id, second, head, files = _existing(fake_hub, tmp_path)
    fake_hub.fail_next("/preupload/", 403)
    with pytest.raises(PushError, match="HTTP 403"):
        push_folder(second, repo_id, backoff_base=FAST)
    assert fake_hub.head(repo_id) == head and fake_hub.files(repo_id) == files


def test_xet_failure_is_a_clean_error(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With Xet on (the default off this test set-up), the real hf_xet client asks the fake Hub for a Xet
    write token, which it does not serve: the upload fails outside HTTP, in hf_xet."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    repo_id = fake_hub.new_repo_id("xet")
    folder = _folder(tmp_path)
    capsys.readouterr()
    assert main(["push", str(folder), "--repo-id", repo_id]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[fake-hub]")]
    assert len(err) == 1 and err[0].startswith("hf-select: error: uploading the files of")
    assert "Xet storage" in err[0] and "HF_HUB_DISABLE_XET=1" in err[0]
    assert not fake_hub.repo_exists(repo_id)


@pytest.mark.parametrize("bad", ["not a repo", "a/b/c", "../etc", "me/x--y", "me/", "/name", "me/" + "n" * 200])
def test_invalid_repo_ids_are_clean_errors(
    fake_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    folder = _folder(tmp_path)
    fake_hub.clear_log()
    capsys.readouterr()  # progress bars of the parquet writer
    with pytest.raises(InputError, match="invalid Hub repo id"):
        push_folder(folder, bad)
    assert main(["push", str(folder), "--repo-id", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-select: error: invalid Hub repo id") and len(err.strip().splitlines()) == 1
    assert fake_hub.requests == []


def test_links_that_leave_the_folder_are_refused(fake_hub: FakeHub, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "id_rsa"
    secret.parent.mkdir()
    secret.write_text("PRIVATE KEY\n")
    repo_id = fake_hub.new_repo_id("links")
    for name, target in (("notes.txt", secret), ("assets/more", secret.parent)):
        folder = _folder(tmp_path, f"sel-{name.replace('/', '-')}")
        (folder / name).symlink_to(target)
        fake_hub.clear_log()
        with pytest.raises(InputError, match="outside"):
            push_folder(folder, repo_id)
        with pytest.raises(InputError, match="outside"):
            plan_folder(folder, repo_id)
        assert fake_hub.requests == [] and not fake_hub.repo_exists(repo_id)
    # a link that stays inside the folder is uploaded as the file it points to
    folder = _folder(tmp_path, "inside")
    (folder / "record-link.json").symlink_to(folder / "selection.json")
    push_folder(folder, repo_id)
    files = fake_hub.files(repo_id)
    assert files["record-link.json"] == (folder / "selection.json").read_bytes()
    assert "card.json" not in files and "id_rsa" not in "".join(files)


def test_a_broken_card_context_is_a_clean_error(fake_hub: FakeHub, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    context = json.loads((folder / "card.json").read_text())
    repo_id = fake_hub.new_repo_id("context")
    fake_hub.clear_log()
    for broken in ("{not json", json.dumps({**context, "stats": [{"column": "x"}]}), json.dumps({"schema_version": 1})):
        (folder / "card.json").write_text(broken)
        with pytest.raises(InputError, match="card.json"):
            push_folder(folder, repo_id)
    assert fake_hub.requests == []
    # written again without a card: the stale context goes, and the folder's own README.md is pushed
    sel = select.top_k(_pool(), "n_tokens", 10)
    save_selection(sel.dataset, folder, sel.record, card=False)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# By hand\n")
    assert not (folder / "card.json").exists()
    push_folder(folder, repo_id)
    assert DatasetCard(fake_hub.files(repo_id)["README.md"].decode()).text.strip() == "# By hand"


# ---------------------------------------------------------------------------------------------- push options
def test_push_options_columns_scores_license_config_split(fake_hub: FakeHub, tmp_path: Path) -> None:
    folder = _folder(tmp_path)  # with scores/
    repo_id = fake_hub.new_repo_id("options")
    push_folder(
        folder, repo_id, drop_columns=["n_tokens"], keep_scores=False, license="apache-2.0",
        config_name="longest", split="validation",
    )  # fmt: skip
    files = fake_hub.files(repo_id)
    assert sorted(p for p in files if p.endswith(".parquet")) == ["data/validation-00000-of-00001.parquet"]
    assert "card.json" not in files
    card = DatasetCard(files["README.md"].decode())
    assert card.data.license == "apache-2.0"
    assert card.data.configs == [
        {"config_name": "longest", "data_files": [{"split": "validation", "path": "data/validation-*"}]}
    ]
    assert f"load_dataset({repo_id!r}, 'longest', split='validation')" in card.text and "'scores'" not in card.text
    sample = card.text[card.text.index("````json") if "````json" in card.text else card.text.index("```json") :]
    assert '"n_tokens"' not in sample.split("</details>")[0]  # the sample row has no dropped column either
    cache = tmp_path / "cache-options"
    loaded = load_dataset(repo_id, "longest", split="validation", cache_dir=str(cache))
    subset = pq.read_table(folder / "data" / "train-00000-of-00001.parquet").drop_columns(["n_tokens"])
    assert loaded.to_list() == subset.to_pylist() and "n_tokens" not in loaded.column_names

    with pytest.raises(InputError, match="no such column"):
        push_folder(folder, repo_id, drop_columns=["nope"])
    with pytest.raises(InputError, match="license"):
        push_folder(folder, repo_id, license="not a license")
    with pytest.raises(InputError, match="config name"):
        push_folder(folder, repo_id, config_name="bad name")
    with pytest.raises(InputError, match="scores"):
        push_folder(folder, repo_id, config_name="scores")
    with pytest.raises(InputError, match="timeout"):
        push_folder(folder, repo_id, timeout=0)


def test_cli_push_options_in_the_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path)
    argv = ["push", str(folder), "--repo-id", "me/longest", "--dry-run", "--drop-columns", "n_tokens",
            "--no-keep-scores", "--license", "mit", "--config-name", "longest", "--split", "test"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "license: mit" in out and "config_name: longest" in out and "path: data/test-*" in out
    assert "data/test-00000-of-00001.parquet" in out and "scores/" not in out and "card.json" not in out
    pool = Dataset.from_dict({"id": ["row-a", "row-b"], "n_tokens": [1.0, 2.0]})
    sel = select.top_k(pool, "n_tokens", 1)
    with_ids = save_selection(sel.dataset, tmp_path / "ids", sel.record)
    assert "(id row-b)" in (with_ids / "README.md").read_text()
    readme, _ = plan_folder(with_ids, "me/longest", drop_columns=["id"])
    assert "(id row-b)" not in readme and '"row-b"' not in readme  # a dropped id leaves the sample's title too
    assert "load_dataset('me/longest', 'longest', split='test')" in out


def test_push_renders_the_card_from_its_context(fake_hub: FakeHub, tmp_path: Path) -> None:
    """The folder's card has the placeholder; the pushed one is the card built for the repo, rendered again
    from `card.json` (not the README edited)."""
    from hf_select.card import build_card

    pool = _pool()
    sel = select.top_k(pool, "n_tokens", 10)
    folder = save_selection(sel.dataset, tmp_path / "ctx", sel.record, pool=pool)
    assert "<namespace>/<dataset-name>" in (folder / "README.md").read_text()
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# edited by hand\n")  # ignored: the context wins
    repo_id = fake_hub.new_repo_id("ctx")
    push_folder(folder, repo_id)
    pushed = DatasetCard(fake_hub.files(repo_id)["README.md"].decode())
    expected = build_card(sel.dataset, sel.record, pool=pool, repo_id=repo_id, assets_dir=tmp_path / "again" / "assets")
    assert pushed.text.strip() == expected.text.strip() and pushed.data.to_dict() == expected.data.to_dict()


# ---------------------------------------------------------------------------------------------- real Hub
_HUB_SKIP = (
    "real-Hub test: set HF_SELECT_HUB_TESTS=1 and a write token (HF_TOKEN or `hf auth login`); "
    "optionally HF_SELECT_HUB_NAMESPACE (default: the token's user)"
)


@pytest.mark.hub
@pytest.mark.skipif(os.environ.get("HF_SELECT_HUB_TESTS") != "1", reason=_HUB_SKIP)
def test_real_hub_round_trip(tmp_path: Path) -> None:
    from huggingface_hub import constants, get_token

    if get_token() is None or "127.0.0.1" in constants.ENDPOINT:
        pytest.skip(_HUB_SKIP + " (no token, or the fake hub is the endpoint)")
    api = HfApi()
    namespace = os.environ.get("HF_SELECT_HUB_NAMESPACE") or api.whoami()["name"]
    repo_id = f"{namespace}/hf-select-test-{time.time_ns()}"
    pool = _pool()
    sel = select.top_k(pool, "n_tokens", 10)
    try:
        push_selection(sel.dataset, repo_id, sel.record, scores=pool, private=True)
        assert _load(repo_id, tmp_path).to_list() == sel.dataset.to_list()
        assert _load(repo_id, tmp_path, "scores").to_list() == pool.to_list()
        smaller = select.top_k(pool, "n_tokens", 5)
        again = push_selection(smaller.dataset, repo_id, smaller.record, private=True)
        assert again.oid == api.repo_info(repo_id, repo_type="dataset").sha
    finally:
        api.delete_repo(repo_id, repo_type="dataset", missing_ok=True)
