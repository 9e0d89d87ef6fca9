"""Publish a selection folder to a Hub dataset repo in one atomic commit.

`push_folder` uploads everything in a selection folder (`data/`, `scores/`, `README.md`, `selection.json`,
`assets/`) as ONE commit pinned to the head it read (`parent_commit`): a concurrent writer makes the push
fail with `PushConflictError` instead of being overwritten, and a failed push leaves the repo as it was.
Pushing into an existing repo keeps its other configs, their files and its other card metadata.

Example:
    >>> from hf_select.push import push_folder, push_selection
    >>> push_folder("out/longest-1000", "me/sharegpt-longest-1000")  # doctest: +SKIP
    CommitInfo(commit_url='https://huggingface.co/datasets/me/sharegpt-longest-1000/commit/...', ...)
    >>> push_selection(sel.dataset, "me/longest", sel.record, scores=scored)  # doctest: +SKIP
"""

from __future__ import annotations

import email.utils
import fnmatch
import hashlib
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from datasets import Dataset
from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, DatasetCard, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError

from .errors import HFSelectError, InputError
from .record import SelectionRecord
from .save import save_selection

logger = logging.getLogger(__name__)

BACKOFF_BASE = 1.0
"""Seconds before the first commit retry; doubles each time (with jitter), up to `BACKOFF_MAX`."""
BACKOFF_MAX = 60.0
RETRY_AFTER_MAX = 300.0
"""A `Retry-After` longer than this (seconds) ends the push with an error instead of waiting."""

REPO_TYPE = "dataset"
_SHARD = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}\.parquet$")
_GLOB_CHARS = re.compile(r"[*?\[{]")


