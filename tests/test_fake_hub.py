"""The fake Hub works with the real huggingface_hub / datasets clients, over real HTTP."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

# `HF_ENDPOINT` & co. must be set before huggingface_hub/datasets are imported. tests/conftest.py normally
# does it; start_session_hub() is idempotent, so this also makes the module runnable on its own.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)
from fake_hub import FAKE_TOKEN, FakeHub, fake_hub_fixture, start_session_hub  # noqa: E402, F401

start_session_hub()

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from datasets import Dataset, load_dataset  # noqa: E402
from huggingface_hub import (  # noqa: E402
    CommitOperationAdd,
    CommitOperationDelete,
    DatasetCard,
    HfApi,
    hf_hub_download,
)
from huggingface_hub.errors import (  # noqa: E402
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

README = """---
license: mit
pretty_name: Fake selection
tags:
- instruction-tuning
---
# Selected subset
"""


def _parquet_bytes(rows: dict[str, list]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(rows), buf)
    return buf.getvalue()


def _assert_no_leak(hub: FakeHub, repo_id: str) -> None:
    """The token never lands in repo content, and is never sent to LFS upload URLs."""
    for path, data in hub.files(repo_id).items():
        assert FAKE_TOKEN.encode() not in data, path
    for request in hub.requests:
        if request.path.startswith("/__fake_lfs__/upload/"):
            assert "authorization" not in {k.lower() for k in request.headers}
    assert hub.unhandled == []


def test_session_env_points_to_fake(fake_hub: FakeHub) -> None:
    import datasets.config
    from huggingface_hub import constants

    assert constants.ENDPOINT == fake_hub.url == datasets.config.HF_ENDPOINT
    assert constants.HF_HUB_DISABLE_XET
    assert start_session_hub() is fake_hub
    assert HfApi().whoami()["name"] == "tester"


def test_start_session_hub_refuses_late_import() -> None:
    """If huggingface_hub was imported first, HF_ENDPOINT is baked in: fail loudly, never hit the real Hub."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    code = "from huggingface_hub import HfApi; import fake_hub; fake_hub.start_session_hub()"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=_TESTS_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "imported before start_session_hub()" in proc.stderr


def test_create_repo(fake_hub: FakeHub) -> None:
    api = HfApi()
    repo_id = fake_hub.new_repo_id()
    url = api.create_repo(repo_id, repo_type="dataset", private=True)
    assert url.repo_id == repo_id and url.repo_type == "dataset"
    info = api.repo_info(repo_id, repo_type="dataset")
    assert info.id == repo_id and info.private is True
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]
    assert len(fake_hub.commits(repo_id)) == 1  # initial commit, like the Hub
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(repo_id, repo_type="dataset")
    assert exc.value.response.status_code == 409
    assert api.create_repo(repo_id, repo_type="dataset", exist_ok=True).repo_id == repo_id
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info(fake_hub.new_repo_id("missing"), repo_type="dataset")


