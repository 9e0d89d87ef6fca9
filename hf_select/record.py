"""The selection record (`selection.json`): everything needed to trust and reproduce a selection.

The dataset card is rendered from it, so it is complete and versioned (`schema_version`).

Example:
    >>> from hf_select.record import SelectionRecord
    >>> record = SelectionRecord.load("out/longest/selection.json")  # doctest: +SKIP
    >>> record.kept["rows"], record.budget["requested"]  # doctest: +SKIP
    (1000, {'kind': 'count', 'value': 1000})
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InputError

SCHEMA_VERSION = 1


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class SelectionRecord:
    """What a selector did, to what, with what scores."""

    method: str
    parameters: dict[str, Any]
    budget: dict[str, Any]
    """`{"requested": {"kind", "value"} | None, "achieved": {"rows", "tokens"}}`."""
    seed: int | None
    pool: dict[str, Any]
    """`{"rows", "tokens"}` of the whole pool (tokens None without a token column)."""
    kept: dict[str, Any]
    """`{"rows", "tokens"}` of the subset."""
    indices_sha256: str
    """sha256 of the selected pool indices (ascending, little-endian int64): two selections agree iff equal."""
    source: dict[str, Any] = field(default_factory=dict)
    """`{"dataset", "revision", "fingerprint", "split", "config", "num_rows"}`."""
    scorers: list[dict[str, Any]] = field(default_factory=list)
    """One entry per scorer that made a column used here: method, config, fingerprint, tokenizer/model, template."""
    command: str | None = None
    """The CLI command that made it, when it came from the CLI."""
    schema_version: int = SCHEMA_VERSION
    hf_select_version: str = __version__
    created_at: str = field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=_json_default) + "\n"

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / "selection.json"
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelectionRecord:
        if not isinstance(data, dict):
            raise InputError(f"a selection record is a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(
                f"selection record schema_version {version!r} is not supported (this hf-select reads {SCHEMA_VERSION})"
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"selection record has unknown fields {unknown}")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise InputError(f"selection record is missing fields {missing}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SelectionRecord:
        path = Path(path)
        if path.is_dir():
            path = path / "selection.json"
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as err:
            raise InputError(f"no selection record at {path}") from err
        except json.JSONDecodeError as err:
            raise InputError(f"{path} is not valid JSON: {err}") from err


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write {type(value).__name__} to a selection record")
