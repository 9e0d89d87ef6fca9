"""The card's "Reproduce it" Python snippet is exact: for every selector, it is run as written (loading the
pool from the local file the record names) and its `assert sel.record.indices_sha256 == ...` passes."""

from __future__ import annotations

import ast
import inspect
import json
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import yaml
from datasets import Dataset

from hf_select import select
from hf_select.card import build_card
from hf_select.pool import load_pool
from hf_select.record import SelectionRecord
from hf_select.select import Selection
from hf_select.select.diverse_evol import MeanHiddenEmbed, SFTTrainStep

TOPICS = ["the sea", "Paris", "prime numbers", "a fox", "coffee", "SQL"]


def _rows(n: int = 24) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    centers = np.eye(3, 4) * 10.0
    X = centers[np.arange(n) % 3] + rng.normal(0, 1, (n, 4))
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        turns = [{"from": "human", "value": f"Tell me about {topic} ({i})."}]
        turns.append({"from": "gpt", "value": f"{topic.capitalize()} is interesting. " * (1 + i % 4)})
        rows.append(
            {
                "id": i,
                "conversations": turns,
                "n_tokens": float(8 + (i * 7) % 19),
                "ifd": float((i * 0.13) % 1.3),
                "less": float(np.sin(i * 1.7)) if i % 7 else None,  # a row LESS could not score
                "embedding": X[i].round(4).tolist(),
                "cluster": i % 3,
                "cluster_distance": float((i * 5) % 11),
                "instruction_embedding": X[i].round(4).tolist(),
                "instruction_ppl": float(2 + (i * 11) % 17),
            }
        )
    return rows


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, dict[str, Any]]:
    """The pool, loaded from a local jsonl file the way the CLI loads it, and its source record."""
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    loaded = load_pool(str(path))
    return loaded.dataset, loaded.source


def _snippet(sel: Selection) -> str:
    """The card's Python block, rendered from the record as `selection.json` holds it."""
    record = SelectionRecord.from_dict(json.loads(sel.record.to_json()))
    card = str(build_card(sel.dataset, record))
    section = card[card.index("## Reproduce it") :]
    (python,) = re.findall(r"```python\n(.*?)\n```", section, re.DOTALL)[:1]
    return python


WRAPPERS: dict[type, Callable[..., Any]] = {  # each registered selector class and its function
    select.TopK: select.top_k,
    select.IFDTopK: select.ifd_top_k,
    select.LESSTopK: select.less_top_k,
    select.Threshold: select.threshold,
    select.Random: select.random,
    select.WithinClusters: select.within_clusters,
    select.Centroid: select.centroids,
    select.KMeansSelect: select.kmeans_select,
    select.KCenter: select.kcenter_greedy,
    select.ZIP: select.zip_select,
    select.DiverseEvol: select.diverse_evol,
    select.PreExperience: select.pre_experience_subset,
}


def _selector_call(python: str) -> tuple[Callable[..., Any], ast.Call]:
    """The selector (as its function) and the `SELECTORS[name](...)` call that the snippet assigns to
    `selector` and fits as `sel`; the call must bind to the selector class's fields."""
    (call,) = [
        node.value
        for node in ast.walk(ast.parse(python))
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["selector"]
    ]
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Subscript)
    assert isinstance(call.func.value, ast.Name) and call.func.value.id == "SELECTORS"
    cls = select.SELECTORS[ast.literal_eval(call.func.slice)]
    assert not call.args
    inspect.signature(cls).bind(**{k.arg: None for k in call.keywords})  # no unknown, missing or doubled argument
    return WRAPPERS[cls], call


