"""Reading a config file into a dict: a regular file of bounded size, in JSON or YAML.

What is refused, each with a ``ValueError`` naming the file: what is not a regular file (a FIFO
would block forever, ``/dev/zero`` never ends), a file over :data:`MAX_CONFIG_BYTES`, invalid
UTF-8, invalid JSON or YAML, a duplicate key (a repeated YAML merge key ``<<`` too), anything
but an object (mapping) of fields, and more than :data:`MAX_CONFIG_VALUES` values once YAML
aliases are expanded (a few hundred bytes of aliases can stand for gigabytes). A directory is
an ``IsADirectoryError`` and a missing file the usual ``FileNotFoundError``.

YAML 1.1, which PyYAML follows, reads some plain values unlike YAML 1.2, JSON and a reader's
eye: ``010`` is the octal 8, ``1:30`` the sexagesimal 90, ``yes``/``no``/``on``/``off`` are
booleans. Such a value is refused, naming its key and both readings; quote it or write the
number plainly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .._brief import brief
from ..data.files import read_user_bytes

__all__ = ["MAX_CONFIG_BYTES", "MAX_CONFIG_VALUES", "read_config_file"]

#: A config is a few hundred bytes; anything over 1 MiB is not one.
MAX_CONFIG_BYTES = 1 << 20
#: A config holds a few dozen values; more than this, counted with YAML aliases expanded
#: (each use of an alias counts its whole value again), is not one.
MAX_CONFIG_VALUES = 10_000

_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, as some editors write


def read_config_file(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The object a config file holds.

    Parameters
    ----------
    path : str or Path
        The file: UTF-8, a byte-order mark allowed.
    kind : {"json", "yaml"} or None
        The format; None: YAML when the name ends in ``.yaml`` or ``.yml``, JSON otherwise.

    Returns
    -------
    dict
        The file's keys and values, not yet checked as fields (see ``KTOConfig.from_dict``).
    """
    path = Path(path)
    if kind is None:
        kind = "yaml" if path.suffix.lower() in (".yaml", ".yml") else "json"
    raw = read_bounded(path, "config file", MAX_CONFIG_BYTES)
    body = raw.removeprefix(_BOM)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        offset = len(raw) - len(body) + err.start + 1
        raise ValueError(
            f"config file {path}: invalid UTF-8 at byte {offset}; save it as UTF-8"
        ) from None
    data = _parse_yaml(text, path) if kind == "yaml" else _parse_json(text, path)
    _check_expanded_size(data, path)
    if not isinstance(data, dict):
        what = "a YAML mapping of fields" if kind == "yaml" else "a JSON object"
        raise ValueError(f"config file {path}: expected {what}; got {type(data).__name__}")
    return data


def read_bounded(path: Path, role: str, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refusing anything else or more than ``limit``
    (through :func:`minikto.data.files.read_user_bytes`, the one check every file minikto
    reads goes through: a FIFO is refused instead of waited on)."""
    return read_user_bytes(path, name=f"{role} {path}", max_bytes=limit)


def _check_expanded_size(data: Any, path: Path) -> None:
    """Count the values of ``data`` as if every alias were copied out, stopping at the bound
    (so a billion-fold alias, or one that contains itself, costs no more than the bound)."""
    left, stack = MAX_CONFIG_VALUES, [data]
    while stack:
        value = stack.pop()
        left -= 1
        if left < 0:
            raise ValueError(
                f"config file {path}: expected at most {MAX_CONFIG_VALUES} values once YAML "
                "aliases are expanded; got more (aliases that repeat other aliases grow "
                "exponentially); write the values out"
            )
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)


def _parse_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"config file {path}: invalid JSON at line {err.lineno}: {err.msg}"
        ) from err
    except (ValueError, RecursionError) as err:  # a duplicate key, nesting, a huge integer
        raise ValueError(f"config file {path}: invalid JSON: {err}") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {brief(key)}")
        out[key] = value
    return out


def _parse_yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        raise ValueError(
            f"config file {path}: reading YAML needs PyYAML (pip install pyyaml); "
            "or write the config as JSON"
        ) from None
    try:
        return yaml.load(text, Loader=_yaml_loader(yaml))  # a SafeLoader: plain values only
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or err
        raise ValueError(f"config file {path}: invalid YAML{where}: {problem}") from None
    except (ValueError, RecursionError) as err:  # a huge integer, nesting
        raise ValueError(f"config file {path}: invalid YAML: {err}") from None


_LOADERS: dict[str, Any] = {}

#: Plain scalars YAML 1.1 reads otherwise than YAML 1.2 and JSON: (pattern, what 1.1 makes).
_YAML11_ONLY = (
    (re.compile(r"[-+]?0[0-7_]+"), "an octal number"),
    (re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?"),
     "a sexagesimal (base 60) number"),
    (re.compile(r"yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF"), "a boolean"),
)


def _refuse_yaml11_reading(key_node: Any, value_node: Any) -> None:
    """Refuse a plain value that YAML 1.1 reads unlike YAML 1.2 (``beta: 010`` is 8)."""
    if getattr(value_node, "style", "") is not None or not isinstance(value_node.value, str):
        return  # quoted, or not a scalar
    for pattern, what in _YAML11_ONLY:
        if pattern.fullmatch(value_node.value):
            key = brief(getattr(key_node, "value", "?"), 80).strip("'")
            raise ValueError(
                f"{key}: {brief(value_node.value, 40)} is {what} in YAML 1.1 (which PyYAML "
                "reads) but not in YAML 1.2 or JSON; write the value you mean unambiguously "
                "(quote a string, write a number in decimal without a leading zero)"
            )


def _yaml_loader(yaml: Any) -> Any:
    """PyYAML's SafeLoader, refusing duplicate keys and reading ``1e-3`` as a number.

    PyYAML follows YAML 1.1, where a float needs a dot (``1e-3`` is a string); YAML 1.2, JSON
    and TRL's example configs write it without one.
    """
    if "safe" in _LOADERS:
        return _LOADERS["safe"]

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            merges = 0
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    merges += 1  # `<<: *base` merges another mapping; its keys may be overridden
                    if merges > 1:  # `<<: [*a, *b]` merges two; a second `<<` drops the first
                        raise yaml.constructor.ConstructorError(
                            None, None, "duplicate key '<<' (merge two mappings with "
                            "`<<: [*a, *b]`)", key_node.start_mark
                        )
                    continue
                _refuse_yaml11_reading(key_node, value_node)
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float)) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {brief(key)}", key_node.start_mark
                    )
                if isinstance(key, (str, int, float)):
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
        list("-+0123456789."),
    )
    _LOADERS["safe"] = Loader
    return Loader
