"""The dataset card of a selection (`hf_select.card`, `hf_select.plots`, `cards/`).

Cards are built from small in-memory pools with synthetic `n_tokens` scores (no tokenizer is loaded)
and checked the way the Hub and a reader see them: the YAML front matter parsed by `yaml.safe_load`
and `huggingface_hub.DatasetCard`, the Markdown scanned for fenced blocks, HTML and table structure.
Expected numbers come from numpy on the raw columns, never from the code under test.
"""

from __future__ import annotations

import json
import re
import shlex
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from datasets import Dataset
from fake_hub import FakeHub  # tests/ is on sys.path (conftest.py)
from huggingface_hub import DatasetCard, DatasetCardData
from huggingface_hub.repocard import REGEX_YAML_BLOCK

from hf_select.card import (
    SIZE_CATEGORIES,
    CardContext,
    Markdown,
    SelectionCard,
    build_card,
    card_metadata,
    cards_dir,
    fetch_source_card_data,
    render_body,
    render_card,
    size_category,
    with_repo_id,
)
from hf_select.errors import InputError
from hf_select.plots import score_histogram
from hf_select.scorers import SCORERS
from hf_select.select import SELECTORS, random, top_k

ROOT = Path(__file__).resolve().parent.parent
NAN = float("nan")
TOKEN_SCORER = {
    "method": "token-length",
    "fingerprint": "0123456789abcdef",
    "config": {"tokenizer": "org/tokenizer", "revision": None, "template": "auto", "strict": False},
    "tokenizer": {"name_or_path": "org/tokenizer", "revision": "abc123", "sha256": "f" * 64},
    "template": "chat",
}
LOCAL_SOURCE = {"dataset": "pool.jsonl", "sha256": "e" * 64, "split": "train", "revision": None, "num_rows": 40}
HUB_SOURCE = {"dataset": "org/pool", "revision": "0" * 40, "split": "train", "config": None, "num_rows": 40}


# ---------------------------------------------------------------------------------------------------
# Helpers: read a card the way a Markdown renderer and the Hub do


def conversation(i: int) -> list[dict[str, str]]:
    turns = []
    for t in range(1 + i % 3):
        turns += [{"from": "human", "value": f"question {i}.{t}"}, {"from": "gpt", "value": f"answer {i}.{t}"}]
    return turns


def make_pool(n: int = 40, *, nan_rows: tuple[int, ...] = (5,)) -> Dataset:
    rows = [
        {
            "id": f"row-{i}",
            "conversations": conversation(i),
            "n_tokens": NAN if i in nan_rows else float(10 + (i * 37) % 101),
            "source": ["alpha", "beta", "gamma"][i % 3],
        }
        for i in range(n)
    ]
    return Dataset.from_list(rows)


def split_card(content: str) -> tuple[dict[str, Any], str]:
    """(metadata, body): exactly one front matter block, at the very top."""
    assert content.startswith("---\n")
    match = REGEX_YAML_BLOCK.search(content)
    assert match is not None and match.start() == 0
    metadata = yaml.safe_load(match.group(2))
    assert isinstance(metadata, dict)
    return metadata, content[match.end() :]


