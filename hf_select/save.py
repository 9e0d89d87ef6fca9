"""Write a selection folder: `data/` parquet shards, `selection.json`, the dataset card (`README.md`,
`assets/`), and optionally the scored pool (`scores/`).

Example:
    >>> from hf_select import select
    >>> from hf_select.save import save_selection
    >>> sel = select.top_k(scored, "n_tokens", 1000)  # doctest: +SKIP
    >>> save_selection(sel.dataset, "out/longest-1000", sel.record)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset

from .card.context import CONTEXT_FILE
from .conversation import as_messages
from .errors import InputError
from .record import SelectionRecord

if TYPE_CHECKING:
    from .select import Selection

MAX_SHARD_BYTES = 500 << 20
OUTPUT_FORMATS = ("original", "messages")
"""How a selection's `data/` is written: the pool's own columns, or a TRL-ready `messages` column."""


def write_parquet_shards(ds: Dataset, folder: Path, split: str = "train") -> list[Path]:
    """`{split}-00000-of-0000N.parquet` shards of at most ~500 MB each, the layout the Hub expects."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{split}-*-of-*.parquet"):  # an earlier save's shards would join this subset
        stale.unlink()
    n_shards = max(1, math.ceil(ds.data.nbytes * (len(ds) / max(1, len(ds.data))) / MAX_SHARD_BYTES))
    paths = []
    for i in range(n_shards):
        path = folder / f"{split}-{i:05d}-of-{n_shards:05d}.parquet"
        ds.shard(num_shards=n_shards, index=i, contiguous=True).to_parquet(str(path))
        paths.append(path)
    return paths


def save_selection(
    subset: Dataset,
    path: str | os.PathLike[str],
    record: SelectionRecord,
    scores: Dataset | None = None,
    *,
    pool: Dataset | None = None,
    card: bool = True,
    source_card_data: Mapping[str, Any] | None = None,
    random_baseline: Dataset | Selection | None = None,
    repo_id: str | None = None,
    token_column: str | None = None,
    output_format: str = "original",
) -> Path:
    """Write a selection folder: `data/` (the subset), `selection.json` (the record), `README.md` (the
    dataset card, with plots under `assets/`, and its context `card.json`, which `push` renders the card
    from again and does not upload) and, when given, the whole scored pool under `scores/`.

    `pool` (default: `scores`) lets the card compare the subset with the pool and a random subset of the
    same size; `random_baseline` gives that random subset (e.g. the first control written beside it).
    `output_format="messages"` writes the subset's conversations as one TRL-ready `messages` column
    (`conversation.as_messages`), whatever format the pool was in; `"original"` keeps its columns.
    """
    if output_format not in OUTPUT_FORMATS:
        raise InputError(f"unknown output format {output_format!r}: expected one of {list(OUTPUT_FORMATS)}")
    if output_format == "messages":
        subset = as_messages(subset)
    folder = Path(path)
    write_parquet_shards(subset, folder / "data")
    if scores is not None:
        write_parquet_shards(scores, folder / "scores")
    record.save(folder / "selection.json")
    if card:
        from .card import build_card, render_card  # matplotlib and jinja only when a card is written
        from .card.against import load_against

        card = build_card(
            subset, record, pool=pool if pool is not None else scores, source_card_data=source_card_data,
            assets_dir=folder / "assets", random_baseline=random_baseline, repo_id=repo_id,
            with_scores=scores is not None, token_column=token_column,
        )  # fmt: skip
        card.context.save(folder)  # `card.json`: what `push` renders the card from again, for its repo
        against = load_against(folder)  # a folder written again after `hf-select compare` keeps its section
        if against is not None:
            card = render_card(card.context, against_random=against)
        card.save(folder / "README.md")
    else:  # an earlier save's context would describe another card
        (folder / CONTEXT_FILE).unlink(missing_ok=True)
    return folder


def load_selection_folder(path: str | os.PathLike[str], config: str = "data") -> Dataset:
    """The subset (`config="data"`) or the scored pool (`config="scores"`) of a selection folder."""
    from datasets import load_dataset

    files = sorted(str(p) for p in (Path(path) / config).glob("*.parquet"))
    if not files:
        raise InputError(f"{path} has no {config}/ parquet files")
    return load_dataset("parquet", data_files=files, split="train")
