"""The catalogue of bad inputs, docs/HOSTILE_INPUT.md, cites only tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

CATALOGUE = Path(__file__).resolve().parent.parent / "docs" / "HOSTILE_INPUT.md"


def test_every_test_the_catalogue_names_exists():
    """docs/HOSTILE_INPUT.md cites tests as `file::test_name`: each must be a real test."""
    cited = re.findall(r"`(\w+)::(test_\w+)", CATALOGUE.read_text(encoding="utf-8"))
    assert len(cited) > 80
    tests = CATALOGUE.parent.parent / "tests"
    missing = []
    for short, name in set(cited):
        source = (tests / f"test_{short}.py").read_text(encoding="utf-8")
        if not re.search(rf"^def {name}\(", source, flags=re.MULTILINE):
            missing.append(f"{short}::{name}")
    assert not missing, missing