_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def scan(body: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(lines outside fenced code blocks, [(info string, content)] of each fenced block), per CommonMark."""
    outside: list[str] = []
    blocks: list[tuple[str, str]] = []
    fence: str | None = None
    info, content = "", []
    for line in body.split("\n"):
        if fence is None:
            match = _FENCE_OPEN.match(line)
            if match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
                fence, info, content = match.group(1), match.group(2).strip(), []
            else:
                outside.append(line)
        elif re.fullmatch(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*", line):
            blocks.append((info, "\n".join(content)))
            fence = None
        else:
            content.append(line)
    assert fence is None, "a fenced block is never closed"
    return outside, blocks


def block(blocks: list[tuple[str, str]], info: str, contains: str = "") -> str:
    found = [content for i, content in blocks if i == info and contains in content]
    assert len(found) == 1, f"expected one {info!r} block containing {contains!r}, found {len(found)}"
    return found[0]


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def check_tables(outside: list[str]) -> int:
    """Every table row has as many cells as its header; returns the number of tables."""
    tables, current = 0, None
    for line in outside:
        if line.startswith("|"):
            if current is None:
                current, tables = unescaped_pipes(line), tables + 1
            assert unescaped_pipes(line) == current, f"table row with a different number of cells: {line!r}"
        else:
            current = None
    return tables


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def pool() -> Dataset:
    return make_pool()


@pytest.fixture(scope="module")
def selection(pool: Dataset):
    sel = top_k(pool, "n_tokens", 10, source=dict(LOCAL_SOURCE), scorers=[TOKEN_SCORER])
    sel.record.command = "hf-select select pool-scored --method top-k --column n_tokens --budget 10 -o out"
    return sel


# ---------------------------------------------------------------------------------------------------
# The card of a demo-like selection


def test_card_of_a_demo_like_selection_renders_every_section(pool, selection, tmp_path) -> None:
    card = build_card(selection.dataset, selection.record, pool=pool, assets_dir=tmp_path / "assets")
    assert isinstance(card, SelectionCard)
    metadata, body = split_card(str(card))
    for heading in (
        "## Load it", "## How it was selected", "### Token length", "### Top-k",
        "## Scores: this subset against the pool", "## Against a random subset of the same size",
        "## Reproduce it", "## A sample row", "## Citation",
    ):  # fmt: skip
        assert f"\n{heading}\n" in body, heading
    outside, blocks = scan(body)
    assert check_tables(outside) >= 4  # summary, score statistics, comparison, source mix
    assert block(blocks, "bash") == selection.record.command
    bibtex = block(blocks, "bibtex")
    assert "arXiv:2410.09335" in bibtex and "@inproceedings{zhao2024long" in bibtex
    summary = "\n".join(outside)
    assert "`org/tokenizer`, revision `abc123`" in summary and "| Template | `chat` |" in summary
    assert "| Budget requested | 10 rows |" in summary
    assert f"`{selection.record.indices_sha256}`" in summary
    # the Python that reproduces it is valid Python and checks the digest
    python = block(blocks, "python", "SELECTORS['top-k']")
    compile(python, "<card>", "exec")
    assert f"indices_sha256 == {selection.record.indices_sha256!r}" in python
    # saved and loaded back like the Hub does
    card.save(tmp_path / "README.md")
    assert DatasetCard.load(tmp_path / "README.md").data.to_dict() == metadata


def test_metadata_round_trips_through_datasetcard_and_yaml(selection) -> None:
    card = build_card(selection.dataset, selection.record)
    expected = {
        "pretty_name": "pool.jsonl: top-k by n_tokens, 10 rows",
        "license": "unknown",
        "size_categories": ["n<1K"],
        "task_categories": ["text-generation"],
        "tags": ["hf-select", "data-selection", "top-k", "token-length"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
    }
    for content in (str(card), card.content, SelectionCard(str(card)).content):
        metadata, _ = split_card(content)
        assert metadata == expected
        assert DatasetCard(content).data.to_dict() == expected
        assert DatasetCardData(**metadata).to_dict() == expected
    assert card.data.license == "unknown" and card.data.size_categories == ["n<1K"]


@pytest.mark.parametrize(
    ("n", "category"),
    [(0, "n<1K"), (1, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (9999, "1K<n<10K"), (10_000, "10K<n<100K"),
     (99_999, "10K<n<100K"), (100_000, "100K<n<1M"), (10**6, "1M<n<10M"), (10**12 - 1, "100B<n<1T"),
     (10**12, "n>1T")],
)  # fmt: skip
def test_size_category_boundaries(n: int, category: str) -> None:
    assert size_category(n) == category


def test_size_categories_are_the_ones_datasets_knows() -> None:
    import datasets

    known = json.loads((Path(datasets.__file__).parent / "utils/resources/size_categories.json").read_text())
    assert {name for _, name in SIZE_CATEGORIES} | {"n>1T"} <= set(known)


@pytest.mark.parametrize(
    ("n", "category"), [(999, "n<1K"), (1000, "1K<n<10K"), (9999, "1K<n<10K"), (10_000, "10K<n<100K")]
)
def test_size_category_of_rendered_cards(n: int, category: str) -> None:
    big = Dataset.from_dict({"n_tokens": [float(i % 997) for i in range(10_000)]})
    sel = top_k(big, "n_tokens", n, source=dict(LOCAL_SOURCE))
    metadata, _ = split_card(str(build_card(sel.dataset, sel.record)))
    assert len(sel.dataset) == n and metadata["size_categories"] == [category]


def test_license_and_language_are_inherited_from_the_source_card(selection) -> None:
    given = {"license": "cc-by-4.0", "language": ["en", "fr"], "pretty_name": "Source"}
    for source_card_data in (given, DatasetCardData(**given)):
        card = build_card(selection.dataset, selection.record, source_card_data=source_card_data)
        metadata, _ = split_card(str(card))
        assert metadata["license"] == "cc-by-4.0" and metadata["language"] == ["en", "fr"]
        assert card.data.license == "cc-by-4.0" and card.data.language == ["en", "fr"]
    metadata, _ = split_card(str(build_card(selection.dataset, selection.record)))
    assert metadata["license"] == "unknown" and "language" not in metadata


def test_license_other_keeps_its_name_and_a_link_to_the_source_repo(selection) -> None:
    record = selection.record
    record_hub = type(record)(**{**record.to_dict(), "source": dict(HUB_SOURCE)})
    given = {"license": "other", "license_name": "my-license-1.0", "license_link": "LICENSE.md"}
    metadata = card_metadata(record_hub, 10, source_card_data=given)
    assert metadata["license"] == "other" and metadata["license_name"] == "my-license-1.0"
    assert metadata["license_link"] == "https://huggingface.co/datasets/org/pool/blob/main/LICENSE.md"


def test_malformed_inherited_values_are_dropped(selection) -> None:
    given = {"license": "mit\n---\nlanguage: xx", "language": ["en", "<b>", 3]}
    metadata, _ = split_card(str(build_card(selection.dataset, selection.record, source_card_data=given)))
    assert metadata["license"] == "unknown" and metadata["language"] == ["en"]


@pytest.mark.parametrize(
    ("source", "on_hub", "expected"),
    [
        (HUB_SOURCE, False, ["org/pool"]),
        ({**HUB_SOURCE, "revision": None}, False, None),  # a local `org/pool` folder looks the same
        ({**HUB_SOURCE, "revision": None}, True, ["org/pool"]),  # its Hub card was fetched
        (LOCAL_SOURCE, True, None),
        ({"dataset": "data/pool.jsonl", "revision": "main"}, False, None),
        ({"dataset": "embedded:sharegpt", "sha256": "e" * 64}, False, None),
        ({"dataset": "/abs/path/pool", "revision": "main"}, False, None),
    ],
)
def test_source_datasets_only_for_hub_sources(selection, source, on_hub, expected) -> None:
    record = type(selection.record)(**{**selection.record.to_dict(), "source": dict(source)})
    metadata = card_metadata(record, 10, source_card_data={} if on_hub else None)
    assert metadata.get("source_datasets") == expected


def test_scores_config_only_when_the_scored_pool_is_included(selection) -> None:
    plain = build_card(selection.dataset, selection.record, repo_id="me/longest")
    metadata, body = split_card(str(plain))
    assert [c["config_name"] for c in metadata["configs"]] == ["default"]
    assert "'scores'" not in body and "load_dataset('me/longest', split='train')" in body
    scored = build_card(selection.dataset, selection.record, repo_id="me/longest", with_scores=True)
    metadata, body = split_card(str(scored))
    assert metadata["configs"][1] == {
        "config_name": "scores",
        "data_files": [{"split": "train", "path": "scores/train-*"}],
    }
    assert "load_dataset('me/longest', 'scores', split='train')" in body
    assert [c["config_name"] for c in scored.data.configs] == ["default", "scores"]


def test_repo_id_placeholder_and_validation(selection) -> None:
    _, body = split_card(str(build_card(selection.dataset, selection.record)))
    assert "load_dataset('<namespace>/<dataset-name>', split='train')" in body
    with pytest.raises(InputError, match="repo id"):
        build_card(selection.dataset, selection.record, repo_id="not a repo\n---")


@pytest.mark.parametrize("with_scores", [False, True])
def test_with_repo_id_gives_the_card_built_with_it(selection, with_scores) -> None:
    without = str(build_card(selection.dataset, selection.record, with_scores=with_scores))
    expected = str(build_card(selection.dataset, selection.record, with_scores=with_scores, repo_id="me/longest"))
    assert with_repo_id(without, "me/longest") == expected
    assert with_repo_id(expected, "me/longest") == expected  # idempotent
    with pytest.raises(InputError, match="repo id"):
        with_repo_id(without, "../etc")


@pytest.mark.parametrize("with_scores", [False, True])
def test_the_context_renders_the_same_card_again(pool, selection, tmp_path, with_scores) -> None:
    """What push does: the context saved as JSON, loaded back and rendered with a repo id, gives exactly
    the card built with that repo id."""
    card = build_card(
        selection.dataset, selection.record, pool=pool, assets_dir=tmp_path / "a" / "assets", with_scores=with_scores
    )
    context = CardContext.from_json(card.context.to_json())
    assert context == card.context
    assert str(render_card(context)) == str(card)
    expected = build_card(
        selection.dataset, selection.record, pool=pool, assets_dir=tmp_path / "b" / "assets", with_scores=with_scores,
        repo_id="me/longest",
    )  # fmt: skip
    assert str(render_card(context, repo_id="me/longest")) == str(expected)
    with pytest.raises(InputError, match="repo id"):
        render_card(context, repo_id="../etc")
    with pytest.raises(InputError, match="schema_version"):
        CardContext.from_json('{"schema_version": 99}')


@pytest.mark.parametrize(
    "files",
    [
        [{"path": "/data/pool.jsonl", "sha256": "ab" * 32}],
        ["/data/pool.jsonl"],
        {"train": ["/data/pool.jsonl"]},
    ],
)
def test_a_pool_read_from_data_files_is_named_by_its_files(pool, files) -> None:
    """`load_dataset("json", data_files=...)` names its builder (`json`): the card names the files."""
    source = {"dataset": "json", "data_files": files, "split": "train", "revision": None}
    sel = top_k(pool, "n_tokens", 10, source=source)
    metadata, body = split_card(str(build_card(sel.dataset, sel.record)))
    assert metadata["pretty_name"] == "pool.jsonl: top-k by n_tokens, 10 rows" and "source_datasets" not in metadata
    assert "10 rows selected from `/data/pool.jsonl` by hf-select" in body
    source_row = next(line for line in body.splitlines() if line.startswith("| Source |"))
    assert source_row.startswith("| Source | `/data/pool.jsonl`") and "read as `json`" in source_row
    with_sha = isinstance(files, list) and isinstance(files[0], dict)
    assert ("(sha256 `abababababababab`…)" in source_row) == with_sha
    two = {"dataset": "json", "data_files": ["a/one.jsonl", "b/two.jsonl"]}
    sel = top_k(pool, "n_tokens", 10, source=two)
    metadata, body = split_card(str(build_card(sel.dataset, sel.record)))
    assert metadata["pretty_name"] == "one.jsonl and 1 more files: top-k by n_tokens, 10 rows"
    assert "`a/one.jsonl`, `b/two.jsonl`" in body


def test_fetch_source_card_data_from_the_hub(fake_hub: FakeHub, selection) -> None:
    repo_id = fake_hub.new_repo_id("source")
    fake_hub.create_repo(repo_id)
    readme = "---\nlicense: cc-by-sa-4.0\nlanguage:\n- en\n- de\n---\n# Source\n"
    fake_hub.external_commit(repo_id, {"README.md": readme.encode()})
    source = {"dataset": repo_id, "revision": fake_hub.head(repo_id), "split": "train"}
    fetched = fetch_source_card_data(source)
    assert fetched["license"] == "cc-by-sa-4.0" and fetched["language"] == ["en", "de"]
    record = type(selection.record)(**{**selection.record.to_dict(), "source": source})
    metadata, _ = split_card(str(build_card(selection.dataset, record, source_card_data=fetched)))
    assert metadata["license"] == "cc-by-sa-4.0" and metadata["source_datasets"] == [repo_id]
    # missing on the Hub, or not a Hub source at all (no request is made): nothing inherited, no error
    fake_hub.clear_log()
    assert fetch_source_card_data({"dataset": fake_hub.new_repo_id("missing"), "revision": None}) is None
    assert fake_hub.count("/api/datasets/") == 1
    assert fetch_source_card_data(LOCAL_SOURCE) is None
    assert fetch_source_card_data({"dataset": "embedded:sharegpt"}) is None
    assert fake_hub.count("/api/datasets/") == 1


# ---------------------------------------------------------------------------------------------------
# The scorers used, the other score columns, the command chain

IFD_SCORER = {"method": "ifd", "fingerprint": "1" * 16, "config": {"model": "org/model"}, "model": "org/model"}


def test_scorers_used_are_described_and_other_score_columns_listed_apart() -> None:
    rng = np.random.default_rng(0)
    pool = make_pool().add_column("ifd", rng.uniform(0.2, 1.2, 40).tolist())
    pool = pool.add_column("prompt_ppl", rng.uniform(1, 9, 40).tolist())  # no scorer entry for it
    by_tokens = top_k(pool, "n_tokens", 10, source=dict(LOCAL_SOURCE), scorers=[TOKEN_SCORER, IFD_SCORER])
    _, body = split_card(str(build_card(by_tokens.dataset, by_tokens.record, pool=pool)))
    outside, _ = scan(body)
    summary = "\n".join(outside)
    assert "| Scorer | `token-length`" in summary and "| Scorer | `ifd`" not in summary
    assert "### Token length" in body and "### Instruction-following difficulty" not in body
    assert (
        "| Other score columns in this subset | `ifd` (from `ifd`), `prompt_ppl`; not used by this selection |" in body
    )
    assert check_tables(outside) >= 4  # the summary table keeps its shape
    # selected by IFD: both scorers are used (the token counts make the token budget and statistics)
    by_ifd = top_k(pool, "ifd", 10, source=dict(LOCAL_SOURCE), scorers=[TOKEN_SCORER, IFD_SCORER])
    _, body = split_card(str(build_card(by_ifd.dataset, by_ifd.record, pool=pool)))
    assert "| Scorer | `ifd`: model `org/model`, revision not pinned |" in body
    assert "### Instruction-following difficulty (IFD)" in body
    assert "| Other score columns in this subset | `prompt_ppl`; not used by this selection |" in body
    # nothing else to list: no row
    plain = top_k(make_pool(), "n_tokens", 10, source=dict(LOCAL_SOURCE), scorers=[TOKEN_SCORER])
    assert "Other score columns" not in str(build_card(plain.dataset, plain.record))


def test_the_card_shows_the_cli_chain_from_the_source(tmp_path: Path, tiny_tokenizer: str) -> None:
    """score, cluster, select with the real CLI: the card's command block is the three commands, in order."""
    from hf_select.cli import main

    rng = np.random.default_rng(1)
    rows = [{"conversations": conversation(i), "embedding": rng.normal(i % 3 * 10, 1, 4).tolist()} for i in range(30)]
    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    scored, clustered, out = tmp_path / "scored", tmp_path / "clustered", tmp_path / "longest"
    commands = [
        ["score", str(pool_file), "--method", "token-length", "--tokenizer", tiny_tokenizer, "-o", str(scored)],
        ["cluster", str(scored), "--column", "embedding", "--n-clusters", "3", "--seed", "0", "-o", str(clustered)],
        ["select", str(clustered), "--method", "within-clusters", "--cluster-column", "cluster", "--column",
         "n_tokens", "--budget", "6", "-o", str(out)],
    ]  # fmt: skip
    for argv in commands:
        assert main(argv) == 0
    _, body = split_card((out / "README.md").read_text(encoding="utf-8"))
    _, blocks = scan(body)
    assert block(blocks, "bash").splitlines() == [shlex.join(["hf-select", *argv]) for argv in commands]
    assert "With the command line, from the source dataset (each command reads what the one before it wrote):" in body
    summary = "\n".join(scan(body)[0])
    assert "| Clustering | `kmeans`: 3 clusters of `embedding`, seed 0 |" in summary
    assert "Other score columns" not in summary  # `embedding` was used, by the clustering


# ---------------------------------------------------------------------------------------------------
# Statistics, histograms, the random baseline


def test_score_statistics_against_the_pool(pool, selection) -> None:
    _, body = split_card(str(build_card(selection.dataset, selection.record, pool=pool)))
    section = body[body.index("`n_tokens`:") : body.index("## Against")]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in section.splitlines() if line.startswith("|")]
    rows = {row[0]: row[1:] for row in cells}
    tokens = np.array(pool["n_tokens"], dtype=float)
    finite = tokens[~np.isnan(tokens)]
    sub = np.array(selection.dataset["n_tokens"], dtype=float)
    assert rows["count"] == ["10", f"{len(finite)}"] and rows["missing (NaN)"] == ["0", "1"]
    assert rows["mean"] == [f"{sub.mean():,.1f}", f"{finite.mean():,.1f}"]
    assert rows["std"] == [f"{sub.std(ddof=1):,.1f}", f"{finite.std(ddof=1):,.1f}"]
    assert rows["50%"] == [f"{np.median(sub):,.1f}", f"{np.median(finite):,.1f}"]
    assert rows["max"] == [f"{sub.max():,.1f}", f"{finite.max():,.1f}"]


