"""One process-wide cache of loaded models: every engine, tokenizer bundle and scorer resource set.

A scorer's resources (its encoder and engine, or several engines for model-level SelectIT) are loaded once
per process and device and reused by every batch and every scorer that asks for the same thing. The cache
keeps the `capacity` most recently used entries alive, and also finds any entry still referenced from
elsewhere (e.g. an engine held by a cached scorer's resources), so an entry in use is never loaded twice
and a scorer that needs more models than `capacity` does not reload them on every batch.

Example:
    >>> cache = ModelCache(capacity=1)
    >>> class Loaded: ...
    >>> a = cache.get("a", Loaded)
    >>> cache.get("a", Loaded) is a, cache.loads
    (True, 1)
"""

from __future__ import annotations

import contextlib
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ModelCache:
    """A least-recently-used cache of loaded things, keyed by what identifies them."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self.loads = 0  # how many times a loader ran (tests read it)
        self._held: OrderedDict[Hashable, Any] = OrderedDict()
        self._alive: weakref.WeakValueDictionary[Hashable, Any] = weakref.WeakValueDictionary()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The entry for `key`, loaded with `load()` only when neither held nor alive elsewhere."""
        value = self._held.get(key)
        if value is None:
            value = self._alive.get(key)
        if value is None:
            value = load()
            self.loads += 1
            with contextlib.suppress(TypeError):  # not weak-referenceable: held while in the LRU only
                self._alive[key] = value
        self._held[key] = value
        self._held.move_to_end(key)
        while len(self._held) > self.capacity:
            self._held.popitem(last=False)
        return value

    def clear(self) -> None:
        self._held.clear()
        self._alive.clear()


MODELS = ModelCache()
"""The process's one cache: `hf_select.engine.load_engine` and `Scorer.resources` both use it."""
