"""The embedded default job: the 1,000 longest ShareGPT conversations against 5 random controls.

It runs through the same code paths as a user's own job: the pool loads as a JSONL file and the
SmolLM2 tokenizer as a local `from_pretrained` folder.

Example:
    >>> from hf_select.demo import run_demo
    >>> result = run_demo("hf-select-demo", budget=1000, controls=5)  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from . import embedded, select
from .pool import load_pool, prepare_output, save_scored, staged_output
from .save import save_selection
from .scorers import TokenLengthScorer
from .summary import describe, table


def run_demo(
    output: str | Path = "hf-select-demo",
    *,
    budget: int | None = None,
    controls: int = 5,
    seed: int = 0,
    num_proc: int | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Score the embedded pool for token length, select the `budget` longest rows (default 1,000, or a
    tenth of the rows with `limit`) and `controls` random subsets of the same size, write them under
    `output`, and return their summaries and folders."""
    out = prepare_output(output, [], overwrite=overwrite)
    pool, source, _ = load_pool(embedded.SHAREGPT, limit=limit)
    if budget is None:
        budget = 1000 if limit is None else max(1, min(1000, len(pool) // 10))
    scorer = TokenLengthScorer(tokenizer=embedded.SMOLLM2)
    scored = scorer.map(pool, num_proc=num_proc)
    entries = [scorer.describe()]
    longest = select.top_k(scored, "n_tokens", budget, source=source, scorers=entries)
    longest.record.command = command
    randoms = select.random_controls(
        scored, len(longest), n_controls=controls, seed=seed, column="n_tokens", source=source, scorers=entries
    )
    summaries = {"pool": describe(scored), f"longest {budget}": describe(longest.dataset)}
    written = {"scored pool": out / "pool-scored", f"longest {budget}": out / f"longest-{budget}"}
    with staged_output(out, [], overwrite=overwrite) as folder:
        save_scored(scored, folder / "pool-scored", source=source, scorers=entries)
        save_selection(
            longest.dataset, folder / f"longest-{budget}", longest.record, pool=scored, random_baseline=randoms[0]
        )
        for control in randoms:
            name = f"random seed {control.record.seed}"
            control.record.command = command
            save_selection(control.dataset, folder / f"random-seed-{control.record.seed}", control.record, pool=scored)
            written[name] = out / f"random-seed-{control.record.seed}"
            summaries[name] = describe(control.dataset)
    return {"summaries": summaries, "written": written, "scorer": entries[0]}


def print_demo(result: dict[str, Any], file: Any = sys.stdout) -> None:
    print(table(result["summaries"]), file=file)
    print("\nFiles written:", file=file)
    for name, path in result["written"].items():
        print(f"  {name:<16} {path}", file=file)