class PushError(HFSelectError):
    """The Hub refused or failed the push. The repo is unchanged (the push is a single commit)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PushConflictError(PushError):
    """The branch moved between reading its head and committing: another writer committed meanwhile."""


# ---------------------------------------------------------------------------------------------- public API
def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    max_retries: int = 5,
    backoff_base: float | None = None,
) -> CommitInfo:
    """Push every file of a selection folder to the dataset repo `repo_id` in one commit.

    Creates the repo if needed (a branch `revision` too), reads its head, merges our README front matter
    into the repo's card (their other configs and metadata are kept; ours win on the same key/config),
    deletes stale files only under the folders our configs own (`data/`, `scores/`), pre-uploads the LFS
    files, then makes one `create_commit(parent_commit=head)`. That commit is retried on HTTP 429/5xx and
    connection errors (exponential backoff with jitter from `backoff_base`, default `BACKOFF_BASE`;
    `Retry-After` honoured), never on other 4xx. HTTP 412/409 (the head moved) raises `PushConflictError`.

    The token comes from `token`, else `HF_TOKEN` or the login cache, and never appears in files or errors.
    Pushing a folder identical to the repo's content makes no commit and returns the current head.
    """
    src = Path(folder)
    files = _folder_files(src)
    base = BACKOFF_BASE if backoff_base is None else backoff_base
    secrets = _secrets(token)
    api = HfApi(token=token)
    message = commit_message or _default_message(src)
    try:
        return _push(api, src, files, repo_id, private, revision, create_pr, message, max_retries, base, secrets)
    except HfHubHTTPError as err:
        raise _http_error(err, repo_id, secrets) from None
    except _transport_errors() as err:
        raise PushError(
            _scrub(f"could not reach the Hub ({api.endpoint}) while pushing to {repo_id}: {err}", secrets)
        ) from None


def push_selection(
    subset: Dataset,
    repo_id: str,
    record: SelectionRecord,
    *,
    scores: Dataset | None = None,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
) -> CommitInfo:
    """Write the selection folder (`save_selection`) to a temporary directory and `push_folder` it."""
    with tempfile.TemporaryDirectory(prefix="hf-select-push-") as tmp:
        folder = save_selection(subset, tmp, record, scores=scores, repo_id=repo_id)
        return push_folder(
            folder, repo_id, private=private, token=token, revision=revision, create_pr=create_pr,
            commit_message=commit_message or message_for(record),
        )  # fmt: skip


def message_for(record: SelectionRecord) -> str:
    """`hf-select: top-k selection of 1,000 rows (budget 1,000 rows)`."""
    rows = record.kept.get("rows", 0)
    requested = (record.budget or {}).get("requested")
    if not requested:
        budget = "no budget"
    elif requested.get("kind") == "fraction":
        budget = f"budget {requested['value'] * 100:.4g}% of the pool"
    elif requested.get("kind") == "tokens":
        budget = f"budget {requested['value']:,} tokens"
    else:
        budget = f"budget {requested.get('value'):,} rows"
    return f"hf-select: {record.method} selection of {rows:,} rows ({budget})"


def plan_folder(folder: str | os.PathLike[str], repo_id: str | None = None) -> tuple[str, list[tuple[str, int]]]:
    """What a push of `folder` into a new repo would commit: the README.md text and `(path, bytes)` per file.

    No request is made (the `hf-select push --dry-run` view); the merge with an existing repo's card is not shown.
    """
    src = Path(folder)
    files = _folder_files(src)
    readme = _merge_readme(_read_ours(src, repo_id), None, files, repo_id)[0]
    listing = [(path, (len(readme.encode()) if path == "README.md" else (src / path).stat().st_size)) for path in files]
    if "README.md" not in files:
        listing.append(("README.md", len(readme.encode())))
    return readme, sorted(listing)


# ---------------------------------------------------------------------------------------------- the push
def _push(
    api: HfApi,
    src: Path,
    files: list[str],
    repo_id: str,
    private: bool,
    revision: str | None,
    create_pr: bool,
    message: str,
    max_retries: int,
    base: float,
    secrets: list[str],
) -> CommitInfo:
    api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
    if revision and not revision.startswith("refs/pr/") and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type=REPO_TYPE, exist_ok=True)
    info = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=revision)
    if private and not info.private:
        raise PushError(
            f"{repo_id} exists and is public: --private does not change an existing repo's visibility. "
            "Make it private on the Hub first, or push without --private."
        )
    head: str = info.sha
    remote_files = set(api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=head))
    theirs = None
    if "README.md" in remote_files:  # pinned to `head`, the commit we build on (DatasetCard.load has no revision)
        path = api.hf_hub_download(repo_id, "README.md", repo_type=REPO_TYPE, revision=head)
        theirs = DatasetCard.load(path)
    readme, ours_configs, their_configs = _merge_readme(_read_ours(src, repo_id), theirs, files, repo_id)

    contents: dict[str, Path | bytes] = {path: src / path for path in files}
    contents["README.md"] = readme.encode("utf-8")
    for path, content in contents.items():
        if any(_contains(content, s) for s in secrets):
            raise PushError(f"refusing to push {src / path}: it contains your Hugging Face token")

    owned = {d for c in ours_configs for d in _config_dirs(c)}  # stale shards go only there...
    kept_patterns = [p for c in their_configs for p in _patterns(c)]  # ...and never a file of a kept config
    stale = sorted(
        p for p in remote_files - set(contents)
        if any(p.startswith(d) for d in owned) and not any(fnmatch.fnmatchcase(p, pat) for pat in kept_patterns)
    )  # fmt: skip
    additions = [
        CommitOperationAdd(path, c if isinstance(c, bytes) else str(c)) for path, c in sorted(contents.items())
    ]
    operations: list[Any] = [*additions, *(CommitOperationDelete(p) for p in stale)]
    api.preupload_lfs_files(repo_id, additions=additions, repo_type=REPO_TYPE, revision=revision, create_pr=create_pr)

    description = f"Pushed with hf-select: {len(additions)} files, {len(stale)} stale files deleted."
    ambiguous = False  # a previous attempt may have landed (5xx or dropped connection after sending)
    for attempt in range(max_retries + 1):
        try:
            return api.create_commit(
                repo_id, operations, commit_message=message, commit_description=description, repo_type=REPO_TYPE,
                revision=revision, create_pr=create_pr, parent_commit=head,
            )  # fmt: skip
        except HfHubHTTPError as err:
            status = _status(err)
            if status in (409, 412):
                if ambiguous and (landed := _landed(api, repo_id, revision, head, contents, stale)) is not None:
                    return landed
                raise _conflict(api, repo_id, revision, head, status, secrets) from None
            if status != 429 and not (status is not None and 500 <= status < 600):
                raise
            if attempt == max_retries:
                raise PushError(
                    _scrub(f"push to {repo_id} failed after {max_retries + 1} attempts: {_describe(err)}", secrets)
                    + f". {repo_id} is unchanged; try again later.",
                    status,
                ) from None
            delay = _backoff(attempt, base)
            retry_after = _retry_after(err)
            if retry_after is not None:
                if retry_after > RETRY_AFTER_MAX:
                    raise PushError(
                        f"the Hub rate-limits commits to {repo_id} (HTTP {status}): retry after {retry_after:.0f} s. "
                        f"{repo_id} is unchanged.",
                        status,
                    ) from None
                delay = retry_after
            ambiguous = ambiguous or status != 429
            logger.warning(
                "commit to %s failed (HTTP %s), retrying in %.1f s (attempt %d of %d)",
                repo_id, status, delay, attempt + 2, max_retries + 1,
            )  # fmt: skip
        except ValueError as err:  # huggingface_hub's client-side checks, e.g. README.md metadata the Hub rejects
            raise PushError(_scrub(f"push to {repo_id} refused: {err}", secrets)) from None
        except _transport_errors() as err:
            if attempt == max_retries:
                raise
            delay = _backoff(attempt, base)
            ambiguous = True
            logger.warning(
                "commit to %s failed (%s), retrying in %.1f s", repo_id, _scrub(type(err).__name__, secrets), delay
            )
        time.sleep(delay)
    raise AssertionError("unreachable")


def _backoff(attempt: int, base: float) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random."""
    cap = min(BACKOFF_MAX, base * 2**attempt)
    return cap / 2 + random.uniform(0, cap / 2)


