"""The Python code that rebuilds a selection from its record (the card's "Reproduce it" snippet).

`python_snippet(record)` is a self-contained script: it loads the pool the record names, re-runs the
scorers and the clustering the record lists, calls the selector with the values its record holds (the
selector's real signature), and ends with `assert sel.record.indices_sha256 == <the recorded digest>`,
so running it checks that the same rows come back. A record that cannot rebuild its selection (a
DiverseEvol run with user-supplied steps, an unknown method) gets the call commented out, with notes
saying what is missing, never a call that pretends to run.

Example:
    >>> from datasets import Dataset
    >>> from hf_select import select
    >>> from hf_select.reproduce import python_snippet
    >>> pool = Dataset.from_dict({"n_tokens": [120.0, 40.0, 300.0, 80.0]})
    >>> sel = select.top_k(pool, "n_tokens", 2, source={"dataset": "pool.jsonl"})
    >>> print(python_snippet(sel.record))
    from hf_select import select
    from hf_select.pool import load_pool
    <BLANKLINE>
    pool = load_pool('pool.jsonl').dataset
    sel = select.top_k(pool, 'n_tokens', 2, largest=True, min_value=None, max_value=None)
    assert sel.record.indices_sha256 == 'c571327cb01ac1de6972713cbf6cc1fc3c2cab8b581ee0bc3fe6d8b56963fd5b'
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .cluster import KMeans
from .record import SelectionRecord

# The characters that end a line somewhere: a value written into a comment (or a card's table cell) stays on
# its line. The card uses it too.
LINE_BREAKS = re.compile("\r\n|[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_ONE_LINE = 100
"""A call longer than this is written one argument per line."""


def python_snippet(record: SelectionRecord) -> str:
    """The Python source that rebuilds the selection `record` describes and checks its indices' digest."""
    source = record.source or {}
    scorers = [e for e in record.scorers if isinstance(e, Mapping) and e.get("method")]
    imports = "SCORERS, select" if any(not is_clustering(e) for e in scorers) else "select"
    lines = [f"from hf_select import {imports}"]
    if any(is_clustering(e) for e in scorers):
        lines.append("from hf_select.cluster import KMeans")
    lines += ["from hf_select.pool import load_pool", ""]
    if source.get("dataset"):
        args = [repr(str(source["dataset"]))]
        args += [f"{key}={source[key]!r}" for key in ("split", "revision", "config") if source.get(key)]
        lines.append(f"pool = load_pool({', '.join(args)}).dataset")
    else:  # e.g. a Dataset built in memory and selected without source=
        lines.append("pool = ...  # the pool it was selected from: the record names no dataset or path")
    if isinstance(source.get("limit"), int):
        lines.append(f"pool = pool.select(range({source['limit']}))  # the record's row limit")
    for entry in scorers:
        config = {k: v for k, v in (entry.get("config") or {}).items() if v is not None}
        kwargs = "".join(f"\n    {k}={_python_literal(v)}," for k, v in config.items())
        if is_clustering(entry):
            lines.append(f"pool = KMeans({kwargs}\n).fit(pool)  # adds the cluster and distance columns")
            continue
        lines.append(
            f"scorer = SCORERS[{entry['method']!r}]({kwargs}\n)"
            if kwargs
            else f"scorer = SCORERS[{entry['method']!r}]()"
        )
        lines.append("pool = pool.map(scorer, batched=True)")
    setup, call, notes, runnable = _selector_call(record)
    lines += [*setup, *(f"# {note}" for note in notes)]
    call_lines = [f"sel = {call}", f"assert sel.record.indices_sha256 == {record.indices_sha256!r}"]
    if not runnable:  # the record cannot rebuild it: say so, in comments, rather than pretend
        call_lines = [f"# {line}" for line in "\n".join(call_lines).split("\n")]
    return "\n".join([*lines, *call_lines])


