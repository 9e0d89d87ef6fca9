"""`CardContext`: everything the card template needs, computed once from the selection, kept as JSON.

A selection folder keeps its context next to its card (`card.json`, not uploaded by `hf_select.push`),
so that the card can be rendered again without the pool, e.g. by a push that names the repo.

Example:
    >>> from datasets import Dataset
    >>> from hf_select import select
    >>> from hf_select.card.context import CardContext, build_context
    >>> pool = Dataset.from_dict({"n_tokens": [120.0, 40.0, 300.0, 80.0]})
    >>> sel = select.top_k(pool, "n_tokens", 2, source={"dataset": "pool.jsonl"})
    >>> context = build_context(sel.dataset, sel.record, pool=pool)
    >>> CardContext.from_json(context.to_json()) == context
    True
    >>> context.stats[0]["subset"][:3]
    [2, 0, 210.0]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from datasets import Dataset
from huggingface_hub.repocard_data import CardData

from ..errors import BudgetError, InputError
from ..record import SelectionRecord
from ..reproduce import is_clustering, python_snippet, selector_name
from ..select import Budget, Selection
from ..select import random as random_selection
from ..select.selection import TOKEN_COLUMN
from . import stats
from .metadata import base_metadata, data_files, hub_dataset_id, score_column

CONTEXT_SCHEMA = 1
CONTEXT_FILE = "card.json"
"""Where a selection folder keeps its card's context (next to README.md; `push` does not upload it)."""
SAMPLE_MAX_CHARS = 2_000
"""Each string of the sample row is cut to this many characters."""
SAMPLE_MAX_ITEMS = 20
"""Each list of the sample row (e.g. conversation turns) is cut to this many items."""
_METHOD_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Parameters that name a column of the pool: the columns a selection used (with its token column).
_COLUMN_PARAMETERS = (
    "column", "score_column", "cluster_column", "distance_column", "embedding_column", "ppl_column", "token_column",
)  # fmt: skip