def _retry_after(err: HfHubHTTPError) -> float | None:
    value = err.response.headers.get("Retry-After") if err.response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _landed(
    api: HfApi,
    repo_id: str,
    revision: str | None,
    parent: str,
    contents: dict[str, Path | bytes],
    deleted: list[str],
) -> CommitInfo | None:
    """After a lost response: the commit on top of `parent` whose files equal ours, if there is one (it is ours)."""
    commits = api.list_repo_commits(repo_id, repo_type=REPO_TYPE, revision=revision)
    if len(commits) < 2 or commits[1].commit_id != parent:
        return None
    new = commits[0].commit_id
    infos = {i.path: i for i in api.get_paths_info(repo_id, [*contents, *deleted], repo_type=REPO_TYPE, revision=new)}
    if any(p in infos for p in deleted):
        return None
    for path, content in contents.items():
        remote = infos.get(path)
        if remote is None or not hasattr(remote, "blob_id"):
            return None
        data = content if isinstance(content, bytes) else content.read_bytes()
        lfs = getattr(remote, "lfs", None)
        if lfs is not None and lfs.sha256 != hashlib.sha256(data).hexdigest():
            return None
        if lfs is None and remote.blob_id != hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest():
            return None
    logger.warning("the commit to %s had landed before its response was lost: not committing again", repo_id)
    prefix = api.endpoint.rstrip("/") + "/datasets"
    return CommitInfo(
        commit_url=f"{prefix}/{repo_id}/commit/{new}",
        commit_message=commits[0].title,
        commit_description=commits[0].message or "",
        oid=new,
    )


def _conflict(
    api: HfApi, repo_id: str, revision: str | None, head: str, status: int | None, secrets: list[str]
) -> PushConflictError:
    branch = revision or "main"
    now = ""
    try:
        commit = api.list_repo_commits(repo_id, repo_type=REPO_TYPE, revision=revision)[0]
        now = f" to {commit.commit_id[:8]} ({commit.title!r})"
    except Exception:  # best effort: the error below is what matters
        pass
    return PushConflictError(
        _scrub(
            f"{repo_id}@{branch} moved from {head[:8]}{now} while this push was in flight: another writer committed "
            f"(HTTP {status}). Nothing was pushed and their commit is untouched; run the push again to publish "
            "on top of it.",
            secrets,
        ),
        status,
    )