CASES: dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]] = {  # case: (selector, arguments, keywords)
    "top-k": ("top_k", ("n_tokens", 5), {"largest": False, "min_value": 12.0}),
    "threshold": ("threshold", ("ifd",), {"min_value": -math.inf, "max_value": 0.8}),
    "random": ("random", (0.25,), {"seed": 3, "column": "ifd"}),
    "within-clusters": ("within_clusters", ("cluster", "n_tokens", "100 tokens"), {"largest": False}),
    "centroid": ("centroids", (6,), {}),
    "ifd": ("ifd_top_k", (4,), {"keep_above_one": True}),
    "ifd-default": ("ifd_top_k", ("20%",), {}),
    "less": ("less_top_k", (5,), {}),
    "less-within-clusters": ("within_clusters", ("cluster", "less", 6), {}),
    "zip": ("zip_select", (5,), {"k1": 10, "k2": 6, "k3": 2, "level": 6, "workers": 1, "format": "sharegpt"}),
    "zip-repr": ("zip_select", (4,), {"k1": 8, "k2": 4, "k3": 2, "text": "repr", "columns": ["conversations"]}),
    "kcenter": ("kcenter_greedy", ("embedding", 6), {"init": 2, "seed": 1, "mode": "one-shot", "device": "cpu"}),
    "kcenter-indices": ("kcenter_greedy", ("embedding", 5), {"init": [0, 5], "device": "cpu"}),
    "kmeans": (
        "kmeans_select", ("embedding", 6),
        {"n_clusters": 3, "score_column": "n_tokens", "largest": False, "seed": 2, "niter": 7, "spherical": True},
    ),
    "kmeans-centroid": ("kmeans_select", ("embedding", 5), {"n_clusters": 2, "seed": 1}),
    "pre-experience": (
        "pre_experience_subset", (),
        {"n_clusters": 3, "per_cluster": 2, "low": 10.0, "high": 90.0, "seed": 1, "niter": 5},
    ),
    "pre-experience-clusters": ("pre_experience_subset", (), {"cluster_column": "cluster", "per_cluster": 3}),
}  # fmt: skip


def _select(case: str, pool: tuple[Dataset, dict[str, Any]]) -> Selection:
    name, args, kwargs = CASES[case]
    ds, source = pool
    return getattr(select, name)(ds, *args, **kwargs, source=source)


def test_every_selector_the_cli_offers_is_covered() -> None:
    covered = {getattr(select, name) for name, _, _ in CASES.values()}
    assert {WRAPPERS[cls] for cls in select.SELECTORS.values() if cls.cli} <= covered


def test_every_record_names_its_selector(pool: tuple[Dataset, dict[str, Any]]) -> None:
    """A record's method is the selector's name in `select.SELECTORS` (`hf-select select --method`)."""
    for case, (name, _, _) in CASES.items():
        fn = getattr(select, name)
        assert WRAPPERS[select.SELECTORS[_select(case, pool).record.method]] is fn, case


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_snippet_reproduces_the_selection(case: str, pool: tuple[Dataset, dict[str, Any]]) -> None:
    sel = _select(case, pool)
    python = _snippet(sel)
    assert "..." not in python and "# sel =" not in python  # nothing left for the reader to fill in
    fn, _ = _selector_call(python)
    assert fn is getattr(select, CASES[case][0])
    assert f"assert sel.record.indices_sha256 == {sel.record.indices_sha256!r}" in python
    namespace: dict[str, Any] = {}
    exec(compile(python, f"<card of {case}>", "exec"), namespace)  # the assert inside must hold
    assert namespace["sel"].indices.tolist() == sel.indices.tolist()


def test_centroid_cards_old_and_new(pool: tuple[Dataset, dict[str, Any]]) -> None:
    """`select.centroids` records method `centroid`, whose card shows the centroid method; an older record
    (method `within-clusters`, mode `centroid`) gets the same card text and a snippet that still reruns it."""
    sel = _select("centroid", pool)
    assert sel.record.method == "centroid" and sel.record.parameters["mode"] == "centroid"
    old = SelectionRecord.from_dict({**json.loads(sel.record.to_json()), "method": "within-clusters"})
    for record in (sel.record, old):
        card = str(build_card(sel.dataset, record))
        assert "### Nearest to the centroids" in card and "Score within clusters" not in card
        assert "**nearest to the centroids**: the rows with the smallest `cluster_distance`" in card
        assert "centroid" in yaml.safe_load(card.split("---")[1])["tags"]
        python = re.findall(r"```python\n(.*?)\n```", card[card.index("## Reproduce it") :], re.DOTALL)[0]
        fn, _ = _selector_call(python)
        assert fn is select.centroids
        exec(compile(python, "<card of centroid>", "exec"), {})
    score = _select("within-clusters", pool)  # a score within clusters keeps its own method text
    card = str(build_card(score.dataset, score.record))
    assert "### Score within clusters" in card and "Nearest to the centroids" not in card


