"""The dataset card (README.md) of a selection: Hub metadata, what was selected and how, and how it compares.

A small package, one job per module:

- `escape`: the escaping helpers; every value the template prints goes through one of them.
- `metadata`: the YAML metadata (license/language inherited from the source, size category, `configs`).
- `stats`: score statistics, histograms, the subset against a random subset, the source mix.
- `context`: `CardContext`, everything the template needs, computed once and kept as JSON (`card.json`
  in a selection folder) so that `hf_select.push` renders the card again for the repo it pushes to.
- `render`: the Jinja template `cards/selection.md.j2` (all the prose) and `SelectionCard`.
- `against`: the "Against random" section, read from the folder's `compare/compare.json` (`hf-select compare`).

Example:
    >>> from hf_select import select
    >>> from hf_select.card import build_card
    >>> sel = select.top_k(scored, "n_tokens", 1000)  # doctest: +SKIP
    >>> card = build_card(sel.dataset, sel.record, pool=scored, assets_dir="out/longest-1000/assets")  # doctest: +SKIP
    >>> card.save("out/longest-1000/README.md")  # doctest: +SKIP
    >>> card.context.save("out/longest-1000")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from datasets import Dataset
from huggingface_hub.repocard_data import CardData

from ..record import SelectionRecord
from ..select import Selection
from .context import CONTEXT_FILE, CardContext, build_context
from .escape import Markdown, code, fence, table, text
from .metadata import (
    SIZE_CATEGORIES,
    card_metadata,
    check_repo_id,
    fetch_source_card_data,
    front_matter,
    hub_configs,
    hub_dataset_id,
    score_column,
    size_category,
)
from .render import STUDY_BIBTEX, SelectionCard, cards_dir, render_body, render_card, with_repo_id


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
    """Render the dataset card of a selection; its context is `card.context` (a `CardContext`).

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
    if repo_id is not None:
        check_repo_id(repo_id)
    context = build_context(
        subset, record, pool=pool, source_card_data=source_card_data, assets_dir=assets_dir,
        random_baseline=random_baseline, repo_id=repo_id, with_scores=with_scores, token_column=token_column,
    )  # fmt: skip
    card = render_card(context)
    card.context = context
    return card


__all__ = [
    "CONTEXT_FILE",
    "SIZE_CATEGORIES",
    "STUDY_BIBTEX",
    "CardContext",
    "Markdown",
    "SelectionCard",
    "build_card",
    "build_context",
    "card_metadata",
    "cards_dir",
    "check_repo_id",
    "code",
    "fence",
    "fetch_source_card_data",
    "front_matter",
    "hub_configs",
    "hub_dataset_id",
    "render_body",
    "render_card",
    "score_column",
    "size_category",
    "table",
    "text",
    "with_repo_id",
]