@dataclass
class CardContext:
    """The card of one selection as data: numbers, names and texts, no Markdown (the template escapes).

    `repo_id`, `with_scores`, `config_name`, `split` and `license` say what a push publishes; the rest is
    computed once by `build_context`. `to_json`/`from_json` round-trip it exactly.
    """

    metadata: dict[str, Any]
    """The card's metadata except `configs` (`metadata.base_metadata`)."""
    n_rows: int
    method: dict[str, Any]
    source: dict[str, Any]
    budget: dict[str, Any]
    pool: dict[str, Any]
    kept: dict[str, Any]
    parameters: list[dict[str, Any]]
    scorers: list[dict[str, Any]]
    """The scorers and clusterings that made a column this selection used."""
    other_columns: list[dict[str, Any]]
    """Score columns of the subset this selection did not use: `{"column", "method"}` (method None: unrecorded)."""
    seed: int | None
    indices_sha256: str
    hf_select_version: str
    created_at: str
    methods: list[dict[str, Any]]
    bibtex: list[str]
    histograms: list[dict[str, Any]]
    stats: list[dict[str, Any]]
    comparison: dict[str, Any] | None
    source_mix: dict[str, Any] | None
    commands: list[str]
    """The CLI commands that made it, from the source: scoring and clustering, then the selection."""
    python: str
    sample: dict[str, Any] | None
    repo_id: str | None = None
    with_scores: bool = False
    config_name: str = "default"
    split: str = "train"
    license: str | None = None
    schema_version: int = CONTEXT_SCHEMA
    columns: list[str] = field(default_factory=list)
    """The subset's columns (a push that drops some drops them from the sample too)."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, ensure_ascii=False, default=_json_default) + "\n"

    @classmethod
    def from_json(cls, content: str) -> CardContext:
        try:
            data = json.loads(content)
        except json.JSONDecodeError as err:
            raise InputError(f"the card context is not valid JSON: {err}") from err
        if not isinstance(data, dict) or data.get("schema_version") != CONTEXT_SCHEMA:
            raise InputError(f"unsupported card context (schema_version {data.get('schema_version')!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(data) - names:
            raise InputError(f"the card context has unknown fields {sorted(set(data) - names)}")
        try:
            return cls(**data)
        except TypeError as err:  # a required field missing
            raise InputError(f"the card context is incomplete: {err}") from err

    def save(self, folder: str | os.PathLike[str]) -> Path:
        path = Path(folder) / CONTEXT_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> CardContext | None:
        """The context saved in a selection folder, or None when it has none (an older or hand-made folder)."""
        path = Path(folder) / CONTEXT_FILE
        return cls.from_json(path.read_text(encoding="utf-8")) if path.is_file() else None

    def without_columns(self, columns: Sequence[str]) -> CardContext:
        """The context of the same subset with `columns` dropped (from its sample row and column list)."""
        drop = set(columns)
        sample = self.sample
        if sample is not None and isinstance(sample.get("row"), dict):
            row = {k: v for k, v in sample["row"].items() if k not in drop}
            sample = {"id": None if "id" in drop else sample.get("id"), "row": row}
        return dataclasses.replace(self, sample=sample, columns=[c for c in self.columns if c not in drop])


def build_context(
    subset: Dataset,
    record: SelectionRecord,
    *,
    pool: Dataset | None = None,
    source_card_data: CardData | Mapping[str, Any] | None = None,
    assets_dir: str | os.PathLike[str] | None = None,
    random_baseline: Dataset | Selection | None = None,
    repo_id: str | None = None,
    with_scores: bool = False,
    token_column: str | None = None,
) -> CardContext:
    """Compute a selection's card context (see `hf_select.card.build_card` for the arguments); writes the
    histograms under `assets_dir`."""
    if token_column is None:
        recorded = (record.parameters or {}).get("token_column")
        token_column = recorded if isinstance(recorded, str) else TOKEN_COLUMN
    source = record.source or {}
    column = score_column(record)
    hub_id = hub_dataset_id(source, on_hub=source_card_data is not None)
    baseline, baseline_seed = _baseline(subset, record, pool, random_baseline, column, token_column)
    col_values = stats.column_values_of([c for c in dict.fromkeys([column, token_column]) if c], subset, pool)
    scorers = [e for e in record.scorers if isinstance(e, Mapping)]
    used = _used_columns(record, token_column, scorers)
    methods, bibtex = _methods(record, [e for e in scorers if _is_used(e, used)])
    comparison = None
    if baseline is not None:
        comparison = {**stats.comparison(subset, baseline, column, token_column), "baseline_seed": baseline_seed}
    requested = (record.budget or {}).get("requested")
    params = record.parameters or {}
    return CardContext(
        metadata=base_metadata(record, len(subset), source_card_data=source_card_data),
        n_rows=len(subset),
        method={
            "name": selector_name(record),
            "column": column,
            "largest": bool(params.get("largest", True)),
            "min_value": params.get("min_value"),
            "max_value": params.get("max_value"),
            "cluster_column": params.get("cluster_column", "cluster"),
            "n_clusters": params.get("n_clusters") if isinstance(params.get("n_clusters"), int) else None,
        },  # fmt: skip
        source=_source(source, hub_id),
        budget={
            "requested": Budget(requested["kind"], requested["value"]).describe() if requested else None,
            "achieved": dict((record.budget or {}).get("achieved") or {}),
        },
        pool=dict(record.pool or {}),
        kept=dict(record.kept or {}),
        parameters=_parameters(params),
        scorers=[_scorer(e) for e in scorers if _is_used(e, used)],
        other_columns=_other_columns(subset, scorers, used),
        seed=record.seed,
        indices_sha256=record.indices_sha256,
        hf_select_version=record.hf_select_version,
        created_at=str(record.created_at),
        methods=methods,
        bibtex=bibtex,
        histograms=stats.histograms(col_values, Path(assets_dir) if assets_dir is not None else None),
        stats=stats.stats_tables(col_values),
        comparison=comparison,
        source_mix=stats.source_mix(subset, baseline, pool) if baseline is not None else None,
        commands=command_chain(record),
        python=python_snippet(record),
        sample=_sample(subset),
        repo_id=repo_id,
        with_scores=with_scores,
        columns=list(subset.column_names),
    )


def command_chain(record: SelectionRecord) -> list[str]:
    """The CLI commands from the source to this selection: each scorer's and clustering's (`hf-select score`,
    `hf-select cluster`) in order, then the selection's own; [] when it was not made by the CLI."""
    if not record.command:
        return []
    steps = [e.get("command") for e in record.scorers if isinstance(e, Mapping)]
    return list(dict.fromkeys([s for s in steps if isinstance(s, str) and s] + [record.command]))


