"""skcdc's own file format: tensors and plain Python values, never code.

Every file is a ``torch.save`` of a dict and is read back with
``torch.load(weights_only=True)``, which refuses to execute anything stored in
it (skcdc requires a torch release without the known bypasses of that check,
2.10 or later). Each file carries the skcdc version and a format number; a file of another
format number is refused with :class:`~skcdc.exceptions.IncompatibleFileError`.
Writes go to a temporary file that replaces the target at the end, so a run
killed while saving leaves the previous file intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .exceptions import IncompatibleFileError

__all__ = ["FORMAT_VERSION", "load", "save"]

# Bumped whenever the layout of a file changes in a way an older reader cannot follow.
FORMAT_VERSION = 2


def save(content: dict[str, Any], path: str | os.PathLike, *, kind: str) -> None:
    """Atomically write ``content`` (tensors, numbers, strings, lists, dicts) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "skcdc_version": __version__,
        **content,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike, *, kind: str) -> dict[str, Any]:
    """Read a file written by :func:`save`, on the CPU, without executing code."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pickle errors of many kinds: name the file, not the internals
        raise IncompatibleFileError(
            f"{path} is not a readable skcdc {kind} file ({type(exc).__name__}: {exc})."
        ) from exc
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        found = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise IncompatibleFileError(f"{path} is not an skcdc {kind} file (it holds {found!r}).")
    if payload.get("format_version") != FORMAT_VERSION:
        raise IncompatibleFileError(
            f"{path} was written by skcdc {payload.get('skcdc_version')} in file format "
            f"{payload.get('format_version')}; skcdc {__version__} reads format {FORMAT_VERSION}. "
            f"Install skcdc=={payload.get('skcdc_version')} to read it, or train again."
        )
    return payload
