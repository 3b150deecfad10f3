"""The manifest of a run or experiment folder: what minikto wrote there, and so what it may
delete.

Every file minikto writes into a folder is first added to ``.minikto-manifest`` (a JSON object
``{"format": "minikto-manifest", "version": 1, "files": [...]}`` of paths relative to the
folder, replaced atomically), so the manifest always covers what was written, even when the
writer is killed half-way. :mod:`minikto.training.rundir` deletes only the manifest's entries:
a user's file is never one of them, whatever its name or extension. A folder of an older
minikto, without a manifest, is read as holding the fixed names that version wrote
(:data:`LEGACY_FILES`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from .._brief import brief
from ..data.atomic import atomic_write
from ..data.files import read_user_bytes

__all__ = ["LEGACY_FILES", "MANIFEST", "ManifestError", "add_to_manifest", "is_temporary_of",
           "owned_dirs", "owned_files", "read_manifest", "relative", "write_manifest"]

#: The list of what minikto wrote into a folder (the only files it ever deletes there).
MANIFEST = ".minikto-manifest"
#: What a folder of an older minikto (no manifest) holds of minikto's: the fixed names that
#: version wrote (``{name}``: the experiment folder's own name).
LEGACY_FILES = {
    "run": ("config.json", "metrics.jsonl", "evals.jsonl", "summary.json", "checkpoint.npz",
            "figures/training_curves.png", "figures/policy_before_after.png",
            "figures/utility_vs_kl.png"),
    "experiment": ("runs.csv", "table.md", "section.md", "summary.json", "results_{name}.png"),
}


class ManifestError(ValueError):
    """A manifest that cannot be read: nothing in its folder is replaced or deleted."""


def add_to_manifest(
    folder: str | os.PathLike[str], names: Iterable[str], kind: str = "run"
) -> None:
    """Add ``names`` (relative paths such as ``"figures/x.png"``) to ``folder``'s manifest.

    Called before the files are written, so that the manifest always covers them. A name
    already taken by a file minikto did not write is refused (``FileExistsError``): writing
    it would replace the user's file.
    """
    folder = Path(folder)
    names = [relative(n) for n in names]
    listed = read_manifest(folder)
    if listed is None:  # a new folder, or one of an older minikto: what that version wrote
        listed = [n for n in owned_files(folder, kind) if (folder / n).exists()]
    known = set(listed)
    new = [n for n in names if n not in known]
    if not new and (folder / MANIFEST).exists():
        return
    taken = [n for n in new if (folder / n).exists() or (folder / n).is_symlink()]
    if taken:
        raise FileExistsError(
            f"{folder}: minikto would write {', '.join(brief(n, 80) for n in taken[:5])}, but "
            "a file minikto did not write is there; move it away first"
        )
    write_manifest(folder, sorted(known | set(names)))


def relative(name: str) -> str:
    """A manifest entry: a relative path inside the folder, without ``..``."""
    rel = PurePosixPath(name)
    if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") for p in rel.parts):
        raise ValueError(f"names: expected paths inside the folder; got {brief(name)}")
    return rel.as_posix()


def read_manifest(folder: Path) -> list[str] | None:
    """The manifest's entries, or None when the folder has no (readable) manifest."""
    try:
        data = json.loads(read_user_bytes(folder / MANIFEST, name="manifest",
                                          max_bytes=1 << 20).decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ManifestError(
            f"{folder / MANIFEST}: expected minikto's list of the files it wrote; it cannot be "
            f"read ({brief(str(err))}), so nothing in {folder} is replaced or deleted"
        ) from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ManifestError(
            f"{folder / MANIFEST}: expected minikto's list of the files it wrote; got "
            f"{brief(data)}, so nothing in {folder} is replaced or deleted"
        )
    return [relative(f) for f in files]


def write_manifest(folder: Path, names: list[str]) -> None:
    """Replace ``folder``'s manifest (atomically) with ``names``."""
    with atomic_write(folder / MANIFEST, "w", encoding="utf-8") as f:
        json.dump({"format": "minikto-manifest", "version": 1, "files": names}, f, indent=1)
        f.write("\n")


def owned_files(path: Path, kind: str) -> set[str]:
    """The files of ``path`` that minikto wrote: its manifest (or, in a folder of an older
    minikto, the fixed names that version wrote)."""
    listed = read_manifest(path)
    if listed is not None:
        return set(listed)
    return {n.format(name=path.name) for n in LEGACY_FILES[kind]}


def owned_dirs(own: set[str]) -> set[str]:
    """The sub-folders that hold the owned files (``"figures"`` for ``"figures/x.png"``)."""
    return {PurePosixPath(n).parents[i].as_posix() for n in own
            for i in range(len(PurePosixPath(n).parents) - 1)}


def is_temporary_of(rel: str, own: set[str]) -> bool:
    """Is ``rel`` the temporary file of an atomic write of an owned file?"""
    p = PurePosixPath(rel)
    m = re.fullmatch(r"\.(.+)\.[0-9a-f]{12}\.tmp", p.name)
    return m is not None and (p.parent / m.group(1)).as_posix().removeprefix("./") in own