# ---------------------------------------------------------------------------------------------- the card
def _read_ours(src: Path, repo_id: str | None = None) -> str | None:
    """Our README.md, its `load_dataset` snippet pointed at `repo_id` when given."""
    path = src / "README.md"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    if repo_id is None:
        return text
    from .card import with_repo_id

    return with_repo_id(text, repo_id)


def _split_card(text: str | None) -> tuple[dict[str, Any], str]:
    """(front matter, body) of a README.md."""
    if text is None:
        return {}, ""
    try:
        card = DatasetCard(text)
    except (ValueError, yaml.YAMLError) as err:
        raise InputError(f"README.md has invalid YAML front matter: {err}") from err
    return card.data.to_dict(), card.text


def _merge_readme(
    ours_text: str | None, theirs: DatasetCard | None, files: list[str], repo_id: str | None
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """(README.md text, our configs, their configs kept) for the push.

    Our front matter goes over theirs: `configs` are merged by name (ours replace theirs), `dataset_info`
    entries of the configs we replace are dropped (their features would be stale), any other key of theirs
    is kept unless ours sets it. Parquet folders of ours that no config of our README covers get a config
    derived from the layout (`data/` is `default`, `scores/` is `scores`), so `load_dataset` finds them.
    """
    ours, body = _split_card(ours_text)
    ours_configs = list(ours.get("configs") or [])
    covered = {d for c in ours_configs for d in _config_dirs(c)}
    for config in _derived_configs(files):
        if not set(_config_dirs(config)) & covered and config["config_name"] not in _names(ours_configs):
            ours_configs.append(config)
    ours_names = _names(ours_configs)

    data: dict[str, Any] = {}
    if theirs is not None:
        data = theirs.data.to_dict()
        if not body.strip():
            body = theirs.text
    their_configs = [c for c in data.get("configs") or [] if c.get("config_name", "default") not in ours_names]
    infos = [i for i in _as_list(data.get("dataset_info")) if i.get("config_name", "default") not in ours_names]
    infos += _as_list(ours.get("dataset_info"))

    # "unknown" is our card's placeholder when the source's license is not known: it never replaces a real one.
    placeholder = {k for k, v in ours.items() if k == "license" and v == "unknown" and data.get(k) not in (None, "")}
    merged = {**data, **{k: v for k, v in ours.items() if k not in ("configs", "dataset_info", *placeholder)}}
    merged["configs"] = [*their_configs, *ours_configs]
    merged.pop("dataset_info", None)
    if infos:
        merged["dataset_info"] = infos
    if not body.strip():
        body = _default_body(repo_id)
    front = yaml.safe_dump(merged, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n{body if body.startswith(chr(10)) else chr(10) + body}", ours_configs, their_configs


def _as_list(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value] if value else []
    return [i for i in items if isinstance(i, dict)]


def _default_body(repo_id: str | None) -> str:
    title = repo_id or "Selected subset"
    return f"\n# {title}\n\nA subset selected with hf-select. How it was selected: `selection.json`.\n"


def _names(configs: Iterable[dict[str, Any]]) -> set[str]:
    return {c.get("config_name", "default") for c in configs}


def _patterns(config: dict[str, Any]) -> list[str]:
    """Every path pattern of a `configs` entry (data_files as str, list of str/dicts, or dict)."""
    data_files = config.get("data_files")
    items: list[Any]
    if isinstance(data_files, str):
        items = [data_files]
    elif isinstance(data_files, dict):
        items = list(data_files.values())
    else:
        items = [f.get("path") if isinstance(f, dict) else f for f in data_files or []]
    out: list[str] = []
    for item in items:
        out.extend([item] if isinstance(item, str) else [p for p in item or [] if isinstance(p, str)])
    return out


def _config_dirs(config: dict[str, Any]) -> list[str]:
    """The folders a config owns: the literal directory part of each pattern, e.g. `data/` for `data/train-*`."""
    dirs = []
    for pattern in _patterns(config):
        literal = _GLOB_CHARS.split(pattern, maxsplit=1)[0]
        if "/" in literal:
            dirs.append(literal[: literal.rindex("/") + 1])
    return dirs


def _derived_configs(files: list[str]) -> list[dict[str, Any]]:
    """Configs for the parquet folders of the selection: `data/` is `default`, any other folder its own name."""
    by_dir: dict[str, dict[str, str]] = {}
    for path in files:
        parts = path.split("/")
        if len(parts) != 2 or not parts[1].endswith(".parquet") or parts[0] == "assets":
            continue
        match = _SHARD.match(parts[1])
        split = match["split"] if match else "train"
        pattern = f"{parts[0]}/{split}-*" if match else f"{parts[0]}/*.parquet"
        by_dir.setdefault(parts[0], {})[split] = pattern
    out = []
    for folder in sorted(by_dir, key=lambda d: (d != "data", d)):
        name = "default" if folder == "data" else folder
        splits = [{"split": s, "path": p} for s, p in sorted(by_dir[folder].items())]
        out.append({"config_name": name, "data_files": splits})
    return out


# ---------------------------------------------------------------------------------------------- helpers
def _folder_files(src: Path) -> list[str]:
    """Repo paths of every file in the folder (hidden files and folders skipped)."""
    if not src.is_dir():
        raise InputError(f"{src} is not a folder (expected a selection folder written by `hf-select select`)")
    files = sorted(
        p.relative_to(src).as_posix()
        for p in src.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts)
    )
    if not any(f.startswith("data/") and f.endswith(".parquet") for f in files):
        raise InputError(f"{src} has no data/*.parquet: not a selection folder")
    return files


def _default_message(src: Path) -> str:
    if (src / "selection.json").is_file():
        try:
            return message_for(SelectionRecord.load(src))
        except (HFSelectError, AttributeError, KeyError, TypeError, ValueError):
            pass
    return f"hf-select: upload {src.name}"


def _secrets(token: str | None) -> list[str]:
    found = [token] if token else []
    try:
        resolved = get_token()
    except Exception:  # a broken token cache must not break the push: the Hub will answer 401
        resolved = None
    if resolved and resolved not in found:
        found.append(resolved)
    return [s for s in found if len(s) >= 4]


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _contains(content: Path | bytes, secret: str) -> bool:
    needle = secret.encode()
    if isinstance(content, bytes):
        return needle in content
    tail = b""
    with content.open("rb") as f:
        while chunk := f.read(8 << 20):
            if needle in tail + chunk:
                return True
            tail = chunk[-(len(needle) - 1) :] if len(needle) > 1 else b""
    return False


def _status(err: HfHubHTTPError) -> int | None:
    return err.response.status_code if err.response is not None else None


def _describe(err: HfHubHTTPError) -> str:
    server = err.server_message or str(err).splitlines()[0]
    return f"HTTP {_status(err)}: {server}"


def _http_error(err: HfHubHTTPError, repo_id: str, secrets: list[str]) -> PushError:
    status = _status(err)
    hint = ""
    if status == 401:
        hint = " (no valid token: pass --token, set HF_TOKEN or run `hf auth login`)"
    elif status == 403:
        hint = " (the token cannot write to this repo: it needs a write token with access to the namespace)"
    elif status == 404:
        hint = " (check the repo id and that the token can see it)"
    return PushError(_scrub(f"push to {repo_id} failed: {_describe(err)}{hint}", secrets), status)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection errors of the HTTP library huggingface_hub uses (httpx2, httpx or requests by version)."""
    errors: list[type[BaseException]] = []
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):  # fmt: skip
        try:
            mod = __import__(module)
        except ImportError:
            continue
        errors.extend(getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type))
    # HfHubHTTPError subclasses requests' errors in old huggingface_hub: it is handled on its own first
    return tuple(e for e in errors if not issubclass(HfHubHTTPError, e))
