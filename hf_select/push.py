"""Publish a selection folder to a Hub dataset repo in one atomic commit.

`push_folder` uploads a selection folder (`data/`, `scores/`, `README.md`, `selection.json`, `assets/`;
not `card.json`, the card's context, nor hidden files) as ONE commit pinned to the head it read
(`parent_commit`): a concurrent writer makes the push fail with `PushConflictError` instead of being
overwritten, and a failed push leaves the repo as it was. Pushing into an existing repo keeps its other
configs, their files and its other card metadata. Everything that can be checked locally (the repo id,
links that leave the folder, the card's YAML, a token in any file, the columns to drop) is checked
before the first request, and the card's YAML is validated by the Hub before the repo is created; a repo
this push created is deleted again if the push then fails. Every request is bounded by `timeout`.

Example:
    >>> from hf_select.push import push_folder, push_selection
    >>> push_folder("out/longest-1000", "me/sharegpt-longest-1000")  # doctest: +SKIP
    CommitInfo(commit_url='https://huggingface.co/datasets/me/sharegpt-longest-1000/commit/...', ...)
    >>> push_selection(sel.dataset, "me/longest", sel.record, scores=scored)  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, DatasetCard, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from .card.metadata import check_config, check_repo_id
from .errors import HFSelectError, InputError
from .hub_requests import (
    BACKOFF_BASE,
    DEFAULT_TIMEOUT,
    PushError,
    PushTimeoutError,
    Steps,
    backoff,
    bounded_requests,
    describe,
    logger,
    retryable,
    scrub,
    status,
    transport_errors,
)
from .push_card import config_dirs, merge_readme, patterns
from .push_files import Upload, contains, prepare_upload, secrets_of
from .record import SelectionRecord
from .save import save_selection

REPO_TYPE = "dataset"


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
    timeout: float | None = DEFAULT_TIMEOUT,
    drop_columns: Sequence[str] = (),
    keep_scores: bool = True,
    license: str | None = None,
    config_name: str = "default",
    split: str = "train",
) -> CommitInfo:
    """Push a selection folder to the dataset repo `repo_id` in one commit.

    Reads the repo (creating it, and a branch `revision`, if needed), merges our README front matter into
    the repo's card (their other configs and metadata are kept; ours win on the same key/config), deletes
    stale files only under the folders our configs own (`data/`, `scores/`), pre-uploads the LFS files,
    then makes one `create_commit(parent_commit=head)`. Every request is bounded by `timeout` seconds
    without progress; requests are retried on HTTP 429/5xx, timeouts and connection errors (exponential
    backoff with jitter from `backoff_base`, default 1 s; `Retry-After` honoured), never on other 4xx.
    HTTP 412/409 on the commit (the head moved) raises `PushConflictError`.

    The card is rendered again from the folder's `card.json` for this repo and these options:
    `drop_columns` are removed from the uploaded parquet files (and the card's sample row), `keep_scores=
    False` leaves the scored pool (`scores/`) out, `license` replaces the card's license, `config_name` and
    `split` name the subset's config and split (default `default` and `train`).

    The token comes from `token`, else `HF_TOKEN` or the login cache, and never appears in files or errors.
    Pushing a folder identical to the repo's content makes no commit and returns the current head.
    """
    check_repo_id(repo_id)
    check_config(config_name, split)
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    if not isinstance(timeout, int | float) or not timeout > 0:
        raise InputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    secrets = secrets_of(token)
    api = HfApi(token=token)
    steps = Steps(
        repo_id, api.endpoint, timeout, max_retries, BACKOFF_BASE if backoff_base is None else backoff_base, secrets
    )
    with tempfile.TemporaryDirectory(prefix="hf-select-push-") as tmp:
        upload = prepare_upload(
            Path(folder), Path(tmp), repo_id, drop_columns=drop_columns, keep_scores=keep_scores, license=license,
            config_name=config_name, split=split,
        )  # fmt: skip
        for path, content in upload.contents.items():  # before any request: nothing is created
            if any(contains(content, s) for s in secrets):
                raise PushError(f"refusing to push {upload.src / path}: it contains your Hugging Face token")
        message = commit_message or upload.default_message
        with bounded_requests(timeout):
            try:
                return _push(api, steps, upload, private, revision, create_pr, message)
            except HfHubHTTPError as err:
                raise steps.http_error(err) from None
            except transport_errors() as err:
                raise steps.unreachable("the push", err, 1) from None


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
    timeout: float | None = DEFAULT_TIMEOUT,
    drop_columns: Sequence[str] = (),
    keep_scores: bool = True,
    license: str | None = None,
    config_name: str = "default",
    split: str = "train",
) -> CommitInfo:
    """Write the selection folder (`save_selection`) to a temporary directory and `push_folder` it."""
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="hf-select-push-") as tmp:
        folder = save_selection(subset, tmp, record, scores=scores, repo_id=repo_id)
        return push_folder(
            folder, repo_id, private=private, token=token, revision=revision, create_pr=create_pr,
            commit_message=commit_message or message_for(record), timeout=timeout, drop_columns=drop_columns,
            keep_scores=keep_scores, license=license, config_name=config_name, split=split,
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


def plan_folder(
    folder: str | os.PathLike[str], repo_id: str | None = None, **options: Any
) -> tuple[str, list[tuple[str, int]]]:
    """What a push of `folder` into a new repo would commit: the README.md text and `(path, bytes)` per file.

    No request is made (the `hf-select push --dry-run` view); the merge with an existing repo's card is
    not shown. `options` are `push_folder`'s `drop_columns`, `keep_scores`, `license`, `config_name`, `split`.
    """
    if repo_id is not None:
        check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="hf-select-plan-") as tmp:
        upload = prepare_upload(Path(folder), Path(tmp), repo_id, **options)
        readme = upload.fresh_readme
        listing = [
            (path, len(c) if isinstance(c, bytes) else c.stat().st_size)
            for path, c in {**upload.contents, "README.md": readme.encode()}.items()
        ]
    return readme, sorted(listing)


# ---------------------------------------------------------------------------------------------- the push
def _push(
    api: HfApi, steps: Steps, upload: Upload, private: bool, revision: str | None, create_pr: bool, message: str
) -> CommitInfo:
    repo_id = steps.repo_id
    try:  # the Hub's own check of the card's metadata, before anything is created
        steps.call("validating the card", DatasetCard(upload.fresh_readme).validate, repo_type=REPO_TYPE)
    except ValueError as err:
        raise PushError(scrub(f"push to {repo_id} refused: the Hub rejects README.md: {err}", steps.secrets)) from None
    except HfHubHTTPError as err:  # no validation service there: the commit validates the card again
        logger.warning("could not validate README.md before the push: %s", scrub(describe(err), steps.secrets))
    try:
        info = steps.call("reading the repo", api.repo_info, repo_id, repo_type=REPO_TYPE)
    except RepositoryNotFoundError:
        info = None
    if info is not None and private and not info.private:
        raise PushError(
            f"{repo_id} exists and is public: --private does not change an existing repo's visibility. "
            "Make it private on the Hub first, or push without --private."
        )
    if info is None:
        steps.call("creating the repo", api.create_repo, repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
    try:
        return _commit(api, steps, upload, revision, create_pr, message)
    except BaseException as err:
        if info is None and _delete_if_untouched(api, steps):
            error = steps.http_error(err) if isinstance(err, HfHubHTTPError) else err
            if isinstance(error, HFSelectError):
                error.args = (f"{error} (the repo this push had created was deleted again)",)
                raise error from None
        raise


def _commit(
    api: HfApi, steps: Steps, upload: Upload, revision: str | None, create_pr: bool, message: str
) -> CommitInfo:
    repo_id = steps.repo_id
    if revision and not revision.startswith("refs/pr/") and revision != "main":
        steps.call(
            "creating the branch", api.create_branch, repo_id, branch=revision, repo_type=REPO_TYPE, exist_ok=True
        )
    head: str = steps.call("reading the repo", api.repo_info, repo_id, repo_type=REPO_TYPE, revision=revision).sha
    remote_files = set(steps.call("listing the repo", api.list_repo_files, repo_id, repo_type=REPO_TYPE, revision=head))
    theirs = None
    if "README.md" in remote_files:  # pinned to `head`, the commit we build on (DatasetCard.load has no revision)
        path = steps.call(
            "reading the repo's card", api.hf_hub_download, repo_id, "README.md", repo_type=REPO_TYPE, revision=head
        )
        theirs = DatasetCard.load(path)
    readme, ours_configs, their_configs = merge_readme(upload.ours_readme, theirs, list(upload.contents), repo_id)
    contents = {**upload.contents, "README.md": readme.encode("utf-8")}
    if any(contains(contents["README.md"], s) for s in steps.secrets):  # their card, merged in
        raise PushError(f"refusing to push README.md of {repo_id}: it contains your Hugging Face token")

    owned = {d for c in ours_configs for d in config_dirs(c)}  # stale shards go only there...
    kept_patterns = [p for c in their_configs for p in patterns(c)]  # ...and never a file of a kept config
    stale = sorted(
        p for p in remote_files - set(contents)
        if any(p.startswith(d) for d in owned) and not any(fnmatch.fnmatchcase(p, pat) for pat in kept_patterns)
    )  # fmt: skip
    additions = [
        CommitOperationAdd(path, c if isinstance(c, bytes) else str(c)) for path, c in sorted(contents.items())
    ]
    operations: list[Any] = [*additions, *(CommitOperationDelete(p) for p in stale)]
    _preupload(api, steps, additions, revision, create_pr)

    description = f"Pushed with hf-select: {len(additions)} files, {len(stale)} stale files deleted."
    ambiguous = False  # a previous attempt may have landed (5xx, timeout or dropped connection after sending)
    for attempt in range(steps.max_retries + 1):
        try:
            return api.create_commit(
                repo_id, operations, commit_message=message, commit_description=description, repo_type=REPO_TYPE,
                revision=revision, create_pr=create_pr, parent_commit=head,
            )  # fmt: skip
        except HfHubHTTPError as err:
            code = status(err)
            if code in (409, 412):
                if ambiguous and (landed := _landed(api, repo_id, revision, head, contents, stale)) is not None:
                    return landed
                raise _conflict(api, steps, revision, head, code) from None
            if not retryable(code):
                raise
            if attempt == steps.max_retries:
                raise PushError(
                    scrub(f"push to {repo_id} failed after {attempt + 1} attempts: {describe(err)}", steps.secrets)
                    + f". {repo_id} is unchanged; try again later.",
                    code,
                ) from None
            delay = steps.delay(err, attempt)
            ambiguous = ambiguous or code != 429
            logger.warning(
                "commit to %s failed (HTTP %s), retrying in %.1f s (attempt %d of %d)",
                repo_id, code, delay, attempt + 2, steps.max_retries + 1,
            )  # fmt: skip
        except ValueError as err:  # huggingface_hub's client-side checks, e.g. README.md metadata the Hub rejects
            raise PushError(scrub(f"push to {repo_id} refused: {err}", steps.secrets)) from None
        except transport_errors() as err:
            if attempt == steps.max_retries:
                raise steps.unreachable("the commit", err, attempt + 1) from None
            delay = backoff(attempt, steps.base)
            ambiguous = True
            logger.warning("commit to %s failed (%s), retrying in %.1f s", repo_id, type(err).__name__, delay)
        time.sleep(delay)
    raise AssertionError("unreachable")


def _preupload(
    api: HfApi, steps: Steps, additions: list[CommitOperationAdd], revision: str | None, create_pr: bool
) -> None:
    """Upload the LFS/Xet content; an upload that fails outside HTTP (Xet storage) is a clean PushError."""
    try:
        steps.call(
            "uploading the files", api.preupload_lfs_files, steps.repo_id, additions=additions, repo_type=REPO_TYPE,
            revision=revision, create_pr=create_pr,
        )  # fmt: skip
    except (HfHubHTTPError, PushError, *transport_errors()):
        raise
    except Exception as err:  # hf_xet raises plain ConnectionError/RuntimeError, huggingface_hub ValueError
        from importlib.util import find_spec

        from huggingface_hub import constants

        via = "Xet storage" if not constants.HF_HUB_DISABLE_XET and find_spec("hf_xet") else "LFS"
        hint = " (set HF_HUB_DISABLE_XET=1 to upload through LFS instead)" if via == "Xet storage" else ""
        raise PushError(
            scrub(f"uploading the files of {steps.repo_id} failed ({via}): {err}{hint}", steps.secrets)
        ) from None


def _delete_if_untouched(api: HfApi, steps: Steps) -> bool:
    """Delete the repo this push created, when it holds only its initial commit; True if it was deleted."""
    try:
        if len(api.list_repo_commits(steps.repo_id, repo_type=REPO_TYPE)) == 1:
            api.delete_repo(steps.repo_id, repo_type=REPO_TYPE)
            return True
    except Exception as err:  # best effort: the push's own error is what matters
        logger.warning("could not delete %s after the failed push: %s", steps.repo_id, scrub(str(err), steps.secrets))
    return False


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


def _conflict(api: HfApi, steps: Steps, revision: str | None, head: str, code: int | None) -> PushConflictError:
    repo_id, branch, now = steps.repo_id, revision or "main", ""
    try:
        commit = api.list_repo_commits(repo_id, repo_type=REPO_TYPE, revision=revision)[0]
        now = f" to {commit.commit_id[:8]} ({commit.title!r})"
    except Exception:  # best effort: the error below is what matters
        pass
    return PushConflictError(
        scrub(
            f"{repo_id}@{branch} moved from {head[:8]}{now} while this push was in flight: another writer committed "
            f"(HTTP {code}). Nothing was pushed and their commit is untouched; run the push again to publish "
            "on top of it.",
            steps.secrets,
        ),
        code,
    )


__all__ = [
    "PushConflictError",
    "PushError",
    "PushTimeoutError",
    "message_for",
    "plan_folder",
    "push_folder",
    "push_selection",
]
