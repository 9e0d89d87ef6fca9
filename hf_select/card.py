"""The dataset card (README.md) of a selection: Hub metadata, what was selected and how, and how it compares.

The YAML front matter is `yaml.safe_dump` of a dict (never string-templated); the body is the Jinja
template `cards/selection.md.j2`, and every value it receives is escaped Markdown: the renderer refuses
any value that did not go through the escaping helpers, so nothing from the data (rows, column names,
source names, the command) can break the front matter, the tables, the HTML blocks or the code fences.

Example:
    >>> from hf_select import select
    >>> from hf_select.card import build_card
    >>> sel = select.top_k(scored, "n_tokens", 1000)  # doctest: +SKIP
    >>> card = build_card(sel.dataset, sel.record, pool=scored, assets_dir="out/longest-1000/assets")  # doctest: +SKIP
    >>> card.save("out/longest-1000/README.md")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from datasets import Dataset
from huggingface_hub import DatasetCard
from huggingface_hub.repocard_data import CardData

from .errors import BudgetError, HFSelectError, InputError
from .record import SelectionRecord
from .reproduce import LINE_BREAKS, is_clustering, python_snippet, selector_name
from .select import Budget, Selection
from .select import random as random_selection
from .select.selection import TOKEN_COLUMN, column_values
from .summary import describe

STUDY_BIBTEX = """@article{xia2024rethinking,
  title   = {Rethinking Data Selection at Scale: Random Selection is Almost All You Need},
  author  = {Xia, Tingyu and Yu, Bowen and Dang, Kai and Yang, An and Wu, Yuan and Tian, Yuan and Chang, Yi
             and Lin, Junyang},
  journal = {arXiv preprint arXiv:2410.09335},
  year    = {2024}
}"""
STUDY_LINK = "[Xia et al. 2024](https://arxiv.org/abs/2410.09335)"

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
SAMPLE_MAX_CHARS = 2_000
"""Each string of the sample row is cut to this many characters."""
SAMPLE_MAX_ITEMS = 20
"""Each list of the sample row (e.g. conversation turns) is cut to this many items."""
CELL_MAX_CHARS = 300
MIX_MAX_VALUES = 10
REPO_PLACEHOLDER = "<namespace>/<dataset-name>"
_PLACEHOLDER_NOTE = f"\n\nReplace `{REPO_PLACEHOLDER}` with this repository's id."
_LOAD_HEADING = "\n## Load it\n"

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_METADATA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}")
_METHOD_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_CODE_SAFE = re.compile(r"[A-Za-z0-9_.:/@+=,-]{1,120}")
_DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".arrow", ".txt")
# Control characters and those that reorder text visually (line breaks: `reproduce.LINE_BREAKS`, which
# covers what ends a line in CommonMark, Python's splitlines and YAML).
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


# --------------------------------------------------------------------------------------------------
# Escaping: every value the template receives is a `Markdown` string made by one of these helpers.


class Markdown(str):
    """Text that may go into the card as is: escaped data, or hf-select's own Markdown."""

    __slots__ = ()


def text(value: Any, max_chars: int = CELL_MAX_CHARS) -> Markdown:
    """Data as inline Markdown: one line, HTML-escaped, Markdown punctuation and `|` backslash-escaped."""
    s = _INVISIBLE.sub("", LINE_BREAKS.sub(" ", str(value)))
    if len(s) > max_chars:
        s = s[: max_chars - 1] + "…"
    return Markdown(_MD_SPECIAL.sub(r"\\\1", html.escape(s, quote=False)))


def code(value: Any) -> Markdown:
    """An identifier (column, model id, revision) as inline code when it is plainly one, else as `text`."""
    s = str(value)
    return Markdown(f"`{s}`") if _CODE_SAFE.fullmatch(s) else text(s)


def fence(content: str, info: str = "") -> Markdown:
    """A fenced code block that nothing in `content` can close: its fence is longer than any backtick run."""
    body = _INVISIBLE.sub("", content.replace("\r\n", "\n").replace("\r", "\n")).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    marks = "`" * max(3, longest + 1)
    return Markdown(f"{marks}{info}\n{body}\n{marks}")


