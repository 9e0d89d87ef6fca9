"""What a push uploads from a selection folder, prepared and checked locally before any request.

`prepare_upload` lists the folder (hidden files and `card.json` left out; a link that leaves the folder
is refused), applies the push's options (dropped columns are removed from the parquet files, which are
rewritten in a temporary folder; the split name renames the shards; `keep_scores=False` leaves `scores/`
out), and renders the card for the repo (`push_card.read_ours`), parsing its YAML.

Example:
    >>> from hf_select.push_files import folder_files
    >>> folder_files("out/longest-1000")  # doctest: +SKIP
    ['README.md', 'assets/hist-n_tokens.png', 'data/train-00000-of-00001.parquet', 'selection.json']
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from huggingface_hub import get_token

from .card.context import CONTEXT_FILE
from .errors import HFSelectError, InputError
from .push_card import CardOptions, merge_readme, read_ours, split_card
from .record import SelectionRecord

_SHARD = re.compile(r"^(?P<split>.+?)(?P<rest>-\d{5}-of-\d{5}\.parquet)$")
_TABLE_FOLDERS = ("data", "scores")


@dataclass
class Upload:
    """The files of one push: repo path -> local file or bytes, and our card."""

    src: Path
    contents: dict[str, Path | bytes]
    ours_readme: str | None
    fresh_readme: str
    """The README.md for a repo that does not exist yet (ours, with configs derived from the layout)."""
    default_message: str


def prepare_upload(
    src: Path,
    tmp: Path,
    repo_id: str | None,
    *,
    drop_columns: Sequence[str] = (),
    keep_scores: bool = True,
    license: str | None = None,
    config_name: str = "default",
    split: str = "train",
) -> Upload:
    """The upload of the folder `src` with the push's options; rewritten files go under `tmp`."""
    files = folder_files(src)
    if not keep_scores:
        files = [f for f in files if not f.startswith("scores/")]
    drop = list(dict.fromkeys(drop_columns))
    contents: dict[str, Path | bytes] = {}
    for path in files:
        folder, _, name = path.partition("/")
        local = src / path
        if folder in _TABLE_FOLDERS and name.endswith(".parquet") and "/" not in name:
            if drop:
                local = _without_columns(local, tmp / path, drop, required=folder == "data")
            match = _SHARD.match(name)
            if match and match["split"] == "train":
                path = f"{folder}/{split}{match['rest']}"
        contents[path] = local
    options = CardOptions(
        repo_id=repo_id, with_scores=any(p.startswith("scores/") for p in contents), drop_columns=drop,
        license=license, config_name=config_name, split=split,
    )  # fmt: skip
    ours = read_ours(src, options)
    split_card(ours)  # invalid YAML is an InputError now, before any request
    fresh = merge_readme(ours, None, list(contents), repo_id)[0]
    return Upload(src, contents, ours, fresh, _default_message(src))


def folder_files(src: Path | str) -> list[str]:
    """Repo paths of the files to upload: hidden files and folders and `card.json` left out; links are
    followed only when they stay inside the folder (InputError otherwise)."""
    src = Path(src)
    if not src.is_dir():
        raise InputError(f"{src} is not a folder (expected a selection folder written by `hf-select select`)")
    root = src.resolve()
    files, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
        here = Path(dirpath)
        real = here.resolve()
        if real in seen:  # a link back to a folder already listed
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in [*dirnames, *(f for f in filenames if not f.startswith("."))]:
            path = here / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise InputError(
                    f"{path} is a link to {os.readlink(path)}, outside {src}: refusing to upload it "
                    "(copy the file into the folder if it belongs to the selection)"
                )
        for name in filenames:
            path = here / name
            rel = path.relative_to(src).as_posix()
            if name.startswith(".") or rel == CONTEXT_FILE or not path.is_file():
                continue
            files.append(rel)
    files.sort()
    if not any(f.startswith("data/") and f.endswith(".parquet") for f in files):
        raise InputError(f"{src} has no data/*.parquet: not a selection folder")
    return files


def _without_columns(path: Path, out: Path, drop: list[str], *, required: bool) -> Path:
    """The parquet file `path` without the columns `drop`, written to `out` (with its `datasets` features
    updated); `required`: every column to drop must be there (the subset's shards)."""
    table = pq.read_table(path)
    missing = [c for c in drop if c not in table.column_names]
    if required and missing:
        raise InputError(f"cannot drop {missing}: the subset has no such column (it has {table.column_names})")
    present = [c for c in drop if c in table.column_names]
    if not present:
        return path
    table = table.drop_columns(present)
    metadata = dict(table.schema.metadata or {})
    if b"huggingface" in metadata:  # datasets' features: they must list the same columns as the file
        info = json.loads(metadata[b"huggingface"])
        features = (info.get("info") or {}).get("features")
        if isinstance(features, dict):
            info["info"]["features"] = {k: v for k, v in features.items() if k not in present}
        metadata[b"huggingface"] = json.dumps(info).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(metadata), out)
    return out


def _default_message(src: Path) -> str:
    if (src / "selection.json").is_file():
        try:
            from .push import message_for

            return message_for(SelectionRecord.load(src))
        except (HFSelectError, AttributeError, KeyError, TypeError, ValueError):
            pass
    return f"hf-select: upload {src.name}"


def secrets_of(token: str | None) -> list[str]:
    """The tokens that must never be uploaded or shown: the given one and the one huggingface_hub would use."""
    found = [token] if token else []
    try:
        resolved = get_token()
    except Exception:  # a broken token cache must not break the push: the Hub will answer 401
        resolved = None
    if resolved and resolved not in found:
        found.append(resolved)
    return [s for s in found if len(s) >= 4]


def contains(content: Path | bytes, secret: str) -> bool:
    """Whether `secret` occurs in the bytes or the file (read in chunks)."""
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
