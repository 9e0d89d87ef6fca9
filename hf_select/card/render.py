"""Render a `CardContext` into the card: YAML front matter (`yaml.safe_dump`) and the Jinja template
`cards/selection.md.j2`, which holds all the card's prose.

The template prints data only through the escaping filters (`text`, `code`, `num`, `fence`, ...): its
`finalize` refuses any value that did not go through one of them.

Example:
    >>> from hf_select.card.render import render_body
    >>> from hf_select.card.escape import Markdown
    >>> render_body("{{ x | code }} and {{ y }}", {"x": "n_tokens", "y": Markdown("*ok*")})
    '`n_tokens` and *ok*'
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import DatasetCard
from huggingface_hub.repocard_data import CardData

from . import escape
from .context import SAMPLE_MAX_CHARS, SAMPLE_MAX_ITEMS, CardContext
from .escape import Markdown
from .metadata import check_repo_id, front_matter, selection_configs, with_license

STUDY_BIBTEX = """@article{xia2024rethinking,
  title   = {Rethinking Data Selection at Scale: Random Selection is Almost All You Need},
  author  = {Xia, Tingyu and Yu, Bowen and Dang, Kai and Yang, An and Wu, Yuan and Tian, Yuan and Chang, Yi
             and Lin, Junyang},
  journal = {arXiv preprint arXiv:2410.09335},
  year    = {2024}
}"""
REPO_PLACEHOLDER = "<namespace>/<dataset-name>"
_PLACEHOLDER_NOTE = f"\n\nReplace `{REPO_PLACEHOLDER}` with this repository's id."
_LOAD_HEADING = "\n## Load it\n"
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")


def cards_dir() -> Path:
    """The card templates: the installed `hf_select.cards` package, else `cards/` of a source checkout."""
    try:
        return Path(str(resources.files("hf_select.cards")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent.parent / "cards"


def _trusted(value: Any) -> Markdown:
    """hf-select's own Markdown: the method descriptions it ships, and blocks the template built itself."""
    return Markdown(str(value))


def _json_block(row: Any) -> Markdown:
    dumped = json.dumps(row, indent=2, ensure_ascii=False)
    return escape.fence(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped), "json")  # still valid JSON


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        autoescape=False,  # Markdown, not HTML: values are escaped by the filters, and checked
        undefined=jinja2.StrictUndefined,
        finalize=escape.only_markdown,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        text=escape.text, code=escape.code, html=escape.html_text, url=escape.url, fence=escape.fence,
        num=escape.num, percent=escape.percent, json_block=_json_block, trusted=_trusted,
    )  # fmt: skip
    env.globals["share"] = lambda part, whole: escape.percent(100 * part / whole)
    return env


def render_body(template: str, context: Mapping[str, Any]) -> str:
    """Render the Markdown body; every `{{ value }}` must be a `Markdown` string (an escaping filter's)."""
    return _environment().from_string(template).render(**context)


class SelectionCard(DatasetCard):
    """A `huggingface_hub.DatasetCard` rendered from hf-select's template (`cards/selection.md.j2`).

    `from_template(card_data, **context)` writes the front matter with `yaml.safe_dump` and renders the
    body with a strict Jinja environment (see `render_body`). `render_card` fills the context.
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


def load_code(repo_id: str | None, *, with_scores: bool, config_name: str = "default", split: str = "train") -> str:
    """The Python that loads the subset (and the scored pool) from the repo."""
    repo = repo_id or REPO_PLACEHOLDER
    config = "" if config_name == "default" else f", {config_name!r}"
    lines = ["from datasets import load_dataset", "", f"subset = load_dataset({repo!r}{config}, split={split!r})"]
    if with_scores:
        lines.append(f"pool_scores = load_dataset({repo!r}, 'scores', split={split!r})  # the whole scored pool")
    return "\n".join(lines)


def card_metadata_of(context: CardContext) -> dict[str, Any]:
    """The front matter of a context's card: its metadata, the license override, and the `configs`."""
    configs = selection_configs(context.with_scores, config_name=context.config_name, split=context.split)
    return {**with_license(context.metadata, context.license), "configs": configs}


def render_card(
    context: CardContext, *, against_random: Mapping[str, Any] | None = None, **changes: Any
) -> SelectionCard:
    """The card of `context` (with `changes` to its fields, e.g. `repo_id="me/longest"`); `against_random`
    adds the "Against random" section (`card.against.load_against` of the selection folder)."""
    if changes:
        context = dataclasses.replace(context, **changes)
    if context.repo_id is not None:
        check_repo_id(context.repo_id)
    metadata = card_metadata_of(context)
    variables = {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}
    variables.update(
        title=metadata["pretty_name"],
        load_code=load_code(
            context.repo_id, with_scores=context.with_scores, config_name=context.config_name, split=context.split
        ),
        bibtex_all="\n\n".join(dict.fromkeys([STUDY_BIBTEX, *context.bibtex])),
        sample_max_chars=SAMPLE_MAX_CHARS,
        sample_max_items=SAMPLE_MAX_ITEMS,
        placeholder=REPO_PLACEHOLDER,
        against_random=against_random,
    )
    return SelectionCard.from_template(metadata, **variables)


def with_repo_id(content: str, repo_id: str) -> str:
    """A card rendered without `repo_id`, its `load_dataset` snippet pointed at `repo_id`: the same text
    `build_card(..., repo_id=repo_id)` gives. Only the "Load it" section changes.

    For cards without a saved context (folders written before `card.json`); `render_card` re-renders
    a card from its context instead.
    """
    check_repo_id(repo_id)
    start = content.find(_LOAD_HEADING)
    if start < 0:
        return content
    end = content.find("\n## ", start + len(_LOAD_HEADING))
    end = len(content) if end < 0 else end
    section = content[start:end].replace(f"load_dataset({REPO_PLACEHOLDER!r}", f"load_dataset({repo_id!r}")
    return content[:start] + section.replace(_PLACEHOLDER_NOTE, "") + content[end:]