def table(headers: Sequence[Markdown], rows: Sequence[Sequence[Markdown]], *, numeric: bool = True) -> Markdown:
    """A GFM table of escaped cells; the first column is left-aligned, the others right-aligned if numeric."""
    for cell in [*headers, *(c for row in rows for c in row)]:
        if not isinstance(cell, Markdown):
            raise TypeError(f"table cell {cell!r:.80} was not escaped")
    align = "---:" if numeric else "---"
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "".join(f"{align}|" for _ in headers[1:])]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def _metadata_text(value: Any, max_chars: int = 120) -> str:
    """A single-line, printable string for the YAML metadata."""
    chars = (" " if unicodedata.category(c)[0] in "CZ" else c for c in str(value))
    s = " ".join("".join(chars).split())
    return s if len(s) <= max_chars else s[: max_chars - 1] + "…"


def _only_markdown(value: Any) -> Any:
    if isinstance(value, Markdown):
        return value
    raise TypeError(f"card template value {value!r:.80} was not escaped (wrap it with hf_select.card helpers)")


# --------------------------------------------------------------------------------------------------
# Templates and the card class


def cards_dir() -> Path:
    """The card templates: the installed `hf_select.cards` package, else `cards/` of a source checkout."""
    try:
        return Path(str(resources.files("hf_select.cards")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "cards"


def front_matter(metadata: Mapping[str, Any]) -> str:
    """`---` + `yaml.safe_dump(metadata)` + `---`: only plain types, so nothing in it is executable YAML."""
    dumped = yaml.safe_dump(_plain(metadata), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{dumped}---\n"


def render_body(template: str, context: Mapping[str, Any]) -> str:
    """Render the Markdown body; every `{{ value }}` must be a `Markdown` string."""
    env = jinja2.Environment(
        autoescape=False,  # Markdown, not HTML: values are escaped by the helpers above, and checked
        undefined=jinja2.StrictUndefined,
        finalize=_only_markdown,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.from_string(template).render(**context)


class SelectionCard(DatasetCard):
    """A `huggingface_hub.DatasetCard` rendered from hf-select's template (`cards/selection.md.j2`).

    `from_template(card_data, **context)` writes the front matter with `yaml.safe_dump` and renders the
    body with a strict Jinja environment (see `render_body`). `build_card` fills the context.
    """

    default_template_path = str(cards_dir() / "selection.md.j2")

    @classmethod
    def from_template(  # type: ignore[override]
        cls,
        card_data: CardData | Mapping[str, Any],
        template_path: str | os.PathLike[str] | None = None,
        template_str: str | None = None,
        **template_kwargs: Any,
    ) -> SelectionCard:
        if template_path is not None or template_str is None:
            template_str = Path(template_path or cls.default_template_path).read_text(encoding="utf-8")
        metadata = card_data.to_dict() if isinstance(card_data, CardData) else dict(card_data)
        return cls(front_matter(metadata) + render_body(template_str, template_kwargs))


# --------------------------------------------------------------------------------------------------
# Metadata


def size_category(n_rows: int) -> str:
    """The Hub's `size_categories` value for a row count: 999 is `n<1K`, 1000 is `1K<n<10K`."""
    for limit, name in SIZE_CATEGORIES:
        if n_rows < limit:
            return name
    return "n>1T"


def _hub_candidate(source: Mapping[str, Any]) -> str | None:
    """The source's name when it has the shape of a Hub dataset id and was not read from local files."""
    name = source.get("dataset")
    if not isinstance(name, str) or not _HUB_ID.fullmatch(name) or ".." in name:
        return None
    if "sha256" in source or name.lower().endswith(_DATA_SUFFIXES):
        return None
    return name


def hub_dataset_id(source: Mapping[str, Any], *, on_hub: bool = False) -> str | None:
    """The Hub id of a record's source, or None for local files, folders and embedded pools.

    A source counts as a Hub dataset when its name is `namespace/name`, it was not read from local
    files (no `sha256`), and a revision was resolved for it (or `on_hub`: its Hub card was fetched).
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
    return [v for v in values if isinstance(v, str) and _METADATA_ID.fullmatch(v)]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def score_column(record: SelectionRecord) -> str | None:
    """The score column a selection ranked or filtered by (None for a plain random draw)."""
    params = record.parameters or {}
    for key in ("column", "score_column"):
        if isinstance(params.get(key), str):
            return params[key]
    return None


def _source_short_name(source: Mapping[str, Any]) -> str:
    name = str(source.get("dataset") or "pool")
    name = name.removeprefix("embedded:").rstrip("/\\")
    return re.split(r"[/\\]", name)[-1] or "pool"


def card_metadata(
    record: SelectionRecord,
    n_rows: int,
    *,
    source_card_data: CardData | Mapping[str, Any] | None = None,
    with_scores: bool = False,
) -> dict[str, Any]:
    """The YAML metadata of a selection's card (plain types, ready for `yaml.safe_dump`).

    `license` and `language` come from the source dataset's card data when given (`license: unknown`
    otherwise; `license_name`/`license_link` follow a `license: other`). `configs` has `default`
    (`data/train-*`) and, with `with_scores`, `scores` (`scores/train-*`, the whole scored pool).
    """
    source = record.source or {}
    inherited = _card_data_dict(source_card_data)
    hub_id = hub_dataset_id(source, on_hub=source_card_data is not None)
    column = score_column(record)
    method = selector_name(record)
    what = f"{method} by {column}" if column else method
    metadata: dict[str, Any] = {
        "pretty_name": _metadata_text(f"{_source_short_name(source)}: {what}, {n_rows:,} rows"),
        "license": "unknown",
    }
    licenses = _ids(inherited.get("license"))
    if licenses:
        metadata["license"] = licenses[0] if len(licenses) == 1 else licenses
        if "other" in licenses:
            if inherited.get("license_name") and _METADATA_ID.fullmatch(str(inherited["license_name"])):
                metadata["license_name"] = str(inherited["license_name"])
            link = _metadata_text(inherited.get("license_link") or "", 500)
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
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    if with_scores:
        configs.append({"config_name": "scores", "data_files": [{"split": "train", "path": "scores/train-*"}]})
    metadata["configs"] = configs
    return metadata


def _plain(value: Any) -> Any:
    """Plain YAML types only (str subclasses and tuples would dump as Python tags with yaml.dump)."""
    if isinstance(value, Mapping):
        return {str.__str__(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str.__str__(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    raise TypeError(f"metadata value {value!r:.80} is not a plain YAML type")


# --------------------------------------------------------------------------------------------------
# Numbers


def _num(value: float | int | None, decimals: int | None = None) -> Markdown:
    """A number for a table: integers with thousands separators, floats with `decimals` (default: 4 significant
    digits below 1,000, one decimal above)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return Markdown("–")
    if isinstance(value, int | np.integer):
        return Markdown(f"{int(value):,}")
    if decimals is None:
        return Markdown(f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}")
    return Markdown(f"{value:,.{decimals}f}")


def _decimals(values: np.ndarray) -> int:
    """Decimals that show a column's values to about 4 significant digits (1 for whole numbers like token counts)."""
    finite = values[np.isfinite(values)]
    if not len(finite) or np.all(finite == np.round(finite)):
        return 1
    scale = float(np.median(np.abs(finite))) or float(np.max(np.abs(finite))) or 1.0
    return int(min(6, max(1, 3 - math.floor(math.log10(scale)))))


def _pct(part: float | int, whole: float | int) -> str:
    return f"{100 * part / whole:.1f}%"


def _share(part: float | int | None, whole: float | int | None) -> str:
    return f" ({_pct(part, whole)})" if part is not None and whole else ""


def _values(ds: Dataset | None, column: str | None) -> np.ndarray | None:
    if ds is None or column is None or column not in ds.column_names:
        return None
    try:
        return column_values(ds, column)
    except InputError:  # not numeric
        return None


def _stats(values: np.ndarray) -> list[float | int | None]:
    finite = values[~np.isnan(values)]
    if not len(finite):
        return [0, int(len(values))] + [None] * 7
    q25, q50, q75 = np.quantile(finite, [0.25, 0.5, 0.75])
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return [
        int(len(finite)), int(len(values) - len(finite)), float(finite.mean()), std,
        float(finite.min()), float(q25), float(q50), float(q75), float(finite.max()),
    ]  # fmt: skip


_STAT_NAMES = ("count", "missing (NaN)", "mean", "std", "min", "25%", "50%", "75%", "max")


# --------------------------------------------------------------------------------------------------
# Sections


def _method_sentence(record: SelectionRecord, column: str | None) -> Markdown:
    params = record.parameters or {}
    requested = (record.budget or {}).get("requested")
    budget = Budget(requested["kind"], requested["value"]).describe() if requested else None
    col = code(column) if column else Markdown("the score")
    direction = "largest" if params.get("largest", True) else "smallest"
    method = selector_name(record)
    if method == "top-k":
        return Markdown(f"**top-k**: the rows with the {direction} {col}, within a budget of {text(budget)}")
    if method == "threshold":
        lo, hi = params.get("min_value"), params.get("max_value")
        bounds = " ≤ ".join(
            p for p in (text(lo) if lo is not None else "", col, text(hi) if hi is not None else "") if p
        )
        return Markdown(f"**threshold**: every row with {bounds}")
    if method == "random":
        return Markdown(f"**random**: a uniform random draw (seed {text(record.seed)}) of {text(budget)}")
    clusters = code(params.get("cluster_column", "cluster"))
    n = params.get("n_clusters")
    count = f" ({text(n)} clusters)" if isinstance(n, int) else ""
    if method == "centroid":
        return Markdown(
            f"**nearest to the centroids**: the rows with the smallest {col} (distance to their centroid) "
            f"within each cluster of {clusters}{count}, quotas proportional to cluster sizes, "
            f"within a budget of {text(budget)}"
        )
    if method == "within-clusters":
        return Markdown(
            f"**score within clusters**: the rows with the {direction} {col} within each cluster of {clusters}{count}, "
            f"quotas proportional to cluster sizes, within a budget of {text(budget)}"
        )
    return Markdown(f"**{text(method)}**" + (f", within a budget of {text(budget)}" if budget else ""))


def _method_short(record: SelectionRecord, column: str | None) -> Markdown:
    """A few words for the introduction: `top-k on `n_tokens``, `random draw (seed 0)`."""
    names = {"top-k": "top-k", "threshold": "a threshold", "within-clusters": "score within clusters"}
    method = selector_name(record)
    if method == "random":
        return Markdown(f"a random draw (seed {text(record.seed)})")
    if method == "centroid":
        return Markdown("the rows nearest each cluster's centroid" + (f" (by {code(column)})" if column else ""))
    name = text(names.get(method, method))
    return Markdown(f"{name} on {code(column)}" if column else name)


def _parameters(params: Mapping[str, Any]) -> Markdown:
    parts = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, Mapping | list | tuple) and len(value) > 8:
            shown = f"{len(value):,} entries (see selection.json)"
        else:
            shown = json.dumps(value, default=str, ensure_ascii=False) if not isinstance(value, str) else value
        parts.append(f"{code(key)}: {text(shown, 160)}")
    return Markdown(", ".join(parts) or "–")


def _scorer_lines(scorers: Sequence[Any]) -> list[tuple[Markdown, Markdown]]:
    rows = []
    for entry in scorers:
        if not isinstance(entry, Mapping):
            continue
        parts = [code(entry.get("method", "?"))]
        if is_clustering(entry):
            config = entry["config"]
            detail = f"{text(config['n_clusters'])} clusters of {code(config.get('column'))}"
            detail += f", seed {text(config.get('seed'))}"
            parts.append(detail + (", spherical" if config.get("spherical") else ""))
        for kind in ("model", "tokenizer"):
            info = entry.get(kind)
            if info is None:
                continue
            if isinstance(info, Mapping):
                name, revision, sha = info.get("name_or_path"), info.get("revision"), info.get("sha256")
            else:
                name, revision, sha = info, None, None
            detail = f"{kind} {code(name)}, revision {code(revision) if revision else 'not pinned'}"
            if sha:
                detail += f", files sha256 {code(str(sha)[:16])}…"
            parts.append(detail)
        rows.append(
            (
                Markdown("Clustering" if is_clustering(entry) else "Scorer"),
                Markdown(" with ".join(parts[:1]) + (": " + "; ".join(parts[1:]) if parts[1:] else "")),
            )
        )
        if entry.get("template"):
            rows.append((Markdown("Template"), code(entry["template"])))
    return rows


def _source_cell(source: Mapping[str, Any], hub_id: str | None) -> Markdown:
    name = source.get("dataset")
    shown = f"[{hub_id}](https://huggingface.co/datasets/{hub_id})" if hub_id else (code(name) if name else "unknown")
    details = []
    for key in ("config", "split", "revision"):
        if source.get(key):
            details.append(f"{key} {code(source[key])}")
    if isinstance(source.get("limit"), int):
        details.append(f"first {source['limit']:,} rows only")
    cell = shown + (f" ({', '.join(details)})" if details else "")
    if source.get("origin"):
        cell += f"; origin: {text(source['origin'])}"
    return Markdown(cell)


def _summary(record: SelectionRecord, column: str | None, hub_id: str | None) -> Markdown:
    requested = (record.budget or {}).get("requested")
    achieved = (record.budget or {}).get("achieved") or {}
    kept, pool = record.kept or {}, record.pool or {}
    if requested:
        budget = text(Budget(requested["kind"], requested["value"]).describe())
    else:
        budget = Markdown("none: every row within the range is kept")
    achieved_cell = f"{_num(achieved.get('rows'))} rows"
    if achieved.get("tokens") is not None:
        achieved_cell += f", {_num(achieved.get('tokens'))} tokens"
    kept_cell = f"{_num(kept.get('rows'))} of {_num(pool.get('rows'))} rows{_share(kept.get('rows'), pool.get('rows'))}"
    if kept.get("tokens") is not None and pool.get("tokens"):
        kept_cell += (
            f"; {_num(kept['tokens'])} of {_num(pool['tokens'])} tokens{_share(kept['tokens'], pool['tokens'])}"
        )
    rows: list[tuple[Markdown, Markdown]] = [
        (Markdown("Method"), _method_sentence(record, column)),
        (Markdown("Parameters"), _parameters(record.parameters or {})),
        *_scorer_lines(record.scorers),
        (Markdown("Budget requested"), budget),
        (Markdown("Budget achieved"), Markdown(achieved_cell)),
        (Markdown("Kept from the pool"), Markdown(kept_cell)),
        (Markdown("Seed"), text(record.seed) if record.seed is not None else Markdown("– (deterministic)")),
        (Markdown("Source"), _source_cell(record.source or {}, hub_id)),
        (Markdown("Selected pool indices (sha256)"), code(record.indices_sha256)),
        (Markdown("hf-select version"), code(record.hf_select_version)),
        (Markdown("Created"), text(record.created_at)),
    ]
    return table([Markdown(""), Markdown("")], [list(r) for r in rows], numeric=False)


def _intro(record: SelectionRecord, column: str | None, hub_id: str | None) -> Markdown:
    kept, pool = record.kept or {}, record.pool or {}
    source = record.source or {}
    where = (
        f"[{hub_id}](https://huggingface.co/datasets/{hub_id})" if hub_id else code(source.get("dataset") or "a pool")
    )
    out = f"{_num(kept.get('rows'))} rows selected from {where} by hf-select with {_method_short(record, column)}."
    if pool.get("rows") and kept.get("rows") is not None:
        out += f" They are {_pct(kept['rows'], pool['rows'])} of the pool's {_num(pool['rows'])} rows"
        if kept.get("tokens") is not None and pool.get("tokens"):
            out += f" and hold {_pct(kept['tokens'], pool['tokens'])} of its {_num(pool['tokens'])} tokens"
        out += "."
    return Markdown(out)


def _load_snippet(repo_id: str | None, with_scores: bool) -> Markdown:
    repo = repo_id or REPO_PLACEHOLDER
    lines = ["from datasets import load_dataset", "", f"subset = load_dataset({repo!r}, split='train')"]
    if with_scores:
        lines.append(f"pool_scores = load_dataset({repo!r}, 'scores', split='train')  # the whole scored pool")
    out = fence("\n".join(lines), "python")
    if repo_id is None:
        out = Markdown(f"{out}{_PLACEHOLDER_NOTE}")
    return out


def _read_method(name: str) -> tuple[dict[str, Any], str] | None:
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


def _methods(record: SelectionRecord) -> tuple[list[dict[str, Markdown]], list[str]]:
    names = [str(s.get("method")) for s in record.scorers if isinstance(s, Mapping) and s.get("method")]
    names.append(selector_name(record))
    sections, bibtex = [], []
    for name in dict.fromkeys(names):
        found = _read_method(name)
        if found is None:
            sections.append(
                {
                    "title": text(name),
                    "body": Markdown("No description of this method ships with hf-select."),
                    "paper": Markdown(""),
                }
            )
            continue
        meta, body = found
        # method files are hf-select's own Markdown, shipped with the package
        sections.append(
            {
                "title": Markdown(meta.get("title", name)),
                "body": Markdown(body),
                "paper": Markdown(meta.get("paper", "")),
            }
        )
        if meta.get("bibtex"):
            bibtex.append(meta["bibtex"].strip())
    return sections, bibtex


ColumnValues = dict[str, tuple[np.ndarray, np.ndarray | None]]
"""Per score column: its values in the subset and in the pool (None without a pool), read once."""


def _column_values(columns: Sequence[str], subset: Dataset, pool: Dataset | None) -> ColumnValues:
    out: ColumnValues = {}
    for column in columns:
        sub = _values(subset, column)
        if sub is not None:
            out[column] = (sub, _values(pool, column))
    return out


def _histograms(values: ColumnValues, assets_dir: Path | None) -> list[dict[str, Markdown]]:
    if assets_dir is None:
        return []
    from .plots import score_histogram

    plots = []
    for column, (sub, pool_values) in values.items():
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", column)[:60].strip("-.") or "score"
        if slug != column:
            slug += "-" + hashlib.sha256(column.encode()).hexdigest()[:8]
        path = assets_dir / f"hist-{slug}.png"
        try:
            score_histogram(sub, pool_values, path, column=column)
        except ValueError:  # nothing finite to plot
            continue
        against = " against the pool" if pool_values is not None else ""
        plots.append(
            {
                "alt": text(f"Distribution of {column} in this subset{against}"),
                "path": Markdown(quote(f"{assets_dir.name}/{path.name}")),
            }
        )
    return plots


def _stats_tables(values: ColumnValues) -> list[dict[str, Markdown]]:
    tables = []
    for column, (sub, pool_values) in values.items():
        headers = [Markdown(""), Markdown("this subset")] + ([Markdown("pool")] if pool_values is not None else [])
        columns_stats = [_stats(sub)] + ([_stats(pool_values)] if pool_values is not None else [])
        decimals = _decimals(sub if pool_values is None else np.concatenate([sub, pool_values]))
        rows = [
            [Markdown(name)] + [_num(s[i], None if i < 2 else decimals) for s in columns_stats]
            for i, name in enumerate(_STAT_NAMES)
        ]
        tables.append({"caption": Markdown(f"{code(column)}:"), "markdown": table(headers, rows)})
    return tables


def _mix_key(value: Any) -> str:
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)


def _value_counts(ds: Dataset, column: str) -> Counter[str]:
    array = ds.with_format("arrow")[column]
    if isinstance(array, pa.Table):
        array = array.column(0)
    counts: Counter[str] = Counter()
    try:
        vc = pc.value_counts(array)
        pairs = zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        pairs = ((v, 1) for v in array.to_pylist())
    for value, n in pairs:
        counts[_mix_key(value)] += n
    return counts


def _describe(ds: Dataset, token_column: str) -> dict[str, Any]:
    try:
        return describe(ds, token_column)
    except HFSelectError:  # a token column that is not numeric
        return describe(ds, token_column="\0none")


def _comparison(
    subset: Dataset,
    baseline: Dataset,
    baseline_name: str,
    column: str | None,
    token_column: str,
) -> dict[str, Markdown]:
    ours, theirs = _describe(subset, token_column), _describe(baseline, token_column)
    rows = [
        [Markdown("rows"), _num(ours["rows"]), _num(theirs["rows"])],
        [Markdown("tokens"), _num(ours["tokens"]), _num(theirs["tokens"])],
        [Markdown("mean tokens"), _num(ours["mean_tokens"], 1), _num(theirs["mean_tokens"], 1)],
        [Markdown("median tokens"), _num(ours["median_tokens"], 1), _num(theirs["median_tokens"], 1)],
        [Markdown("mean turns"), _num(ours.get("mean_turns"), 2), _num(theirs.get("mean_turns"), 2)],
    ]
    if column and column != token_column:
        sub, base = _values(subset, column), _values(baseline, column)
        if sub is not None and base is not None:
            mean = [float(np.nanmean(v)) if np.isfinite(v).any() else None for v in (sub, base)]
            decimals = _decimals(np.concatenate([sub, base]))
            rows.append([Markdown(f"mean {code(column)}"), _num(mean[0], decimals), _num(mean[1], decimals)])
    headers = [Markdown(""), Markdown("this subset"), text(baseline_name)]
    return {"caption": Markdown(f"This subset against {text(baseline_name)}:"), "markdown": table(headers, rows)}


def _source_mix(
    subset: Dataset, baseline: Dataset | None, pool: Dataset | None, baseline_name: str, column: str = "source"
) -> dict[str, Markdown] | None:
    if column not in subset.column_names:
        return None
    named = [("this subset", subset), (baseline_name, baseline), ("pool", pool)]
    named = [(name, ds) for name, ds in named if ds is not None and column in ds.column_names]
    counts = [_value_counts(ds, column) for _, ds in named]
    totals = [max(1, sum(c.values())) for c in counts]
    ranked = sorted(counts[0], key=lambda k: (-counts[0][k], -(counts[-1][k]), k))
    for key, _ in counts[-1].most_common():
        if len(ranked) >= MIX_MAX_VALUES * 2:
            break
        if key not in counts[0]:
            ranked.append(key)
    shown = ranked[:MIX_MAX_VALUES]
    rows = [
        [text(key, 80)] + [Markdown(f"{100 * c[key] / t:.1f}%") for c, t in zip(counts, totals, strict=True)]
        for key in shown
    ]
    rest = [sum(n for k, n in c.items() if k not in shown) for c in counts]
    if any(rest):
        n_other = len(set().union(*counts) - set(shown))
        rows.append(
            [Markdown(f"other ({n_other:,} values)")]
            + [Markdown(f"{100 * r / t:.1f}%") for r, t in zip(rest, totals, strict=True)]
        )
    headers = [Markdown("")] + [text(name) for name, _ in named]
    return {"caption": Markdown(f"Mix of the {code(column)} column (share of rows):"), "markdown": table(headers, rows)}


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


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")


def _sample(subset: Dataset) -> tuple[Markdown, Markdown] | None:
    if len(subset) == 0:
        return None
    row = subset.with_format(None)[0]
    dumped = json.dumps(_clip(row), indent=2, ensure_ascii=False)
    dumped = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped)  # still valid JSON
    label = "The first row of this subset"
    if "id" in row and isinstance(row["id"], str | int):
        label += f" (id {str(row['id'])[:80]})"
    label += f", as JSON; strings are cut at {SAMPLE_MAX_CHARS:,} characters and lists at {SAMPLE_MAX_ITEMS} items."
    summary = Markdown(html.escape(_INVISIBLE.sub("", LINE_BREAKS.sub(" ", label)), quote=True))
    return summary, fence(dumped, "json")