def test_random_baseline_is_an_independent_draw_of_the_same_size(pool, selection) -> None:
    _, body = split_card(str(build_card(selection.dataset, selection.record, pool=pool)))
    # numpy's seeded permutation, restricted to rows with a score: what `select.random(seed=0)` must draw
    tokens = np.array(pool["n_tokens"], dtype=float)
    permutation = np.random.default_rng(0).permutation(len(pool))
    drawn = permutation[~np.isnan(tokens[permutation])][:10]
    section = body[body.index("This subset against a random subset (seed 0):") :]
    assert "| rows | 10 | 10 |" in section
    assert f"| mean tokens | {np.mean(tokens[selection.indices]):,.1f} | {np.mean(tokens[drawn]):,.1f} |" in section
    turns = [1 + i % 3 for i in drawn]
    assert (
        f"| mean turns | {np.mean([1 + i % 3 for i in selection.indices]) * 2:.2f} | {np.mean(turns) * 2:.2f} |"
        in section
    )
    # the source mix: shares of each value of the `source` column
    sources = np.array(["alpha", "beta", "gamma"])[np.arange(len(pool)) % 3]
    alpha = [f"{100 * np.mean(s == 'alpha'):.1f}%" for s in (sources[selection.indices], sources[drawn], sources)]
    assert f"| alpha | {' | '.join(alpha)} |" in section


