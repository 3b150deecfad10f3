"""docs/CHECK.md shows real output: its examples, rerun, print exactly what the page shows."""

from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path

import pytest

from minikto.tools.cli import main

DOC = Path(__file__).resolve().parent.parent / "docs" / "CHECK.md"


def _examples() -> tuple[dict[str, str], list[tuple[list[str], str, int]]]:
    text = DOC.read_text(encoding="utf-8")
    files = {}
    for code in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        if code.startswith("import numpy"):
            files["my_kto.py"] = code
        elif code.startswith("def kto("):
            files["broken.py"] = code
    runs = []
    for block in re.findall(r"```text\n(.*?)```", text, flags=re.S):
        first, *rest = block.rstrip("\n").splitlines()
        exit_code = int(re.fullmatch(r"\[exit (\d)\]", rest[-1]).group(1))
        runs.append((shlex.split(first.removeprefix("$ minikto ")), "\n".join(rest[:-1]),
                     exit_code))
    return files, runs


FILES, RUNS = _examples()


def test_the_page_holds_a_correct_and_three_broken_losses_and_an_error_summary():
    assert set(FILES) == {"my_kto.py", "broken.py"}
    assert [code for _, _, code in RUNS] == [2, 0, 1, 1, 1]


@pytest.mark.parametrize(("argv", "shown", "exit_code"), RUNS, ids=[r[0][1] for r in RUNS])
def test_each_example_prints_what_the_page_shows(argv, shown, exit_code, tmp_path,
                                                 monkeypatch, capsys):
    for name, code in FILES.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # np.exp overflow in the NumPy example
        assert main(argv) == exit_code
    out = capsys.readouterr()
    assert (out.err if exit_code == 2 else out.out).rstrip("\n") == shown
