"""The code stays short enough to check line by line.

Lines of code are the lines of a function's source that are not blank, not only a comment and
not part of its docstring (the signature counts). Limits: no function in ``minikto/`` over 100
(data tables excepted); the policy's forward pass <= 15 and its backward pass <= 25; each
loss function <= 35.
"""

from __future__ import annotations

import ast
import inspect
import io
import tokenize
from pathlib import Path

import pytest

import minikto
from minikto import apo_zero_unpaired_loss, dpo_loss, exact_kl, kto_loss, sft_loss
from minikto.kto import checked_kto_loss
from minikto.policy import SoftmaxPolicy

PACKAGE = Path(minikto.__file__).parent
LIMIT = 100

#: Functions allowed past the limit: data tables only.
ALLOWED: dict[str, str] = {
    "minikto.tools.vectors_cases:cases": "data table: the test vectors, one entry per case",
}


def _docstring_lines(node: ast.AST) -> set[int]:
    body = getattr(node, "body", None)
    if not body or not isinstance(body[0], ast.Expr):
        return set()
    value = body[0].value
    if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
        return set()
    return set(range(body[0].lineno, body[0].end_lineno + 1))


def lines_of_code(source: str) -> int:
    """Lines of code of the (first) function defined in ``source``."""
    source = inspect.cleandoc("\n" + source) if source[:1].isspace() else source
    tree = ast.parse(source)
    func = next(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return _count(source, func)


def _count(source: str, func: ast.AST) -> int:
    start = min([func.lineno] + [d.lineno for d in func.decorator_list])
    skip = set()
    for node in ast.walk(func):  # docstrings of the function and of nested definitions
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            skip |= _docstring_lines(node)
    code = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                        tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        for line in range(tok.start[0], tok.end[0] + 1):
            if start <= line <= func.end_lineno and line not in skip:
                code.add(line)
    return len(code)


def all_functions() -> list[tuple[str, int]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        module = path.relative_to(PACKAGE.parent).with_suffix("").as_posix().replace("/", ".")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((f"{module}:{node.name}:{node.lineno}", _count(source, node)))
    return out


def test_the_counter_counts_code_not_docstrings_comments_or_blank_lines():
    source = '''
def f(a,
      b):
    """Doc.

    More doc.
    """
    # a comment

    x = (a +
         b)  # trailing comment
    return x
'''
    assert lines_of_code(source) == 5


def test_no_function_in_the_package_is_over_100_lines_of_code():
    too_long = {
        name.rsplit(":", 1)[0]: n for name, n in all_functions()
        if n > LIMIT and name.rsplit(":", 1)[0] not in ALLOWED
    }
    assert not too_long, f"functions over {LIMIT} lines of code: {too_long}"


@pytest.mark.parametrize(
    ("function", "limit"),
    [
        (SoftmaxPolicy.sequence_logps, 15),
        (SoftmaxPolicy.batch_logps, 15),
        (SoftmaxPolicy.sequence_logps_backward, 25),
        (SoftmaxPolicy.batch_logps_backward, 25),
        (kto_loss, 20),  # the checks, then the math in checked_kto_loss
        (checked_kto_loss, 35),
        (exact_kl, 25),
        (dpo_loss, 35),
        (sft_loss, 35),
        (apo_zero_unpaired_loss, 35),
    ],
    ids=lambda x: getattr(x, "__qualname__", str(x)),
)
def test_the_functions_a_student_checks_fit_on_a_screen(function, limit):
    assert lines_of_code(inspect.getsource(function)) <= limit


AUTOGRAD_LIBRARIES = {"torch", "jax", "jaxlib", "autograd", "tensorflow", "mxnet"}


def test_no_module_of_the_package_imports_an_autograd_library():
    # minikto's gradients are written by hand; `minikto check` uses the framework the user's
    # code has already loaded (sys.modules) and imports none itself.
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in AUTOGRAD_LIBRARIES]
    assert found == []


def test_the_checker_refuses_a_framework_the_users_code_has_not_loaded():
    from minikto.tools.check_call import _loaded

    with pytest.raises(ValueError, match="'no_such_framework' is not loaded"):
        _loaded("no_such_framework")
