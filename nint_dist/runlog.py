"""What worker 0 writes into the run directory while training: metrics.jsonl, TensorBoard
event files, the selected indices (``selection/``) and final.json. Checkpoints are not written
here (``nint_dist.checkpoint`` does that). Other workers hold no writer at all; nothing here
touches the process group."""

import json
import os
from pathlib import Path

import numpy as np
import torch

STOP_FILE = ".stop"
"""Written into the run directory by the driver on SIGINT/SIGTERM: the workers checkpoint and
end the run at the next step they look (every step with one worker, the next log step with
several). Removed by the driver when the run ends or is launched again."""

TAG_GROUPS = (
    ("eval/", ("psnr", "psnr_points", "mse", "ssim", "si_snr")),
    ("train/", ("loss", "lr")),
    ("sampler/", ("ratio", "num_selected", "share_")),
    ("time/", ("time_", "train_seconds", "wall_seconds", "samples_per_s")),
)
"""TensorBoard sections by metric name (prefix match); everything else — memory, load balance,
traffic — goes under system/."""


def tensorboard_tag(key: str) -> str:
    """The grouped TensorBoard tag of a metrics.jsonl key, e.g. psnr → eval/psnr."""
    tag = key.replace(".", "/")
    for group, names in TAG_GROUPS:
        if any(key == n or (n.endswith("_") and key.startswith(n)) for n in names):
            return group + tag
    return "system/" + tag


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunLog:
    """Files of one run, written by worker 0."""

    def __init__(
        self,
        run_dir: str | Path,
        tensorboard: bool,
        save_selection: bool,
        purge_step: int = 0,
        config_text: str | None = None,
    ):
        self.dir = Path(run_dir)
        self.save_selection = save_selection
        self._drop_metrics_from(purge_step)
        self._metrics = open(self.dir / "metrics.jsonl", "a", buffering=1)
        self.writer = None
        """The TensorBoard SummaryWriter (None when TensorBoard is off). On a resumed run,
        events from ``purge_step`` on, written before the interruption, are discarded."""
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.dir / "tensorboard"), purge_step=purge_step or None)
            if config_text is not None:  # the resolved config, as TensorBoard's Text tab shows it
                indented = "\n".join("    " + line for line in config_text.splitlines())
                self.writer.add_text("config", indented, max(purge_step - 1, 0))
        if save_selection:
            (self.dir / "selection").mkdir(exist_ok=True)

    def _drop_metrics_from(self, step: int) -> None:
        """A resumed run (relaunched, or restarted after a worker died) forgets the rows that the
        interrupted attempt logged after the checkpoint it resumes from."""
        path = self.dir / "metrics.jsonl"
        if step and path.exists():
            lines = path.read_text().splitlines(keepends=True)
            kept = [line for line in lines if line.endswith("\n") and json.loads(line)["step"] < step]
            atomic_write_bytes(path, "".join(kept).encode())

    def metrics(self, row: dict) -> None:
        self._metrics.write(json.dumps(row) + "\n")
        if self.writer is not None:
            step = row["step"]
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and np.isfinite(value):
                    self.writer.add_scalar(tensorboard_tag(key), value, step)

    def selection(self, step: int, indices: torch.Tensor) -> None:
        """Save the step's global indices (copied off the device only when saving is on)."""
        if self.save_selection:
            np.save(self.dir / "selection" / f"step_{step:06d}.npy", indices.cpu().numpy())

    def final(self, summary: dict) -> None:
        if self.writer is not None:  # where it ran, beside the curves
            where = f"{summary.get('device_name')} x {summary.get('workers')} worker(s)"
            self.writer.add_text("system/device", where)
        atomic_write_bytes(self.dir / "final.json", (json.dumps(summary, indent=2) + "\n").encode())

    def close(self) -> None:
        self._metrics.close()
        if self.writer is not None:
            self.writer.close()