# --------------------------------------------------------------------------------------------------
# The card


def with_repo_id(content: str, repo_id: str) -> str:
    """A card rendered without `repo_id` (e.g. by `save_selection`), its `load_dataset` snippet pointed at
    `repo_id`: the same text `build_card(..., repo_id=repo_id)` gives. Only the "Load it" section changes."""
    if not _HUB_ID.fullmatch(repo_id):
        raise InputError(f"invalid Hub repo id {repo_id!r}: expected 'namespace/name'")
    start = content.find(_LOAD_HEADING)
    if start < 0:
        return content
    end = content.find("\n## ", start + len(_LOAD_HEADING))
    end = len(content) if end < 0 else end
    section = content[start:end].replace(f"load_dataset({REPO_PLACEHOLDER!r}", f"load_dataset({repo_id!r}")
    return content[:start] + section.replace(_PLACEHOLDER_NOTE, "") + content[end:]


def build_card(
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
) -> SelectionCard:
    """Render the dataset card of a selection.

    Args:
        subset: the selected rows (`Selection.dataset`).
        record: its `SelectionRecord`.
        pool: the scored pool it was selected from: adds pool statistics to the score table and the
            histograms, and draws the random baseline (`select.random(pool, len(subset), seed=record.seed
            or 0, column=<score column>)`; seed + 1 when the selection itself is random).
        source_card_data: the source dataset's card data (`HfApi().dataset_info(id, expand=["cardData"])
            .card_data`), for `license`/`language` (`license: unknown` without it).
        assets_dir: where to write the histograms (PNG). It must be a folder next to the README
            (e.g. `<selection>/assets`): the card links `<assets_dir name>/<file>`. None: no figures.
        random_baseline: a random subset of the same size to compare with, instead of drawing one (a
            `Selection`, e.g. the first of `select.random_controls`, also names its seed).
        repo_id: the Hub repo the card is for, used in the `load_dataset` snippet.
        with_scores: the repo also holds the scored pool under `scores/` (adds the `scores` config).
        token_column: the token count column; None: the one the record names (a selector records a
            `token_column` other than `n_tokens`), else `n_tokens`.

    Save it with `card.save(folder / "README.md")`; `str(card)` is the file's content.
    """
    if repo_id is not None and not _HUB_ID.fullmatch(repo_id):
        raise InputError(f"invalid Hub repo id {repo_id!r}: expected 'namespace/name'")
    if token_column is None:
        recorded = (record.parameters or {}).get("token_column")
        token_column = recorded if isinstance(recorded, str) else TOKEN_COLUMN
    source = record.source or {}
    column = score_column(record)
    hub_id = hub_dataset_id(source, on_hub=source_card_data is not None)
    metadata = card_metadata(record, len(subset), source_card_data=source_card_data, with_scores=with_scores)
    columns = [c for c in dict.fromkeys([column, token_column]) if c]

    baseline, baseline_name = random_baseline, "a random subset"
    if isinstance(random_baseline, Selection):
        baseline = random_baseline.dataset
        if random_baseline.record.seed is not None:
            baseline_name = f"a random subset (seed {random_baseline.record.seed})"
    if baseline is None and pool is not None:
        seed = (record.seed or 0) + (1 if record.method == "random" else 0)
        try:
            baseline = random_selection(
                pool, len(subset), seed=seed, column=column if column in pool.column_names else None,
                token_column=token_column,
            ).dataset  # fmt: skip
            baseline_name = f"a random subset (seed {seed})"
        except (BudgetError, InputError):
            baseline = None

    methods, bibtex = _methods(record)
    sample = _sample(subset)
    values = _column_values(columns, subset, pool)
    context = {
        "title": text(metadata["pretty_name"]),
        "intro": _intro(record, column, hub_id),
        "summary": _summary(record, column, hub_id),
        "load_snippet": _load_snippet(repo_id, with_scores),
        "methods": methods,
        "histograms": _histograms(values, Path(assets_dir) if assets_dir is not None else None),
        "stats": _stats_tables(values),
        "study_note": Markdown(
            f"{STUDY_LINK} found that on pools of about a million conversations almost no self-scoring method "
            "significantly beats random selection, that diversity matters more than per-row quality, and that "
            "keeping long conversations is a cheap, stable gain. Compare with chance before trusting a method."
        ),
        "comparison": (
            _comparison(subset, baseline, baseline_name, column, token_column) if baseline is not None else None
        ),
        "source_mix": _source_mix(subset, baseline, pool, baseline_name) if baseline is not None else None,
        "no_comparison": Markdown(
            "No pool was given when this card was written, so there is no random subset to compare with "
            "(`hf-select select --controls N` writes random controls of the same size)."
        ),
        "command": fence(record.command, "bash") if record.command else None,
        "python": fence(python_snippet(record), "python"),
        "sample": sample[1] if sample else None,
        "sample_summary": sample[0] if sample else None,
        "citation_intro": Markdown(
            "If you use this subset, please cite the study whose methods hf-select implements"
            + (" and the papers of the methods used:" if bibtex else ":")
        ),
        "bibtex": fence("\n\n".join(dict.fromkeys([STUDY_BIBTEX, *bibtex])), "bibtex"),
    }
    return SelectionCard.from_template(metadata, **context)


__all__ = [
    "STUDY_BIBTEX",
    "Markdown",
    "SelectionCard",
    "build_card",
    "card_metadata",
    "cards_dir",
    "code",
    "fence",
    "fetch_source_card_data",
    "front_matter",
    "hub_dataset_id",
    "render_body",
    "score_column",
    "size_category",
    "table",
    "text",
    "with_repo_id",
]