def test_push_to_hub_then_load_dataset(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id = fake_hub.new_repo_id()
    rows = {"prompt": [f"q{i}" for i in range(25)], "score": [float(25 - i) for i in range(25)]}
    Dataset.from_dict(rows).push_to_hub(repo_id)

    commits = fake_hub.commits(repo_id)
    assert [c["summary"] for c in commits] == ["initial commit", "Upload dataset"]
    assert commits[-1]["lfs_files"] == ["data/train-00000-of-00001.parquet"]
    loaded = load_dataset(repo_id, split="train", cache_dir=str(tmp_path))
    assert loaded.to_dict() == rows
    _assert_no_leak(fake_hub, repo_id)


def test_push_second_config_keeps_first(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id = fake_hub.new_repo_id()
    Dataset.from_dict({"prompt": ["a", "b", "c"]}).push_to_hub(repo_id)
    Dataset.from_dict({"idx": [0, 1, 2], "score": [0.5, 0.1, 0.9]}).push_to_hub(repo_id, config_name="scores")

    files = fake_hub.files(repo_id)
    assert {"data/train-00000-of-00001.parquet", "scores/train-00000-of-00001.parquet"} <= set(files)
    card = DatasetCard(files["README.md"].decode())
    assert sorted(c["config_name"] for c in card.data.configs) == ["default", "scores"]
    assert load_dataset(repo_id, split="train", cache_dir=str(tmp_path))["prompt"] == ["a", "b", "c"]
    scores = load_dataset(repo_id, "scores", split="train", cache_dir=str(tmp_path))
    assert scores.to_dict() == {"idx": [0, 1, 2], "score": [0.5, 0.1, 0.9]}
    _assert_no_leak(fake_hub, repo_id)


def _multi_file_commit(hub: FakeHub, api: HfApi, repo_id: str) -> str:
    api.create_repo(repo_id, repo_type="dataset")
    parent = api.repo_info(repo_id, repo_type="dataset").sha
    parquet = CommitOperationAdd("data/train-00000-of-00001.parquet", _parquet_bytes({"x": [1, 2, 3]}))
    api.preupload_lfs_files(repo_id, additions=[parquet], repo_type="dataset")
    ops = [
        parquet,
        CommitOperationAdd("README.md", README.encode()),
        CommitOperationAdd("selection.json", json.dumps({"kept": [0, 2]}).encode()),
    ]
    info = api.create_commit(
        repo_id, ops, commit_message="Publish selection", repo_type="dataset", parent_commit=parent
    )
    return info.oid


def test_preupload_then_single_commit(fake_hub: FakeHub) -> None:
    api = HfApi()
    repo_id = fake_hub.new_repo_id()
    sha = _multi_file_commit(fake_hub, api, repo_id)

    commits = fake_hub.commits(repo_id)
    assert len(commits) == 2 and commits[-1]["sha"] == sha == fake_hub.head(repo_id)
    assert commits[-1]["changed"] == ["README.md", "data/train-00000-of-00001.parquet", "selection.json"]
    assert commits[-1]["lfs_files"] == ["data/train-00000-of-00001.parquet"]
    assert fake_hub.count("/commit/", "POST") == 1 and fake_hub.count("/__fake_lfs__/upload/", "PUT") == 1
    ndjson = [json.loads(line) for line in commits[-1]["body"].splitlines()]
    assert [line["key"] for line in ndjson] == ["header", "lfsFile", "file", "file"]
    assert ndjson[0]["value"]["parentCommit"] == commits[0]["sha"]
    files = fake_hub.files(repo_id)
    assert pq.read_table(io.BytesIO(files["data/train-00000-of-00001.parquet"])).to_pydict() == {"x": [1, 2, 3]}
    assert json.loads(files["selection.json"]) == {"kept": [0, 2]}
    _assert_no_leak(fake_hub, repo_id)

    # Re-committing identical content is skipped client-side thanks to the preupload `oid`s.
    again = api.create_commit(
        repo_id, [CommitOperationAdd("selection.json", files["selection.json"])], commit_message="noop",
        repo_type="dataset",
    )  # fmt: skip
    assert again.oid == sha and len(fake_hub.commits(repo_id)) == 2


def test_dataset_card_load(fake_hub: FakeHub) -> None:
    api = HfApi()
    repo_id = fake_hub.new_repo_id()
    _multi_file_commit(fake_hub, api, repo_id)
    card = DatasetCard.load(repo_id, repo_type="dataset")
    assert card.data.license == "mit" and card.data.pretty_name == "Fake selection"
    assert card.data.tags == ["instruction-tuning"]
    assert api.dataset_info(repo_id).card_data.license == "mit"  # cardData from README front matter


def test_stale_parent_commit_is_rejected(fake_hub: FakeHub) -> None:
    api = HfApi()
    repo_id = fake_hub.new_repo_id()
    api.create_repo(repo_id, repo_type="dataset")
    stale = api.repo_info(repo_id, repo_type="dataset").sha
    fake_hub.external_commit(repo_id, {"other.txt": b"concurrent writer"})
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(
            repo_id, [CommitOperationAdd("mine.txt", b"x")], commit_message="mine", repo_type="dataset",
            parent_commit=stale,
        )  # fmt: skip
    assert type(exc.value) is HfHubHTTPError and exc.value.response.status_code == 412
    assert "A commit has happened since" in str(exc.value)
    assert [c["summary"] for c in fake_hub.commits(repo_id)] == ["initial commit", "external commit"]


def test_datasets_push_to_hub_does_not_retry_412(fake_hub: FakeHub) -> None:
    """datasets 5.2 means to retry on 412/409 but checks `err.__context__`, which is an httpx2 error."""
    repo_id = fake_hub.new_repo_id()
    fake_hub.create_repo(repo_id)
    fake_hub.fail_next("/commit/", 412, body={"error": "A commit has happened since. Please refresh and try again."})
    with pytest.raises(HfHubHTTPError) as exc:
        Dataset.from_dict({"a": [1]}).push_to_hub(repo_id)
    assert exc.value.response.status_code == 412 and fake_hub.count("/commit/") == 1


def test_commit_500_is_not_retried(fake_hub: FakeHub) -> None:
    api = HfApi()
    repo_id = fake_hub.new_repo_id()
    fake_hub.create_repo(repo_id)
    fake_hub.fail_next("/commit/", 500, times=1)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"a")], commit_message="m", repo_type="dataset")
    assert exc.value.response.status_code == 500
    assert fake_hub.count("/commit/") == 1  # the commit POST itself is never retried by huggingface_hub
    api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"a")], commit_message="m", repo_type="dataset")
    assert len(fake_hub.commits(repo_id)) == 2


