"""The outputs that refactors must keep byte for byte: every selector's subset, `selection.json` and dataset
card on a slice of the embedded demo pool, and the demo's own folders.

`python tests/pinned_outputs.py --write` regenerates `tests/fixtures/pinned/` (do it only in a commit whose
message says which output changed on purpose, and why); `tests/test_pinned_outputs.py` compares.

What varies from run to run is normalised away and nothing else: `created_at`, faiss's thread count,
timings, the dataset fingerprints of in-memory pools, and temporary folder paths. The subset is pinned by a
sha256 of its rows (as JSON lines), the record and the card as text.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pinned"
ROWS = 400


def _rows_digest(folder: Path) -> str:
    from datasets import load_dataset

    files = sorted(str(p) for p in (folder / "data").glob("*.parquet"))
    ds = load_dataset("parquet", data_files=files, split="train")
    digest = hashlib.sha256()
    for row in ds:
        digest.update(json.dumps(row, sort_keys=True, default=repr).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _normalise(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp), "<tmp>")
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", "<time>", text)  # created_at
    text = re.sub(r'"threads": \d+', '"threads": <cores>', text)  # faiss's threads: the machine's cores
    text = re.sub(r'(_seconds": )[0-9.]+', r"\1<seconds>", text)  # DiverseEvol's timings
    return re.sub(r"\b[0-9a-f]{16}\b", "<fingerprint>", text)  # datasets fingerprints (sha256s are 64)


def _folder_outputs(folder: Path, tmp: Path) -> dict[str, str]:
    return {
        "rows.sha256": _rows_digest(folder) + "\n",
        "selection.json": _normalise((folder / "selection.json").read_text(encoding="utf-8"), tmp),
        "README.md": _normalise((folder / "README.md").read_text(encoding="utf-8"), tmp),
    }


def _scored_pool() -> Any:
    from hf_select import embedded
    from hf_select.cluster import KMeans
    from hf_select.pool import load_pool
    from hf_select.scorers import TokenLengthScorer

    pool, source, _ = load_pool(embedded.SHAREGPT)
    pool = pool.select(range(ROWS))
    source.update(num_rows=len(pool), fingerprint=pool._fingerprint, limit=ROWS)
    scorer = TokenLengthScorer(tokenizer=embedded.SMOLLM2)
    scored = pool.map(scorer, batched=True)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((ROWS, 8)).astype(np.float32)
    scored = scored.add_column("embedding", [v.tolist() for v in vectors])
    scored = scored.add_column("ifd", rng.uniform(0.3, 1.3, ROWS).tolist())
    scored = scored.add_column("prompt_ppl", rng.uniform(1.0, 30.0, ROWS).tolist())
    clustered = KMeans(n_clusters=6, column="embedding", seed=0).fit(scored)
    return scored, clustered, source, [scorer.describe()]


def _selections(scored: Any, clustered: Any, source: dict, scorers: list) -> dict[str, Callable[[], Any]]:
    from hf_select import select

    common = {"source": source, "scorers": scorers}

    def evol_embed(state: int, ds: Any) -> np.ndarray:
        return np.random.default_rng(100 + state).standard_normal((len(ds), 4)).astype(np.float32)

    def evol_train(state: Any, rows: Any) -> int:
        return (state or 0) + 1

    return {
        "top-k": lambda: select.top_k(scored, "n_tokens", 40, **common),
        "top-k-smallest-tokens": lambda: select.top_k(
            scored, "n_tokens", "20k tokens", largest=False, min_value=50, **common
        ),
        "threshold": lambda: select.threshold(scored, "n_tokens", min_value=100, max_value=2000, **common),
        "random": lambda: select.random(scored, 0.1, seed=3, column="n_tokens", **common),
        "ifd": lambda: select.ifd_top_k(scored, 30, **common),
        "within-clusters": lambda: select.within_clusters(clustered, "cluster", "n_tokens", 30, **common),
        "within-clusters-tokens": lambda: select.within_clusters(
            clustered, "cluster", "n_tokens", "30k tokens", largest=False, **common
        ),
        "centroid": lambda: select.centroids(clustered, 25, **common),
        "kmeans-score": lambda: select.kmeans_select(
            scored, "embedding", 30, n_clusters=5, score_column="n_tokens", **common
        ),
        "kmeans-centroid": lambda: select.kmeans_select(scored, "embedding", 30, n_clusters=5, seed=2, **common),
        "kcenter": lambda: select.kcenter_greedy(scored, "embedding", 30, init=3, seed=1, device="cpu", **common),
        "kcenter-one-shot": lambda: select.kcenter_greedy(
            scored, "embedding", 30, seed=1, mode="one-shot", device="cpu", **common
        ),
        "zip": lambda: select.zip_select(scored, 20, k1=60, k2=12, k3=4, workers=1, **common),
        "zip-repr-tokens": lambda: select.zip_select(
            scored, "15k tokens", k1=40, k2=8, k3=3, text="repr", workers=1, **common
        ),
        "diverseevol": lambda: _with_clock(
            lambda: select.diverse_evol(
                scored, init=5, n_query=4, rounds=2, seed=0, train_step=evol_train, embed=evol_embed, **common
            )
        ),
        "pre-experience": lambda: select.pre_experience_subset(
            scored, embedding_column="embedding", n_clusters=4, ppl_column="prompt_ppl", per_cluster=3, **common
        ),
    }


def _with_clock(make: Callable[[], Any]) -> Any:
    """Run `make` with DiverseEvol's clock ticking one second per reading: its recorded timings (and the card
    cell that cuts their JSON at a fixed length) are then the same on a fast or a loaded machine."""
    from unittest import mock

    with mock.patch("hf_select.select.diverse_evol.perf_counter", side_effect=itertools.count().__next__):
        return make()


def generate(tmp: Path) -> dict[str, dict[str, str]]:
    """{case: {file: normalised content}} for every pinned case, written under `tmp`."""
    from hf_select import select
    from hf_select.demo import run_demo
    from hf_select.save import save_selection

    outputs: dict[str, dict[str, str]] = {}
    scored, clustered, source, scorers = _scored_pool()
    baseline = select.random(scored, 40, seed=0, column="n_tokens", source=source, scorers=scorers)
    for name, make in _selections(scored, clustered, source, scorers).items():
        sel = make()
        pool = clustered if name in ("within-clusters", "within-clusters-tokens", "centroid") else scored
        folder = save_selection(sel.dataset, tmp / name, sel.record, pool=pool, random_baseline=baseline)
        outputs[name] = _folder_outputs(folder, tmp)
    demo = run_demo(tmp / "demo", limit=ROWS, controls=2, command="hf-select demo --limit 400 --controls 2")
    for name, folder in demo["written"].items():
        if name != "scored pool":
            outputs["demo-" + name.replace(" ", "-")] = _folder_outputs(Path(folder), tmp)
    return outputs


def write(outputs: dict[str, dict[str, str]]) -> None:
    for case, files in outputs.items():
        for name, content in files.items():
            path = FIXTURES / case / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")


def read() -> dict[str, dict[str, str]]:
    return {
        case.name: {p.name: p.read_text(encoding="utf-8") for p in sorted(case.iterdir())}
        for case in sorted(FIXTURES.iterdir())
    }


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/pinned_outputs.py --write")
    with tempfile.TemporaryDirectory() as tmp:
        write(generate(Path(tmp)))
    print(f"wrote {FIXTURES}")
