"""The Python code that rebuilds a selection from its record (the card's "Reproduce it" snippet).

`python_snippet(record)` is a self-contained script: it loads the pool the record names, re-runs the
scorers and the clustering the record lists, rebuilds the selector from the registry with the fields its
record holds (`SELECTORS[method](**fields)`, see `Selector.arguments_from_record`), fits it, and ends
with `assert sel.record.indices_sha256 == <the recorded digest>`,
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
    from hf_select import SELECTORS
    from hf_select.pool import load_pool
    <BLANKLINE>
    pool = load_pool('pool.jsonl').dataset
    selector = SELECTORS['top-k'](budget=2, column='n_tokens', largest=True, min_value=None, max_value=None)
    sel = selector.fit(pool)
    assert sel.record.indices_sha256 == 'c571327cb01ac1de6972713cbf6cc1fc3c2cab8b581ee0bc3fe6d8b56963fd5b'
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .cluster import KMeans
from .errors import InputError
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
    imports = "SCORERS, SELECTORS" if any(not is_clustering(e) for e in scorers) else "SELECTORS"
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
        config = {k: v for k, v in checked_config(entry).items() if v is not None}
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
    setup, arguments, notes, runnable = _selector_arguments(record)
    lines += [*setup, *(f"# {note}" for note in notes)]
    call_lines = [
        f"selector = {_call(f'SELECTORS[{selector_name(record)!r}]', [], arguments)}",
        "sel = selector.fit(pool)",
        f"assert sel.record.indices_sha256 == {record.indices_sha256!r}",
    ]
    if not runnable:  # the record cannot rebuild it: say so, in comments, rather than pretend
        call_lines = [f"# {line}" for line in "\n".join(call_lines).split("\n")]
    return "\n".join([*lines, *call_lines])


def checked_config(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A scorer or clustering entry's configuration, refused (`InputError`) unless every key is a field of the
    class it names: the keys are written into Python code that a card's reader runs."""
    from .scorers import SCORERS

    config = dict(entry.get("config") or {})
    cls = KMeans if is_clustering(entry) else SCORERS.get(entry.get("method"))
    if cls is None:
        raise InputError(f"the record names an unknown scorer {_comment_text(entry.get('method'), 80)}")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    bad = [key for key in config if not (isinstance(key, str) and key.isidentifier() and key in known)]
    if bad:
        raise InputError(
            f"the record's {entry.get('method')!r} configuration has keys that are not {cls.__name__} fields: "
            f"{_comment_text(bad, 200)}; refusing to write them into the card's Python code"
        )
    return config


def selector_name(record: SelectionRecord) -> str:
    """The name of the selector that made `record` (its `select.SELECTORS` name): the record's method,
    except `centroid` for the older records of `select.centroids` (method `within-clusters`, parameter
    `mode: "centroid"`)."""
    if record.method == "within-clusters" and (record.parameters or {}).get("mode") == "centroid":
        return "centroid"
    return record.method


def is_clustering(entry: Mapping[str, Any]) -> bool:
    """A scorers entry written by `hf-select cluster` (`KMeans.describe()`), not by a scorer."""
    return entry.get("method") == KMeans.method and "n_clusters" in (entry.get("config") or {})


def _selector_arguments(record: SelectionRecord) -> tuple[list[str], dict[str, Any], list[str], bool]:
    """(setup lines, the selector's constructor arguments, notes, whether the record can rebuild it). The
    arguments are the selector's own (`Selector.arguments_from_record`): every registered selector rebuilds,
    DiverseEvol with its default steps too."""
    from .select import SELECTORS

    method = selector_name(record)
    cls = SELECTORS.get(method)
    if cls is None:
        notes = [f"{_comment_text(method, 80)} cannot be rebuilt from its record; its parameters are in selection.json"]
        return [], {}, notes, False
    arguments: dict[str, Any] = cls.arguments_from_record(dataclasses.replace(record, method=method))
    params = record.parameters or {}
    if method == "zip" and params.get("zlib"):
        zlib_version = LINE_BREAKS.sub(" ", str(params["zlib"]))[:40]
        return [], arguments, [f"ZIP's picks follow zlib's output; recorded with zlib {zlib_version}"], True
    if method == "kcenter":
        notes = ["the device it ran on: CPU and CUDA distances can break a float32 near-tie differently"]
        return [], arguments, notes, True
    if method == "diverseevol":
        arguments = {**arguments, "train_step": _Source("train_step"), "embed": _Source("embed")}
        steps = _diverse_evol_steps(params)
        if steps is None:
            notes = [
                "DiverseEvol ran with user-supplied steps, which the record cannot rebuild:",
                f"train_step: {_comment_text(params.get('train_step'))}",
                f"embed: {_comment_text(params.get('embed'))}",
                "define train_step(model_state, rows) -> model_state and embed(model_state, pool) -> [N, d], then:",
            ]
            return [], arguments, notes, False
        imports = ", ".join(sorted(name for name, _ in steps))
        setup = [f"from hf_select.select.diverse_evol import {imports}", *(line for _, line in steps)]
        notes = [
            "DiverseEvol trains the model every round: the digest matches where that training is",
            "bit-for-bit reproducible (same hardware, library versions and seeds).",
        ]
        return setup, arguments, notes, True
    return [], arguments, [], True


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


def _comment_text(value: Any, max_chars: int = 160) -> str:
    return LINE_BREAKS.sub(" ", repr(value))[:max_chars]


__all__ = ["checked_config", "is_clustering", "python_snippet", "selector_name"]