def test_a_changed_record_fails_its_own_check(pool: tuple[Dataset, dict[str, Any]]) -> None:
    """The check is real: a record whose parameters do not match its indices fails when run."""
    sel = _select("kcenter", pool)
    sel.record.parameters["mode"] = "greedy"  # the picks were one-shot
    with pytest.raises(AssertionError):
        exec(compile(_snippet(sel), "<card>", "exec"), {})


def test_diverse_evol_with_user_steps_says_what_to_supply(pool: tuple[Dataset, dict[str, Any]]) -> None:
    """User-supplied train/embed callables cannot be rebuilt: the call is shown, commented, never faked."""
    ds, source = pool

    def my_train(state: Any, rows: Dataset) -> int:
        return (state or 0) + 1

    def my_embed(state: int, rows: Dataset) -> np.ndarray:
        return np.random.default_rng(state).standard_normal((len(rows), 3)).astype(np.float32)

    sel = select.diverse_evol(
        ds, init=3, n_query=2, rounds=2, train_step=my_train, embed=my_embed, seed=4, mode="greedy", source=source
    )
    python = _snippet(sel)
    code_lines = [line for line in python.splitlines() if line.strip() and not line.startswith("#")]
    assert not any(re.search(r"\bsel\b", line) for line in code_lines)  # nothing pretends to run it
    assert "my_train" in python and "my_embed" in python
    call = "\n".join(line[2:] for line in python.splitlines() if line.startswith(("# selector =", "#     ", "# )")))
    fn, node = _selector_call(call)
    assert fn is select.diverse_evol
    values = {k.arg: ast.unparse(k.value) for k in node.keywords}
    assert values == {
        "init": "3", "n_query": "2", "rounds": "2", "train_step": "train_step", "embed": "embed", "seed": "4",
        "mode": "'greedy'",
    }  # fmt: skip
    assert f"# assert sel.record.indices_sha256 == {sel.record.indices_sha256!r}" in python


def test_diverse_evol_with_the_default_steps_reruns(pool: tuple[Dataset, dict[str, Any]], tiny_model: str) -> None:
    """The default steps are rebuilt from their recorded fields; on CPU the training is deterministic, so
    the snippet's check holds."""
    ds, source = pool
    train = SFTTrainStep(model=tiny_model, learning_rate=1e-3, batch_size=4, max_length=64)
    embed = MeanHiddenEmbed(tokenizer=tiny_model, max_length=64)
    sel = select.diverse_evol(ds, init=3, n_query=2, rounds=1, seed=2, train_step=train, embed=embed, source=source)
    python = _snippet(sel)
    assert "from hf_select.select.diverse_evol import MeanHiddenEmbed, SFTTrainStep" in python
    assert "train_step = SFTTrainStep(" in python and "embed = MeanHiddenEmbed(" in python
    fn, _ = _selector_call(python)
    assert fn is select.diverse_evol
    namespace: dict[str, Any] = {}
    exec(compile(python, "<card of diverse-evol>", "exec"), namespace)
    assert namespace["sel"].indices.tolist() == sel.indices.tolist()


# ---------------------------------------------------------------------------------------------------
# A token budget counted in another column than `n_tokens`

TOKEN_CASES: dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]] = {  # case: (selector, arguments, keywords)
    "top-k": ("top_k", ("ifd", "120 tokens"), {}),
    "zip": ("zip_select", ("120 tokens",), {"k1": 10, "k2": 6, "k3": 2, "workers": 1}),
    "kcenter": ("kcenter_greedy", ("embedding", "120 tokens"), {"seed": 1, "device": "cpu"}),
}


@pytest.fixture(scope="module")
def token_pool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, dict[str, Any]]:
    """The pool with a second token count, `my_tokens`, longest where `n_tokens` is shortest."""
    rows = _rows()
    for row in rows:
        row["my_tokens"] = 60.0 - 2 * row["n_tokens"]
    path = tmp_path_factory.mktemp("token-pool") / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    loaded = load_pool(str(path))
    return loaded.dataset, loaded.source