def _baseline(
    subset: Dataset,
    record: SelectionRecord,
    pool: Dataset | None,
    given: Dataset | Selection | None,
    column: str | None,
    token_column: str,
) -> tuple[Dataset | None, int | None]:
    """The random subset to compare with, and its seed when known."""
    if isinstance(given, Selection):
        return given.dataset, given.record.seed
    if given is not None or pool is None:
        return given, None
    seed = (record.seed or 0) + (1 if record.method == "random" else 0)
    try:
        drawn = random_selection(
            pool, len(subset), seed=seed, column=column if column in pool.column_names else None,
            token_column=token_column,
        )  # fmt: skip
    except (BudgetError, InputError):
        return None, None
    return drawn.dataset, seed


def _source(source: Mapping[str, Any], hub_id: str | None) -> dict[str, Any]:
    details = [[key, str(source[key])] for key in ("config", "split", "revision") if source.get(key)]
    return {
        "name": str(source["dataset"]) if source.get("dataset") else None,
        "hub_id": hub_id,
        "files": data_files(source),
        "details": details,
        "limit": source.get("limit") if isinstance(source.get("limit"), int) else None,
        "origin": str(source["origin"]) if source.get("origin") else None,
    }


def _parameters(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, Mapping | list | tuple) and len(value) > 8:
            out.append({"key": str(key), "entries": len(value)})
        else:
            shown = json.dumps(value, default=str, ensure_ascii=False) if not isinstance(value, str) else value
            out.append({"key": str(key), "value": shown})
    return out


def _scorer(entry: Mapping[str, Any]) -> dict[str, Any]:
    clustering = None
    if is_clustering(entry):
        config = entry["config"]
        clustering = {k: config.get(k) for k in ("n_clusters", "column", "seed", "spherical")}
    resources = []
    for kind in ("model", "tokenizer"):
        info = entry.get(kind)
        if info is None:
            continue
        if isinstance(info, Mapping):
            name, revision, sha = info.get("name_or_path"), info.get("revision"), info.get("sha256")
        else:
            name, revision, sha = info, None, None
        resources.append(
            {"kind": kind, "name": str(name), "revision": revision, "sha256": str(sha)[:16] if sha else None}
        )
    return {
        "method": str(entry.get("method", "?")),
        "clustering": clustering,
        "resources": resources,
        "template": str(entry["template"]) if entry.get("template") else None,
    }


