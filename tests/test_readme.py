"""The README's reading path: every file it lists exists and has the line count it states."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\|(?: \d+ \|)? `(minikto/[\w/]+\.py)` \| (\d+) \|", re.MULTILINE)


def _rows() -> list[tuple[str, int]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [(path, int(lines)) for path, lines in ROW.findall(text)]


def test_the_reading_path_lists_the_core_in_order():
    paths = [path for path, _ in _rows()]
    assert paths[:3] == ["minikto/backend.py", "minikto/features.py", "minikto/token_batch.py"]
    assert "minikto/policy.py" in paths and "minikto/gradcheck.py" in paths
    assert paths.index("minikto/policy.py") < paths.index("minikto/kto.py")


def test_every_line_count_in_the_reading_path_is_true():
    wrong = {}
    for path, stated in _rows():
        with open(ROOT / path, encoding="utf-8") as f:
            actual = sum(1 for _ in f)
        if actual != stated:
            wrong[path] = (stated, actual)
    assert wrong == {}, f"README line counts (stated, actual): {wrong}"


def test_the_stated_total_is_the_sum_of_the_numbered_rows():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    numbered = re.findall(r"^\| \d+ \| `minikto/[\w/]+\.py` \| (\d+) \|", text, re.MULTILINE)
    total = re.search(r"That is (\d+) lines", text)
    assert total is not None and int(total.group(1)) == sum(map(int, numbered))
