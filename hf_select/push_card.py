"""The README.md a push commits: our card rendered for the repo, merged into the repo's existing card.

A selection folder written by `save_selection` keeps its card's context (`card.json`): the card is
rendered again from it with the repo id and the push's options (license, config and split names, dropped
columns, whether the scored pool goes too). A folder without one (written by hand or by an older
hf-select) is pushed with its README.md as it is, only its `load_dataset` snippet pointed at the repo.

Example:
    >>> from hf_select.push_card import derived_configs
    >>> derived_configs(["data/train-00000-of-00001.parquet", "scores/train-00000-of-00001.parquet"])[1]
    {'config_name': 'scores', 'data_files': [{'split': 'train', 'path': 'scores/train-*'}]}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml
from huggingface_hub import DatasetCard

from .card import CONTEXT_FILE, CardContext, render_card, with_repo_id
from .card.against import load_against
from .card.metadata import hub_configs, selection_configs, shard_pattern, with_license
from .errors import InputError

_SHARD = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}\.parquet$")
_GLOB_CHARS = re.compile(r"[*?\[{]")


@dataclass(frozen=True)
class CardOptions:
    """What a push changes in the card it publishes."""

    repo_id: str | None = None
    with_scores: bool = False
    drop_columns: Sequence[str] = ()
    license: str | None = None
    config_name: str = "default"
    split: str = "train"

    @property
    def renames(self) -> bool:
        return (self.config_name, self.split) != ("default", "train")


def read_ours(src: Path, options: CardOptions) -> str | None:
    """Our README.md for the push: rendered from the folder's context when it has one, else its own file."""
    try:
        context = CardContext.load(src)
    except InputError as err:
        raise InputError(f"{src / CONTEXT_FILE}: {err} (delete it to push README.md as it is)") from err
    if context is not None:
        if options.drop_columns:
            context = context.without_columns(options.drop_columns)
        try:
            card = render_card(
                context, repo_id=options.repo_id, with_scores=options.with_scores, license=options.license,
                config_name=options.config_name, split=options.split, against_random=load_against(src),
            )  # fmt: skip
        except (jinja2.TemplateError, TypeError, KeyError, AttributeError, ValueError) as err:
            if isinstance(err, InputError):  # the push's options (license, config name): the user's to fix
                raise
            raise InputError(
                f"{src / CONTEXT_FILE} does not render a card ({type(err).__name__}: {err}); "
                "delete it to push README.md as it is"
            ) from err
        return str(card)
    path = src / "README.md"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    if options.repo_id is not None:
        text = with_repo_id(text, options.repo_id)
    if options.license is None and not options.renames:
        return text
    data, body = split_card(text)  # a hand-made card: only its metadata changes
    data = with_license(data, options.license)
    if options.renames:
        owned = {"data/", "scores/"}
        kept = [c for c in data.get("configs") or [] if not set(config_dirs(c)) & owned]
        data["configs"] = kept + selection_configs(
            options.with_scores, config_name=options.config_name, split=options.split
        )
    return f"---\n{yaml.safe_dump(data, sort_keys=False, allow_unicode=True)}---\n{body}"


def split_card(text: str | None) -> tuple[dict[str, Any], str]:
    """(front matter, body) of a README.md."""
    if text is None:
        return {}, ""
    try:
        card = DatasetCard(text)
    except (ValueError, yaml.YAMLError) as err:
        raise InputError(f"README.md has invalid YAML front matter: {err}") from err
    return card.data.to_dict(), card.text


def merge_readme(
    ours_text: str | None, theirs: DatasetCard | None, files: list[str], repo_id: str | None
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """(README.md text, our configs, their configs kept) for the push.

    Our front matter goes over theirs: `configs` are merged by name (ours replace theirs), `dataset_info`
    entries of the configs we replace are dropped (their features would be stale), any other key of theirs
    is kept unless ours sets it. Parquet folders of ours that no config of our README covers get a config
    derived from the layout (`data/` is `default`, `scores/` is `scores`), so `load_dataset` finds them.
    """
    ours, body = split_card(ours_text)
    ours_configs = list(ours.get("configs") or [])
    covered = {d for c in ours_configs for d in config_dirs(c)}
    for config in derived_configs(files):
        if not set(config_dirs(config)) & covered and config["config_name"] not in names(ours_configs):
            ours_configs.append(config)
    ours_names = names(ours_configs)

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


def names(configs: Iterable[dict[str, Any]]) -> set[str]:
    return {c.get("config_name", "default") for c in configs}


def patterns(config: dict[str, Any]) -> list[str]:
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


def config_dirs(config: dict[str, Any]) -> list[str]:
    """The folders a config owns: the literal directory part of each pattern, e.g. `data/` for `data/train-*`."""
    dirs = []
    for pattern in patterns(config):
        literal = _GLOB_CHARS.split(pattern, maxsplit=1)[0]
        if "/" in literal:
            dirs.append(literal[: literal.rindex("/") + 1])
    return dirs


def derived_configs(files: list[str]) -> list[dict[str, Any]]:
    """Configs for the parquet folders of the selection: `data/` is `default`, any other folder its own name."""
    by_dir: dict[str, dict[str, str]] = {}
    for path in files:
        parts = path.split("/")
        if len(parts) != 2 or not parts[1].endswith(".parquet") or parts[0] == "assets":
            continue
        match = _SHARD.match(parts[1])
        split = match["split"] if match else "train"
        by_dir.setdefault(parts[0], {})[split] = shard_pattern(parts[0], split) if match else f"{parts[0]}/*.parquet"
    folders = sorted(by_dir, key=lambda d: (d != "data", d))
    return hub_configs({("default" if d == "data" else d): dict(sorted(by_dir[d].items())) for d in folders})