def selector_name(record: SelectionRecord) -> str:
    """The name of the selector that made `record` (its `select.SELECTORS` name for those the CLI offers):
    the record's method, except `centroid` for the older records of `select.centroids` (method
    `within-clusters`, parameter `mode: "centroid"`)."""
    if record.method == "within-clusters" and (record.parameters or {}).get("mode") == "centroid":
        return "centroid"
    return record.method


def is_clustering(entry: Mapping[str, Any]) -> bool:
    """A scorers entry written by `hf-select cluster` (`KMeans.describe()`), not by a scorer."""
    return entry.get("method") == KMeans.method and "n_clusters" in (entry.get("config") or {})


def _selector_call(record: SelectionRecord) -> tuple[list[str], str, list[str], bool]:
    """(setup lines, the call that gives `sel`, notes, whether the record can rebuild it). The call is the
    selector's real signature with the values its record holds; every selector the CLI offers is
    runnable, as are pre-experience and DiverseEvol with its default steps."""
    params = dict(record.parameters or {})
    get = params.get
    token_column = get("token_column")  # recorded only when it is not the default `n_tokens`

    def call(function: str, args: Sequence[str], kwargs: Mapping[str, Any]) -> str:
        """The selector's call; every selector takes `token_column`, the column a token budget is counted in."""
        return _call(function, args, {**kwargs, "token_column": token_column} if token_column is not None else kwargs)

    budget = _budget_literal((record.budget or {}).get("requested"))
    method = selector_name(record)
    if method == "top-k":
        kwargs = {k: get(k) for k in ("largest", "min_value", "max_value")}
        return [], call("select.top_k", ["pool", repr(get("column")), budget], kwargs), [], True
    if method == "threshold":
        kwargs = {k: get(k) for k in ("min_value", "max_value")}
        return [], call("select.threshold", ["pool", repr(get("column"))], kwargs), [], True
    if method == "random":
        kwargs = {"seed": record.seed, "column": get("column")}
        return [], call("select.random", ["pool", budget], kwargs), [], True
    if method == "ifd":
        kwargs = {"column": get("column", "ifd"), "keep_above_one": bool(get("keep_above_one", False))}
        return [], call("select.ifd_top_k", ["pool", budget], kwargs), [], True
    if method == "centroid":
        kwargs = {"cluster_column": get("cluster_column"), "distance_column": get("score_column")}
        return [], call("select.centroids", ["pool", budget], kwargs), [], True
    if method == "within-clusters":
        args = ["pool", repr(get("cluster_column")), repr(get("score_column")), budget]
        return [], call("select.within_clusters", args, {"largest": get("largest", True)}), [], True
    if method == "zip":
        kwargs = {k: get(k) for k in ("k1", "k2", "k3", "text", "level")}
        kwargs.update({k: get(k) for k in ("columns", "format", "format_columns") if get(k) is not None})
        zlib_version = LINE_BREAKS.sub(" ", str(get("zlib")))[:40]
        notes = [f"ZIP's picks follow zlib's output; recorded with zlib {zlib_version}"] if get("zlib") else []
        return [], call("select.zip_select", ["pool", budget], kwargs), notes, True
    if method == "kcenter":
        kwargs = {
            "init": get("init_rows") if get("init") == "indices" else get("init"), "seed": record.seed,
            "mode": get("mode"), "metric": get("metric", "euclidean"), "device": get("device"),
        }  # fmt: skip
        notes = ["the device it ran on: CPU and CUDA distances can break a float32 near-tie differently"]
        return [], call("select.kcenter_greedy", ["pool", repr(get("column")), budget], kwargs), notes, True
    if method == "kmeans":
        config = (get("clustering") or {}).get("config") or {}
        by_score = get("mode") == "score"
        kwargs = {"n_clusters": get("n_clusters"), "score_column": get("score_column") if by_score else None}
        if by_score:
            kwargs["largest"] = get("largest", True)
        kwargs.update(seed=get("seed", record.seed), niter=config.get("niter", 20))
        kwargs["spherical"] = config.get("spherical", False)
        return [], call("select.kmeans_select", ["pool", repr(get("embedding_column")), budget], kwargs), [], True
    if method == "ifd-pre-experience":
        kwargs = {k: get(k) for k in ("ppl_column", "per_cluster", "low", "high")}
        if get("cluster_column") is not None:  # an existing cluster column: no k-means
            kwargs["cluster_column"] = get("cluster_column")
        else:
            config = (get("clustering") or {}).get("config") or {}
            kwargs.update(embedding_column=get("embedding_column"), n_clusters=config.get("n_clusters"))
            kwargs.update(seed=record.seed, niter=config.get("niter", 20))
        return [], call("select.pre_experience_subset", ["pool"], kwargs), [], True
    if method == "diverseevol":
        kwargs = {
            "init": get("init"), "n_query": get("n_query"), "rounds": get("rounds"),
            "train_step": _Source("train_step"), "embed": _Source("embed"), "seed": record.seed, "mode": get("mode"),
        }  # fmt: skip
        evol_call = call("select.diverse_evol", ["pool"], kwargs)
        steps = _diverse_evol_steps(params)
        if steps is None:
            notes = [
                "DiverseEvol ran with user-supplied steps, which the record cannot rebuild:",
                f"train_step: {_comment_text(get('train_step'))}",
                f"embed: {_comment_text(get('embed'))}",
                "define train_step(model_state, rows) -> model_state and embed(model_state, pool) -> [N, d], then:",
            ]
            return [], evol_call, notes, False
        imports = ", ".join(sorted(name for name, _ in steps))
        setup = [f"from hf_select.select.diverse_evol import {imports}", *(line for _, line in steps)]
        notes = [
            "DiverseEvol trains the model every round: the digest matches where that training is",
            "bit-for-bit reproducible (same hardware, library versions and seeds).",
        ]
        return setup, evol_call, notes, True
    notes = [f"{_comment_text(method, 80)} cannot be rebuilt from its record; its parameters are in selection.json"]
    return [], f"...  # {_comment_text(method, 80)}", notes, False