def test_preupload_503_is_retried(fake_hub: FakeHub) -> None:
    """preupload / LFS batch / LFS PUT / tree use http_backoff: 408/429/5xx retried after 1s, 2s, 4s..."""
    api = HfApi()
    repo_id = fake_hub.new_repo_id()
    fake_hub.create_repo(repo_id)
    fake_hub.fail_next("/preupload/", 503, times=1)
    api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"a")], commit_message="m", repo_type="dataset")
    assert fake_hub.count("/preupload/") == 2 and len(fake_hub.commits(repo_id)) == 2


def test_hf_hub_download_and_errors(fake_hub: FakeHub) -> None:
    api = HfApi()
    repo_id = fake_hub.new_repo_id()
    _multi_file_commit(fake_hub, api, repo_id)
    files = fake_hub.files(repo_id)
    for name in ("selection.json", "data/train-00000-of-00001.parquet"):
        path = hf_hub_download(repo_id, name, repo_type="dataset")
        assert Path(path).read_bytes() == files[name]
    head = fake_hub.head(repo_id)
    assert Path(hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=head[:7])).read_text() == README
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "nope.txt", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "README.md", repo_type="dataset", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(fake_hub.new_repo_id("missing"), "README.md", repo_type="dataset")


def test_tree_pagination_pr_and_delete(fake_hub: FakeHub) -> None:
    api = HfApi()
    repo_id = fake_hub.new_repo_id()
    fake_hub.create_repo(repo_id)
    fake_hub.external_commit(repo_id, {f"d/{i}.txt": str(i).encode() for i in range(5)})
    fake_hub.tree_page_size = 2
    try:
        paths = sorted(e.path for e in api.list_repo_tree(repo_id, repo_type="dataset", recursive=True))
    finally:
        fake_hub.tree_page_size = 1000
    assert paths == [".gitattributes", "d", *(f"d/{i}.txt" for i in range(5))]
    assert fake_hub.count("/tree/") == 4

    pr = api.create_commit(
        repo_id, [CommitOperationDelete("d/")], commit_message="drop d", repo_type="dataset", create_pr=True
    )
    assert pr.pr_url is not None and "d/0.txt" in fake_hub.files(repo_id)
    assert set(fake_hub.files(repo_id, "refs/pr/1")) == {".gitattributes"}
    assert fake_hub.unhandled == []
