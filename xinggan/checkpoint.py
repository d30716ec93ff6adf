"""Checkpoint files: one safe, versioned format for trained and converted models.

A checkpoint is a plain dictionary written with ``torch.save`` and read back with
``torch.load(weights_only=True)``: a checkpoint is an untrusted file, so nothing in it may
execute code on load.  Every value is a tensor, number, string, bool, None, list, tuple or
dict of those.  Keys:

- ``format``: ``"xinggan"``; ``version``: :data:`FORMAT_VERSION`.
- ``config``: the resolved config as a plain dict (``Config.to_dict()``).
- ``generator``, and optionally ``shape_discriminator``, ``appearance_discriminator``:
  ``state_dict`` of each network.
- training state (only in checkpoints written by ``train.py``): ``iteration``,
  ``optimizers``, ``pools``, ``rng``, ``sampler``...

Writing goes to a temporary file in the same folder, flushed to disk, then renamed over the
target, so a crash or a full disk during a save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

FORMAT_NAME = "xinggan"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, unsafe, or of another model or format version."""


def save_checkpoint(state: dict, path: Union[str, Path]) -> Path:
    """Atomically write ``state`` (``format`` and ``version`` are added) to ``path``."""
    state = dict(state)
    state.setdefault("format", FORMAT_NAME)
    state.setdefault("version", FORMAT_VERSION)
    return atomic_save(state, path)


def atomic_save(obj: Any, path: Union[str, Path]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, renamed over ``path``,
    then the folder flushed too (the rename itself survives a crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise CheckpointError(
                f"could not write checkpoint {path}: {exc.strerror or exc}; "
                "the previous checkpoint (if any) is unchanged"
            ) from exc
        raise
    return path


def remove_stale_temporaries(folder: Union[str, Path]) -> list[Path]:
    """Delete the temporary files killed saves left in ``folder`` (``latest.pt`` and rank parts)."""
    stale = sorted(Path(folder).glob(".*.pt.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: Union[str, Path], map_location: Any = "cpu") -> dict:
    """Read a checkpoint safely (``weights_only=True``) and check its format and version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors and plain "
            f"values (not a safe checkpoint, or written by other code): {exc}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged byte stream fails in many ways
        # (RuntimeError, EOFError, BadZipFile, OSError, ValueError, and from the unpickler on
        # garbage also IndexError, KeyError, UnicodeDecodeError, ...): all mean the same here
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint (top level is {type(state).__name__})")
    if state.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path}: not an xinggan checkpoint (format={state.get('format')!r}); "
            "convert the authors' checkpoints with scripts/convert_official_checkpoint.py"
        )
    version = state.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this code reads "
            f"({FORMAT_VERSION}); update xinggan"
        )
    if "config" not in state or "generator" not in state:
        raise CheckpointError(f"{path}: checkpoint lacks 'config' or 'generator'")
    return state