def test_a_random_selection_is_compared_with_another_seed(pool) -> None:
    sel = random(pool, 10, seed=3, column="n_tokens", source=dict(LOCAL_SOURCE))
    _, body = split_card(str(build_card(sel.dataset, sel.record, pool=pool)))
    assert "a random subset (seed 4)" in body and "(seed 3)" in body


def test_a_given_baseline_is_used_and_no_pool_means_no_comparison(pool, selection, tmp_path) -> None:
    control = random(pool, 10, seed=7, column="n_tokens")
    _, body = split_card(str(build_card(selection.dataset, selection.record, random_baseline=control.dataset)))
    assert "This subset against a random subset:" in body and "| pool |" not in body
    _, body = split_card(str(build_card(selection.dataset, selection.record, pool=pool, random_baseline=control)))
    drawn = np.array(pool["n_tokens"], dtype=float)[control.indices]
    assert f"| mean tokens | {np.mean(np.array(selection.dataset['n_tokens'])):,.1f} | {drawn.mean():,.1f} |" in body
    assert "This subset against a random subset (seed 7):" in body
    _, body = split_card(str(build_card(selection.dataset, selection.record, assets_dir=tmp_path / "assets")))
    assert "there is no random subset to compare with" in body
    assert "| | this subset |" not in body and "|  | this subset |\n|---|---:|\n" in body  # no pool column
    assert (tmp_path / "assets" / "hist-n_tokens.png").is_file()  # the subset alone is still plotted


