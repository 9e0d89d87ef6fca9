"""Every selector's subset, `selection.json` and card, and the demo's, are byte-identical to the pinned ones
(`tests/fixtures/pinned/`, regenerated only on purpose by `python tests/pinned_outputs.py --write`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pinned_outputs import generate, read


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    return generate(tmp_path_factory.mktemp("pinned"))


def test_the_same_cases_are_produced(produced: dict[str, dict[str, str]]) -> None:
    assert sorted(produced) == sorted(read())


@pytest.mark.parametrize("case", sorted(read()))
def test_outputs_are_byte_identical(case: str, produced: dict[str, dict[str, str]], tmp_path: Path) -> None:
    expected = read()[case]
    assert sorted(produced[case]) == sorted(expected)
    for name, content in expected.items():
        assert produced[case][name] == content, f"{case}/{name} changed"
