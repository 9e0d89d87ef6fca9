"""Load a tokenizer once per process, from a local folder, a Hub id or an `embedded:` name."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from typing import Any

from . import embedded
from .errors import InputError


@lru_cache(maxsize=4)
def load_tokenizer(name_or_path: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """`AutoTokenizer.from_pretrained`, cached per process (scorers call it once per worker)."""
    from transformers import AutoTokenizer

    path = embedded.resolve(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load tokenizer {name_or_path!r}: {err}") from err


def hub_commit(repo_id: str, revision: str | None = None) -> str | None:
    """The commit sha a Hub model repo's revision points at; None when offline, private or missing."""
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(repo_id, revision=revision).sha
    except Exception:  # the record then says it is unknown
        return None


def tokenizer_provenance(name_or_path: str, revision: str | None = None) -> dict[str, Any]:
    """What identifies a tokenizer in a selection record: its name, revision and a content hash."""
    info: dict[str, Any] = {"name_or_path": name_or_path, "revision": revision}
    path = embedded.resolve(name_or_path)
    if os.path.isdir(path):
        digest = hashlib.sha256()
        for fname in sorted(os.listdir(path)):
            if fname.startswith("tokenizer") or fname in ("special_tokens_map.json", "chat_template.jinja"):
                with open(os.path.join(path, fname), "rb") as f:
                    digest.update(fname.encode() + b"\0" + f.read())
        info["sha256"] = digest.hexdigest()
    else:
        info["commit"] = hub_commit(path, revision)
    return info


def model_provenance(name_or_path: str, revision: str | None = None) -> dict[str, Any]:
    """What identifies a model in a selection record: name, revision, and the Hub commit or, for a local
    folder, the sha256 of its config and the names and sizes of its weight files (hashing gigabytes of
    weights on every run would cost more than it tells)."""
    info: dict[str, Any] = {"name_or_path": name_or_path, "revision": revision}
    path = embedded.resolve(name_or_path)
    if os.path.isdir(path):
        config = os.path.join(path, "config.json")
        if os.path.exists(config):
            with open(config, "rb") as f:
                info["config_sha256"] = hashlib.sha256(f.read()).hexdigest()
        info["weights"] = {
            f: os.path.getsize(os.path.join(path, f))
            for f in sorted(os.listdir(path))
            if f.endswith((".safetensors", ".bin", ".gguf"))
        }
    else:
        info["commit"] = hub_commit(path, revision)
    return info
