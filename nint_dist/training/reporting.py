"""What a run reports: metrics rows (metrics.jsonl and TensorBoard scalars), the TensorBoard
preview, selection heat map and score histograms, saved selections and final.json. Files are
written by worker 0 only (``RunLog``); every worker keeps the same per-row tallies (traffic,
throughput), so the figures handed to a checkpoint report agree.
"""

import torch

from nint_dist.comm import Comm
from nint_dist.config import Config, to_yaml
from nint_dist.monitor import AudioMonitor, ImageMonitor, log_histograms
from nint_dist.runlog import RunLog
from nint_dist.samplers import Selection
from nint_dist.signal import SignalSpec


class Reporting:
    """Rows, TensorBoard and the summary of one worker (files on worker 0 only)."""

    def __init__(
        self,
        cfg: Config,
        run_dir: str,
        comm: Comm,
        array,
        spec: SignalSpec,
        model: torch.nn.Module,
        pass_size: int,
        first_step: int,
    ):
        self.cfg, self.comm, self.spec = cfg, comm, spec
        self.device = next(model.parameters()).device
        self.ddp_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        """Gradient bytes DDP all-reduces per step (several workers)."""
        self._since_row = self._tally(0.0)
        self.log: RunLog | None = None
        self.monitor: ImageMonitor | AudioMonitor | None = None
        if comm.rank == 0:
            self.log = RunLog(
                run_dir,
                cfg.log.tensorboard,
                cfg.log.save_selection,
                purge_step=first_step + 1,
                config_text=to_yaml(cfg),
            )
            dtype = next(model.parameters()).dtype
            if cfg.log.tensorboard and len(spec.grid) == 2:
                self.monitor = ImageMonitor(array, spec, self.device, dtype, pass_size)
            elif cfg.log.tensorboard and spec.kind == "audio":
                self.monitor = AudioMonitor(array, spec, self.device, dtype, pass_size)

    def _tally(self, train_seconds: float) -> dict:
        return {"samples": 0, "steps": 0, "train_seconds": train_seconds, "bytes": dict(self.comm.bytes_sent)}

    def selected(self, step: int, indices: torch.Tensor) -> None:
        """A step trained on ``indices``: saved (when asked), shown on the heat map, counted."""
        self._since_row["samples"] += indices.numel()
        self._since_row["steps"] += 1
        if self.log is not None:
            self.log.selection(step, indices)
        if self.monitor is not None:
            self.monitor.add_selection(indices)

    def throughput(self, world_size: int, train_seconds: float) -> dict[str, float]:
        """This worker's payload per step by collective (DDP's gradients included) and samples
        per training second, since the last row (taken before the evaluation's collectives)."""
        since = self._since_row
        steps = since["steps"]
        out = {
            f"bytes_per_step/{kind}": (sent - since["bytes"][kind]) / steps
            for kind, sent in self.comm.bytes_sent.items()
        }
        out["bytes_per_step/ddp_gradients"] = float(self.ddp_bytes if world_size > 1 else 0)
        out["samples_per_s"] = since["samples"] / max(train_seconds - since["train_seconds"], 1e-12)
        return out

    def row(
        self,
        step: int,
        sel: Selection,
        result: dict,
        clock,
        lr: float,
        model: torch.nn.Module,
        last_scores: dict[str, torch.Tensor],
        images: bool,
    ) -> None:
        """Worker 0: the row of log step ``step`` (``result``: the evaluation's metrics, updated
        with the preview's when ``images``), and the preview and score histograms. Every worker
        calls it: the tallies of the next row start here."""
        self._since_row = self._tally(clock.train_seconds)
        if self.log is None:
            return
        if self.monitor is not None and images:
            result.update(self.monitor.log(self.log.writer, step, model))
        if self.log.writer is not None and images:
            log_histograms(self.log.writer, step, last_scores)
        k = sel.indices.numel()
        self.log.metrics(
            {
                "step": step,
                **result,
                "train_seconds": clock.train_seconds,
                "wall_seconds": clock.wall(),
                "lr": lr,
                "ratio": k / self.spec.num_points,  # what the sampler selected
                "num_selected": int(k),
                **{f"share_{name}": n / max(k, 1) for name, n in sel.shares.items()},
                **{f"time_{phase}": v / step for phase, v in clock.phase_seconds.items()},
            }
        )

    def final(self, step: int, result: dict, clock, eval_seconds: float, extra: dict) -> dict | None:
        """Worker 0: write final.json and close the files; returns the summary (None elsewhere)."""
        if self.log is None:
            return None
        emphasis = self.cfg.sampler.emphasis
        summary = {
            "psnr": result["psnr"],
            "mse": result["mse"],
            "loss": result["loss"],
            "steps": step,
            "train_seconds": clock.train_seconds,
            "wall_seconds": clock.wall(),
            "eval_seconds": eval_seconds,
            "ms_per_step": 1000.0 * clock.train_seconds / max(step, 1),
            "compile_seconds": clock.compile_seconds,
            "workers": self.comm.world_size,
            "device": self.device.type,
            "device_name": (torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"),
            "sampler": self.cfg.sampler.name,
            **({"emphasis_power": emphasis.power} if emphasis.active else {}),
            "num_points": self.spec.num_points,
            "peak_memory_max_bytes": result["peak_memory_max_bytes"],
            **({"ssim": result["ssim"]} if "ssim" in result else {}),
            **{f"total_{k}": v for k, v in clock.phase_seconds.items()},
            **extra,
        }
        self.log.final(summary)
        self.close()
        return summary

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
