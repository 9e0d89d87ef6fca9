"""The card's YAML metadata: Hub-valid values only, inherited from the source dataset's card where known.

`configs` comes from `hub_configs`, the one builder of the Hub's `configs` entries: the card uses it,
and `hf_select.push` uses it for the parquet folders of a selection.

Example:
    >>> from hf_select.card.metadata import hub_configs, size_category
    >>> size_category(999), size_category(1000)
    ('n<1K', '1K<n<10K')
    >>> hub_configs({"default": {"train": "data/train-*"}, "scores": {"train": "scores/train-*"}})[1]
    {'config_name': 'scores', 'data_files': [{'split': 'train', 'path': 'scores/train-*'}]}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import yaml
from huggingface_hub.repocard_data import CardData

from ..errors import InputError
from ..record import SelectionRecord
from ..reproduce import selector_name
from .escape import metadata_text

SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
METADATA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}")
_CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SPLIT_NAME = re.compile(r"\w+(\.\w+)*")  # what `datasets` accepts as a split name
_DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".arrow", ".txt")


def size_category(n_rows: int) -> str:
    """The Hub's `size_categories` value for a row count: 999 is `n<1K`, 1000 is `1K<n<10K`."""
    for limit, name in SIZE_CATEGORIES:
        if n_rows < limit:
            return name
    return "n>1T"


def check_repo_id(repo_id: str) -> str:
    """`repo_id` if it is a Hub repo id (`namespace/name`), else InputError."""
    if not isinstance(repo_id, str) or not HUB_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id:
        raise InputError(f"invalid Hub repo id {repo_id!r}: expected 'namespace/name'")
    return repo_id


def check_config(config_name: str, split: str) -> None:
    """InputError unless `config_name` and `split` are names the Hub and `datasets` accept."""
    if not isinstance(config_name, str) or not _CONFIG_NAME.fullmatch(config_name):
        raise InputError(f"invalid config name {config_name!r}: letters, digits, '_', '-', '.'")
    if not isinstance(split, str) or not _SPLIT_NAME.fullmatch(split):
        raise InputError(f"invalid split name {split!r}: letters, digits and '_' (optionally dotted)")


def shard_pattern(folder: str, split: str) -> str:
    """The data files of one split: the shards `save.write_parquet_shards` writes, `{split}-00000-of-0000N.parquet`."""
    return f"{folder}/{split}-*"