def test_histogram_is_written_embedded_and_deterministic(pool, selection, tmp_path) -> None:
    assets = tmp_path / "assets"
    _, body = split_card(str(build_card(selection.dataset, selection.record, pool=pool, assets_dir=assets)))
    figure = assets / "hist-n_tokens.png"
    assert "![Distribution of n\\_tokens in this subset against the pool](assets/hist-n_tokens.png)" in body
    assert png_size(figure) == (600, 350)
    first = figure.read_bytes()
    build_card(selection.dataset, selection.record, pool=pool, assets_dir=assets)
    assert figure.read_bytes() == first
    with_nan = score_histogram([1.0, NAN, 3.0], [1.0, 2.0, NAN, 3.0, float("inf")], tmp_path / "a.png", column="x")
    without = score_histogram([1.0, 3.0], [1.0, 2.0, 3.0], tmp_path / "b.png", column="x")
    assert with_nan.read_bytes() == without.read_bytes()
    with pytest.raises(ValueError, match="no finite value"):
        score_histogram([NAN], None, tmp_path / "c.png", column="x")
    assert "Software" not in first.decode("latin-1")  # no matplotlib version in the file
    # a column name that is not a file name, and that matplotlib would parse as mathtext
    odd = score_histogram([1.0, 2.0], None, tmp_path / "d.png", column="$x_{1} | <b>")
    assert odd.is_file()