def test_every_selector_takes_a_token_column() -> None:
    """The snippet passes `token_column=` to whichever selector made the record: each must accept it."""
    selectors = {*select.SELECTORS.values(), select.pre_experience_subset, select.diverse_evol}
    for fn in selectors:
        assert "token_column" in inspect.signature(fn).parameters, fn.__name__


@pytest.mark.parametrize("case", sorted(TOKEN_CASES))
def test_a_token_budget_in_a_custom_column_reproduces(case: str, token_pool: tuple[Dataset, dict[str, Any]]) -> None:
    name, args, kwargs = TOKEN_CASES[case]
    ds, source = token_pool
    sel = getattr(select, name)(ds, *args, **kwargs, token_column="my_tokens", source=source)
    default = getattr(select, name)(ds, *args, **kwargs, source=source)
    assert sel.record.indices_sha256 != default.record.indices_sha256  # the column matters to the picks
    assert sel.record.parameters["token_column"] == "my_tokens"
    assert sel.record.kept["tokens"] == int(np.sum(np.array(ds["my_tokens"])[sel.indices]))
    assert "token_column" not in default.record.parameters  # default records are unchanged
    python = _snippet(sel)
    fn, node = _selector_call(python)
    assert fn is getattr(select, name)
    assert {k.arg: ast.literal_eval(k.value) for k in node.keywords}["token_column"] == "my_tokens"
    assert "token_column" not in _snippet(default)
    namespace: dict[str, Any] = {}
    exec(compile(python, f"<card of {case} with my_tokens>", "exec"), namespace)  # the assert inside must hold
    assert namespace["sel"].indices.tolist() == sel.indices.tolist()


def test_the_card_counts_tokens_in_the_recorded_column(token_pool: tuple[Dataset, dict[str, Any]]) -> None:
    ds, source = token_pool
    sel = select.top_k(ds, "ifd", "100 tokens", token_column="my_tokens", source=source)
    card = str(build_card(sel.dataset, sel.record, pool=ds))
    assert "`my_tokens`:" in card and "`n_tokens`:" not in card  # the statistics of the recorded column
    assert "`n_tokens`:" in str(build_card(sel.dataset, sel.record, pool=ds, token_column="n_tokens"))


def test_snippet_without_a_recorded_source_says_so() -> None:
    """A pool built in memory and selected without `source=` has no dataset to load: the snippet says so
    instead of loading a path that does not exist."""
    from datasets import Dataset

    from hf_select import select
    from hf_select.reproduce import python_snippet

    ds = Dataset.from_dict({"x": [3.0, 1.0, 2.0]})
    sel = select.top_k(ds, "x", 2)
    sel.record.source = {k: v for k, v in sel.record.source.items() if k != "dataset"}
    snippet = python_snippet(sel.record)
    assert "load_pool('None')" not in snippet and "the record names no dataset or path" in snippet


def test_a_crafted_config_key_never_becomes_code(pool: tuple[Dataset, dict[str, Any]], tmp_path: Any) -> None:
    """Scorer and clustering config keys reach the card's Python: a key that is not a field of the class the
    entry names (e.g. code smuggled into a scored folder's `hf_select.json`) is refused, by the card and by
    `hf-select select`, before anything is written."""
    from hf_select import InputError
    from hf_select.cli import main

    ds, source = pool
    crafted = "tokenizer=__import__('os').system('touch PWNED') or 'x'"
    entries = {
        "key": [{"method": "token-length", "config": {"tokenizer": "tok", crafted: 1}}],
        "method": [{"method": "evil", "config": {"x": 1}}],
        "clustering": [{"method": "kmeans", "config": {"n_clusters": 3, "seed=0); import os; (": 1}}],
    }
    for scorers in entries.values():
        sel = select.top_k(ds, "n_tokens", 3, source=source, scorers=scorers)
        with pytest.raises(InputError, match="refusing|unknown scorer"):
            build_card(sel.dataset, sel.record)
    folder = tmp_path / "scored"
    ds.save_to_disk(str(folder))
    (folder / "hf_select.json").write_text(json.dumps({"source": source, "scorers": entries["key"]}))
    out = tmp_path / "out"
    argv = ["select", str(folder), "--method", "top-k", "--column", "n_tokens", "--budget", "3", "-o", str(out)]
    assert main(argv) == 2
    assert not out.exists() and not (tmp_path / "PWNED").exists()