def _diverse_evol_steps(params: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    """[(class name, `name = Class(...)` source)] of DiverseEvol's two steps when both are the default
    ones (described by their dataclass fields), None when either is a user-supplied callable."""
    from .select.diverse_evol import MeanHiddenEmbed, SFTTrainStep

    classes: dict[str, type] = {"SFTTrainStep": SFTTrainStep, "MeanHiddenEmbed": MeanHiddenEmbed}
    steps = []
    for name in ("train_step", "embed"):
        described = params.get(name)
        if not isinstance(described, Mapping) or described.get("class") not in classes:
            return None
        config = {k: v for k, v in described.items() if k != "class"}
        if not set(config) <= {f.name for f in dataclasses.fields(classes[described["class"]]) if f.init}:
            return None
        steps.append((described["class"], f"{name} = {_call(described['class'], [], config)}"))
    return steps


class _Source(str):
    """Python source text (a variable name) for `_call`, written as is rather than as a literal."""

    __slots__ = ()


def _call(function: str, args: Sequence[str], kwargs: Mapping[str, Any]) -> str:
    """`function(*args, **kwargs)` as Python source: `args` are source text, `kwargs` values (as literals)."""
    parts = [*args, *(f"{k}={_python_literal(v)}" for k, v in kwargs.items())]
    one_line = f"{function}({', '.join(parts)})"
    if len(one_line) <= _ONE_LINE:
        return one_line
    return f"{function}(\n" + "".join(f"    {part},\n" for part in parts) + ")"


def _python_literal(value: Any) -> str:
    if isinstance(value, _Source):
        return str.__str__(value)
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"  # repr gives `inf`/`nan`, which are not Python literals
    return repr(value)


def _budget_literal(requested: Mapping[str, Any] | None) -> str:
    if not requested:
        return "None"
    if requested["kind"] == "tokens":
        return repr(f"{requested['value']} tokens")
    return repr(requested["value"])


def _comment_text(value: Any, max_chars: int = 160) -> str:
    return LINE_BREAKS.sub(" ", repr(value))[:max_chars]


__all__ = ["is_clustering", "python_snippet", "selector_name"]