def _entry_columns(entry: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The columns a scorers entry made (None: an unknown method, whose columns cannot be told)."""
    if is_clustering(entry):
        config = entry.get("config") or {}
        return (config.get("output_column", "cluster"), config.get("distance_column", "cluster_distance"))
    from ..scorers import SCORERS

    cls = SCORERS.get(str(entry.get("method")))
    return None if cls is None else (*cls.score_columns, *cls.vector_columns)


def _used_columns(record: SelectionRecord, token_column: str, scorers: Sequence[Mapping[str, Any]]) -> set[str]:
    """The columns a selection read: those its parameters name, its token column, and the embedding column
    of a clustering whose clusters it used."""
    params = record.parameters or {}
    used = {params[k] for k in _COLUMN_PARAMETERS if isinstance(params.get(k), str)} | {token_column}
    for entry in scorers:
        column = (entry.get("config") or {}).get("column")
        if is_clustering(entry) and _is_used(entry, used) and isinstance(column, str):
            used.add(column)
    return used


def _is_used(entry: Mapping[str, Any], used: set[str]) -> bool:
    columns = _entry_columns(entry)
    return columns is None or bool(set(columns) & used)


def _other_columns(subset: Dataset, scorers: Sequence[Mapping[str, Any]], used: set[str]) -> list[dict[str, Any]]:
    """Score columns in the subset that this selection did not use, with the scorer that made them when
    the record lists it: the recorded scorers' columns, and any column a known scorer or k-means makes."""
    from ..cluster import KMeans
    from ..scorers import SCORERS

    made_by: dict[str, str | None] = {}
    described: set[str] = set()  # columns of the scorers used: their own sections describe them
    for entry in scorers:
        for column in _entry_columns(entry) or ():
            if _is_used(entry, used):
                described.add(column)
            else:
                made_by.setdefault(column, str(entry.get("method")))
    known = {c for cls in SCORERS.values() for c in (*cls.score_columns, *cls.vector_columns)}
    known |= {KMeans.output_column, KMeans.distance_column}
    return [
        {"column": c, "method": made_by.get(c)}
        for c in subset.column_names
        if c not in used and c not in described and (c in made_by or c in known)
    ]


def _read_method(name: str) -> tuple[dict[str, Any], str] | None:
    from .render import cards_dir

    if not _METHOD_NAME.fullmatch(name):
        return None
    path = cards_dir() / "methods" / f"{name}.md"
    if not path.is_file():
        return None
    content = path.read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", content, re.DOTALL)
    if not match:
        return {}, content.strip()
    return yaml.safe_load(match.group(1)) or {}, content[match.end() :].strip()


def _methods(record: SelectionRecord, scorers: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The method descriptions (`cards/methods/<name>.md`) of the scorers used and the selector, and their BibTeX."""
    names = [str(s.get("method")) for s in scorers if s.get("method")]
    names.append(selector_name(record))
    sections, bibtex = [], []
    for name in dict.fromkeys(names):
        found = _read_method(name)
        if found is None:
            sections.append({"name": name, "title": None, "body": None, "paper": None})
            continue
        meta, body = found
        sections.append({"name": name, "title": meta.get("title", name), "body": body, "paper": meta.get("paper")})
        if meta.get("bibtex"):
            bibtex.append(meta["bibtex"].strip())
    return sections, bibtex


def _clip(value: Any, depth: int = 0) -> Any:
    """A JSON-able copy of a row with long strings and lists cut, each cut marked."""
    if depth > 8:
        return "…"
    if isinstance(value, str):
        if len(value) <= SAMPLE_MAX_CHARS:
            return value
        return value[:SAMPLE_MAX_CHARS] + f"… [{len(value) - SAMPLE_MAX_CHARS:,} more characters]"
    if isinstance(value, bytes | bytearray):
        return f"<{len(value):,} bytes>"
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {_clip(str(k), depth + 1): _clip(v, depth + 1) for k, v in items[: SAMPLE_MAX_ITEMS * 5]}
        if len(items) > SAMPLE_MAX_ITEMS * 5:
            out["…"] = f"{len(items) - SAMPLE_MAX_ITEMS * 5:,} more keys"
        return out
    if isinstance(value, list | tuple):
        out = [_clip(v, depth + 1) for v in value[:SAMPLE_MAX_ITEMS]]
        if len(value) > SAMPLE_MAX_ITEMS:
            out.append(f"… [{len(value) - SAMPLE_MAX_ITEMS:,} more items]")
        return out
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clip(str(value), depth + 1)


def _sample(subset: Dataset) -> dict[str, Any] | None:
    if len(subset) == 0:
        return None
    row = subset.with_format(None)[0]
    shown_id = str(row["id"])[:80] if "id" in row and isinstance(row["id"], str | int) else None
    return {"id": shown_id, "row": _clip(row)}


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)
