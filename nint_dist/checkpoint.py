"""Checkpoints of a run: ``RUN_DIR/checkpoints/step_NNNNNN/`` holding ``state.pt`` and its
SHA-256. A checkpoint is written under a temporary name and renamed when complete (locally) or
handed to Ray Train, which copies it into the same place; either way a torn or altered copy
fails its checksum and the previous checkpoint is used instead, with a warning."""

import hashlib
import os
import re
import shutil
import warnings
from pathlib import Path

import torch

from nint_dist.errors import RunFailed, UserError

FOLDER = "checkpoints"
STATE = "state.pt"
CHECKSUM = "state.sha256"
_NAME = re.compile(r"^step_(\d{6,})$")


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def step_of(folder: Path) -> int:
    """The step a checkpoint folder holds, read from its name (``step_NNNNNN``): what the driver
    needs to say where a run resumes, without loading the state."""
    found = _NAME.match(Path(folder).name)
    if found is None:
        raise ValueError(f"{folder} is not a checkpoint folder (step_NNNNNN)")
    return int(found.group(1))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_state(state: dict, folder: Path) -> None:
    """``state.pt`` and its checksum into an existing folder, flushed to disk."""
    torch.save(state, folder / STATE)
    with open(folder / STATE, "rb+") as f:
        os.fsync(f.fileno())
    (folder / CHECKSUM).write_text(_sha256(folder / STATE) + "\n")


def save_local(run_dir: Path, step: int, state: dict) -> Path:
    """Write a checkpoint atomically into ``run_dir/checkpoints`` (no Ray)."""
    root = Path(run_dir) / FOLDER
    root.mkdir(exist_ok=True)
    final = root / step_name(step)
    tmp = root / f".{step_name(step)}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_state(state, tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def is_valid(folder: Path) -> bool:
    try:
        return (folder / CHECKSUM).read_text().strip() == _sha256(folder / STATE)
    except OSError:
        return False


def latest(run_dir: str | Path) -> Path | None:
    """The newest checkpoint whose checksum holds; damaged newer ones are skipped with a warning."""
    root = Path(run_dir) / FOLDER
    if not root.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _NAME.match(p.name)))
    for _, folder in reversed(found):
        if is_valid(folder):
            return folder
        warnings.warn(
            f"checkpoint {folder.name} is damaged (missing or checksum mismatch); using an older one",
            stacklevel=2,
        )
    return None


def prune(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints (by step; 0 keeps all). Returns what went.
    Worker 0 of the local backend calls it after each save; Ray Train prunes its own
    (``CheckpointConfig(num_to_keep)``) and the driver calls it once more at the end for those
    a previous launch left."""
    root = Path(run_dir) / FOLDER
    if keep < 1 or not root.is_dir():
        return []
    found = sorted((int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _NAME.match(p.name)))
    gone = [folder for _, folder in found[:-keep]]
    for folder in gone:
        shutil.rmtree(folder, ignore_errors=True)
    return gone


def load(folder: Path, device: torch.device | str = "cpu") -> dict:
    """The state in ``folder``, read with ``weights_only=True``: tensors and plain containers
    only, so a checkpoint someone hands over cannot run code when it is loaded. Anything else
    in it is refused with one line (``UserError``)."""
    import pickle

    try:
        return torch.load(folder / STATE, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        what = f"it refers to {found.group(1)}" if found else "not a weights-only file"
        raise UserError(
            f"checkpoint {folder} holds objects other than tensors and plain containers ({what});"
            " refusing to load it, since loading it could run code"
        ) from None


def intact_or_none(run_dir: str | Path) -> Path | None:
    """The newest intact checkpoint, None when the run has none at all; ``RunFailed`` when it has
    checkpoints but every one is damaged (a restarted run must not silently begin again)."""
    found = latest(run_dir)
    root = Path(run_dir) / FOLDER
    if found is None and root.is_dir() and any(_NAME.match(p.name) for p in root.iterdir() if p.is_dir()):
        raise RunFailed(
            f"every checkpoint in {root} is damaged (missing or checksum mismatch); nothing to resume"
            " from: start a new run.dir"
        )
    return found