def hub_configs(layout: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    """`configs` entries for `{config_name: {split: path pattern}}`, in the Hub's and `datasets`' form."""
    return [
        {"config_name": name, "data_files": [{"split": s, "path": p} for s, p in splits.items()]}
        for name, splits in layout.items()
    ]


def data_files(source: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The files a source was loaded from, when the record names them (`source["data_files"]`: paths, or
    `{"path", "sha256"}` dicts, possibly per split), as `[{"path", "sha256"}]`; [] when it names none."""
    value = source.get("data_files")
    if isinstance(value, Mapping) and not ("path" in value or "name" in value):
        value = [f for files in value.values() for f in (files if isinstance(files, list | tuple) else [files])]
    items = value if isinstance(value, list | tuple) else [value] if value else []
    out = []
    for item in items:
        if isinstance(item, Mapping):
            path = item.get("path") or item.get("name")
            if path:
                out.append({"path": str(path), "sha256": item.get("sha256")})
        elif isinstance(item, str | bytes) or hasattr(item, "__fspath__"):
            out.append({"path": str(item), "sha256": None})
    return out


def _file_name(path: str) -> str:
    return re.split(r"[/\\]", path.rstrip("/\\"))[-1] or path


def source_short_name(source: Mapping[str, Any]) -> str:
    """A few words for the title: the file a pool was read from, else the last part of its name."""
    files = data_files(source)
    if files:
        first = _file_name(files[0]["path"])
        return first if len(files) == 1 else f"{first} and {len(files) - 1} more files"
    name = str(source.get("dataset") or "pool")
    name = name.removeprefix("embedded:").rstrip("/\\")
    return re.split(r"[/\\]", name)[-1] or "pool"


def _hub_candidate(source: Mapping[str, Any]) -> str | None:
    """The source's name when it has the shape of a Hub dataset id and was not read from local files."""
    name = source.get("dataset")
    if not isinstance(name, str) or not HUB_ID.fullmatch(name) or ".." in name:
        return None
    if "sha256" in source or data_files(source) or name.lower().endswith(_DATA_SUFFIXES):
        return None
    return name


def hub_dataset_id(source: Mapping[str, Any], *, on_hub: bool = False) -> str | None:
    """The Hub id of a record's source, or None for local files, folders and embedded pools.

    A source counts as a Hub dataset when its name is `namespace/name`, it was not read from local
    files (no `sha256`, no `data_files`), and a revision was resolved for it (or `on_hub`: its Hub card
    was fetched).
    """
    name = _hub_candidate(source)
    return name if name and (source.get("revision") is not None or on_hub) else None


def fetch_source_card_data(
    source: Mapping[str, Any], *, token: str | bool | None = None, timeout: float = 10.0
) -> dict[str, Any] | None:
    """The card metadata of a record's source dataset on the Hub, for `build_card(source_card_data=...)`.

    None when the source is not a Hub dataset (local files, folders, embedded pools: no request is
    made) or cannot be read (offline, gated, missing); `{}` when it exists without card metadata. Never
    raises: a card without inherited metadata says `license: unknown`.
    """
    name = _hub_candidate(source)
    if name is None:
        return None
    try:
        from huggingface_hub import HfApi

        info = HfApi(token=token).dataset_info(
            name, revision=source.get("revision"), expand=["cardData"], timeout=timeout
        )
    except Exception:  # offline, 401/404, rate limits: inheriting metadata is best effort
        return None
    return info.card_data.to_dict() if info.card_data is not None else {}


def _card_data_dict(source_card_data: CardData | Mapping[str, Any] | None) -> dict[str, Any]:
    if source_card_data is None:
        return {}
    if isinstance(source_card_data, CardData):
        return source_card_data.to_dict()
    return dict(source_card_data)


def _ids(value: Any) -> list[str]:
    """Metadata ids (licenses, languages) from a string or list, keeping only well-formed ones."""
    values = value if isinstance(value, list | tuple) else [value]
    return [v for v in values if isinstance(v, str) and METADATA_ID.fullmatch(v)]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def score_column(record: SelectionRecord) -> str | None:
    """The score column a selection ranked or filtered by (None for a plain random draw)."""
    params = record.parameters or {}
    for key in ("column", "score_column"):
        if isinstance(params.get(key), str):
            return params[key]
    return None


def base_metadata(
    record: SelectionRecord, n_rows: int, *, source_card_data: CardData | Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The card's metadata without `configs` (which depend on what a push uploads)."""
    source = record.source or {}
    inherited = _card_data_dict(source_card_data)
    hub_id = hub_dataset_id(source, on_hub=source_card_data is not None)
    column = score_column(record)
    method = selector_name(record)
    what = f"{method} by {column}" if column else method
    metadata: dict[str, Any] = {
        "pretty_name": metadata_text(f"{source_short_name(source)}: {what}, {n_rows:,} rows"),
        "license": "unknown",
    }
    licenses = _ids(inherited.get("license"))
    if licenses:
        metadata["license"] = licenses[0] if len(licenses) == 1 else licenses
        if "other" in licenses:
            if inherited.get("license_name") and METADATA_ID.fullmatch(str(inherited["license_name"])):
                metadata["license_name"] = str(inherited["license_name"])
            link = metadata_text(inherited.get("license_link") or "", 500)
            if link.startswith(("https://", "http://")):
                metadata["license_link"] = link
            elif link and hub_id:  # a file of the source repo: link to it there
                metadata["license_link"] = f"https://huggingface.co/datasets/{hub_id}/blob/main/{quote(link)}"
    languages = _ids(inherited.get("language"))
    if languages:
        metadata["language"] = languages
    metadata["size_categories"] = [size_category(n_rows)]
    metadata["task_categories"] = ["text-generation"]
    tags = ["hf-select", "data-selection", _slug(method)]
    tags += [_slug(str(s.get("method", ""))) for s in record.scorers if isinstance(s, Mapping)]
    metadata["tags"] = [t for i, t in enumerate(tags) if t and t not in tags[:i]]
    if hub_id:
        metadata["source_datasets"] = [hub_id]
    return metadata


def with_license(metadata: Mapping[str, Any], license: str | None) -> dict[str, Any]:
    """`metadata` with its license replaced (a Hub license id, e.g. `apache-2.0`); None keeps it."""
    out = dict(metadata)
    if license is None:
        return out
    if not isinstance(license, str) or not METADATA_ID.fullmatch(license):
        raise InputError(f"invalid license {license!r}: expected a Hub license id such as 'apache-2.0'")
    out["license"] = license
    if license != "other":
        out.pop("license_name", None)
        out.pop("license_link", None)
    return out


def card_metadata(
    record: SelectionRecord,
    n_rows: int,
    *,
    source_card_data: CardData | Mapping[str, Any] | None = None,
    with_scores: bool = False,
    config_name: str = "default",
    split: str = "train",
) -> dict[str, Any]:
    """The YAML metadata of a selection's card (plain types, ready for `yaml.safe_dump`).

    `license` and `language` come from the source dataset's card data when given (`license: unknown`
    otherwise; `license_name`/`license_link` follow a `license: other`). `configs` has `config_name`
    (`data/{split}-*`) and, with `with_scores`, `scores` (`scores/{split}-*`, the whole scored pool).
    """
    metadata = base_metadata(record, n_rows, source_card_data=source_card_data)
    return {**metadata, "configs": selection_configs(with_scores, config_name=config_name, split=split)}


def selection_configs(with_scores: bool, *, config_name: str = "default", split: str = "train") -> list[dict]:
    """The `configs` of a selection repo: the subset under `data/`, the scored pool under `scores/`."""
    check_config(config_name, split)
    if with_scores and config_name == "scores":
        raise InputError("config name 'scores' is the scored pool's: pick another for the subset")
    layout = {config_name: {split: shard_pattern("data", split)}}
    if with_scores:
        layout["scores"] = {split: shard_pattern("scores", split)}
    return hub_configs(layout)


def plain(value: Any) -> Any:
    """Plain YAML types only (str subclasses and tuples would dump as Python tags with yaml.dump)."""
    if isinstance(value, Mapping):
        return {str.__str__(str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str.__str__(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    raise TypeError(f"metadata value {value!r:.80} is not a plain YAML type")


def front_matter(metadata: Mapping[str, Any]) -> str:
    """`---` + `yaml.safe_dump(metadata)` + `---`: only plain types, so nothing in it is executable YAML."""
    dumped = yaml.safe_dump(plain(metadata), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{dumped}---\n"