# ---------------------------------------------------------------------------------------------------
# Adversarial data cannot break the card


EVIL_COLUMN = "score | {{ jinja }} key: value <script>alert(1)</script> `x`"
LONG = "y" * 10_000
EVIL_TEXTS = [
    "---",
    "</details>",
    "<script>alert(1)</script>",
    "```",
    "````",
    LONG,
    "a | b | c",
    "key: value",
    "{{ jinja }} {% if x %}",
    "line\n---\nlicense: mit",
    "\r\n---\r\n",
]
EVIL_SOURCES = ["web\n---\nlicense: mit", "<script>alert(1)</script>", "a|b", "`code`"]


def evil_pool() -> Dataset:
    rows = []
    for i in range(24):
        text = EVIL_TEXTS[i % len(EVIL_TEXTS)]
        rows.append(
            {
                "id": "</summary><script>alert(1)</script>" if i % 2 else f"row-{i}",
                "conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": text[::-1]}],
                "n_tokens": float(100 + i),
                EVIL_COLUMN: float(i % 7),
                "source": EVIL_SOURCES[i % len(EVIL_SOURCES)],
                "key: value": "{{ jinja }}",
            }
        )
    return Dataset.from_list(rows)


def test_adversarial_rows_cannot_break_the_card(tmp_path) -> None:
    pool = evil_pool()
    source = {"dataset": "evil\n---\nlicense: mit", "sha256": "e" * 64, "origin": "<script>x</script>\n---"}
    sel = top_k(pool, EVIL_COLUMN, 11, source=source, scorers=[TOKEN_SCORER])
    sel.record.command = "hf-select select x --column '" + EVIL_COLUMN + "' -o '```\n---\n</details>\n<script>'"
    assert sel.indices[0] % 2 == 1  # the first subset row has the id that tries to close <summary>
    card = build_card(sel.dataset, sel.record, pool=pool, assets_dir=tmp_path / "assets", with_scores=True)
    content = str(card)

    # the metadata is ours, untouched by the data
    metadata, body = split_card(content)
    assert metadata["license"] == "unknown" and "language" not in metadata
    assert metadata["tags"] == ["hf-select", "data-selection", "top-k", "token-length"]
    assert metadata["size_categories"] == ["n<1K"] and metadata["task_categories"] == ["text-generation"]
    assert [c["config_name"] for c in metadata["configs"]] == ["default", "scores"]
    assert "\n" not in metadata["pretty_name"] and "source_datasets" not in metadata
    assert DatasetCard(content).data.to_dict() == metadata
    assert DatasetCardData(**metadata).to_dict() == metadata

    outside, blocks = scan(body)
    # no second front matter, horizontal rule or setext heading made of data
    assert not any(line.strip().startswith("---") and set(line.strip()) == {"-"} for line in outside)
    # no raw HTML from the data outside code: only our own <details>/<summary>
    assert not any("<script" in line.lower() for line in outside)
    assert [line for line in outside if "<details>" in line] == ["<details>"]
    assert [line for line in outside if "</details>" in line] == ["</details>"]
    summary_line = next(line for line in outside if line.startswith("<summary>"))
    assert summary_line.endswith("</summary>") and summary_line.count("</summary>") == 1
    assert "&lt;/summary&gt;&lt;script&gt;" in summary_line
    # tables keep their shape; the Jinja-looking text is shown, not evaluated
    assert check_tables(outside) >= 4
    assert "{{ jinja }}" in "\n".join(outside)
    assert "score \\| {{ jinja }} key: value &lt;script&gt;alert(1)&lt;/script&gt; \\`x\\`" in "\n".join(outside)

    # the sample block holds the escaped row: valid JSON, long strings cut with a marker
    sample = json.loads(block(blocks, "json"))
    assert sample["id"] == "</summary><script>alert(1)</script>"
    assert sample["key: value"] == "{{ jinja }}" and EVIL_COLUMN in sample
    first_text = EVIL_TEXTS[int(sel.indices[0]) % len(EVIL_TEXTS)]
    assert first_text.startswith("`") and sample["conversations"][0]["value"] == first_text  # the fence held
    # a 10 KB single-line string is cut, with a marker (on a card whose first row it is)
    long_sel = top_k(pool.select([EVIL_TEXTS.index(LONG)]), "n_tokens", 1, source=dict(LOCAL_SOURCE))
    _, long_blocks = scan(split_card(str(build_card(long_sel.dataset, long_sel.record)))[1])
    cut = json.loads(block(long_blocks, "json"))["conversations"][0]["value"]
    assert cut == "y" * 2000 + "… [8,000 more characters]"

    # the command is shown exactly, in a fence that nothing in it closes
    assert block(blocks, "bash") == sel.record.command
    compile(block(blocks, "python", "SELECTORS['top-k']"), "<card>", "exec")
    # the histogram of the odd column has a file-safe name and a URL-safe link
    figures = list((tmp_path / "assets").glob("hist-*.png"))
    assert len(figures) == 2
    links = re.findall(r"!\[[^\n]*\]\(([^)\s]+)\)", body)
    assert sorted(links) == sorted(f"assets/{f.name}" for f in figures)


def test_carriage_returns_and_line_separators_do_not_leak(tmp_path) -> None:
    rows = [{"text": "a\rb\u2028c\u2029d\x85e\u202eRTL", "n_tokens": 5.0, "source": "x\r\ny"}]
    ds = Dataset.from_list(rows)
    sel = top_k(ds, "n_tokens", 1, source=dict(LOCAL_SOURCE))
    sel.record.command = "hf-select select 'a\rb'"
    content = str(build_card(sel.dataset, sel.record, pool=ds))
    assert "\r" not in content and "\u2028" not in content and "\u202e" not in content and "\x85" not in content
    _, blocks = scan(split_card(content)[1])
    assert json.loads(block(blocks, "json"))["text"] == rows[0]["text"]


# ---------------------------------------------------------------------------------------------------
# Templates and method descriptions


def test_the_template_refuses_values_that_were_not_escaped() -> None:
    with pytest.raises(TypeError, match="not escaped"):
        render_body("{{ x }}", {"x": "<b>raw</b>"})
    assert render_body("{{ x }}", {"x": Markdown("ok")}) == "ok"


def test_every_method_has_a_description_with_a_valid_header() -> None:
    planned = {"ce", "ifd", "selectit", "kmeans", "kcenter", "zip", "diverseevol"}
    for name in set(SELECTORS) | set(SCORERS) | planned:
        path = cards_dir() / "methods" / f"{name}.md"
        assert path.is_file(), name
        header = re.match(r"---\n(.*?)\n---\n", path.read_text(encoding="utf-8"), re.DOTALL)
        meta = yaml.safe_load(header.group(1))
        assert meta["title"]
        if "bibtex" in meta:
            entry = meta["bibtex"]
            assert entry.startswith("@") and entry.count("{") == entry.count("}")


def test_templates_ship_with_the_package() -> None:
    assert (cards_dir() / "selection.md.j2").is_file()
    assert Path(SelectionCard.default_template_path).is_file()
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = setuptools.get("packages")
    assert isinstance(packages, list), "pyproject.toml must list the packages (find ignores package-dir)"
    assert setuptools["package-dir"]["hf_select.cards"] == "cards"
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "hf_select").rglob("__init__.py")} | {
        "hf_select.cards",
        "hf_select.cards.methods",
    }
    assert on_disk <= set(packages), f"packages missing from pyproject.toml: {sorted(on_disk - set(packages))}"
