"""The driver's console during a fit: the progress bar that follows ``metrics.jsonl``, Ctrl-C
turned into a checkpoint and a clean stop, and the summary printed at the end."""

import json
import shutil
import signal
import sys
import threading
from pathlib import Path

from nint_dist.runlog import STOP_FILE


class StopOnSignal:
    """SIGINT/SIGTERM during a fit: the first asks the workers (through ``RUN_DIR/.stop``) to
    write a checkpoint and end; a second one stops at once. Installed only in the main thread
    (Python's rule for signal handlers); the previous handlers come back on exit."""

    def __init__(self, run_dir: Path):
        self.flag = run_dir / STOP_FILE
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self):
        self.flag.unlink(missing_ok=True)  # a stop request left by an earlier launch
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.flag.touch()
        print(
            f"\n{signal.Signals(signum).name}: writing a checkpoint, then stopping"
            " (once more to stop at once, losing the steps since the last checkpoint)",
            file=sys.stderr,
        )

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self.flag.unlink(missing_ok=True)


def wait_in_main_thread(body) -> None:
    """Run ``body`` in a helper thread while the main thread waits, so that this module's signal
    handlers (not Ray Train's, which aborts without a checkpoint) receive Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        body()
        return
    outcome: dict[str, BaseException] = {}

    def target() -> None:
        try:
            body()
        except BaseException as e:  # handed to the main thread
            outcome["error"] = e

    helper = threading.Thread(target=target, name="nint-fit", daemon=True)
    helper.start()
    while helper.is_alive():
        helper.join(0.2)
    if "error" in outcome:
        raise outcome["error"]


def print_interrupted(run_dir: Path) -> None:
    from nint_dist import checkpoint

    latest = checkpoint.latest(run_dir)
    where = f"checkpoint {latest}" if latest is not None else "no checkpoint yet"
    print(
        f"interrupted: {where}\nresume with:     python -m nint_dist.launch --resume {run_dir}",
        file=sys.stderr,
    )


class Progress:
    """A progress bar on the driver, fed by the metrics.jsonl that worker 0 appends to. With a
    time budget (``train.max_seconds``) the bar's total is the step the budget is expected to
    end at, so that its ETA is whichever limit comes first."""

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        enabled: bool = True,
        desc: str | None = None,
        max_seconds: float | None = None,
    ):
        self.desc = desc  # where the run trains: device and workers
        self.path = run_dir / "metrics.jsonl"
        self.total = total_steps
        self.max_seconds = max_seconds
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self):
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.enabled:
            self._thread.join(timeout=5)

    def _follow(self) -> None:
        from tqdm import tqdm

        bar = tqdm(total=self.total, unit="step", dynamic_ncols=True, file=sys.stderr, desc=self.desc)
        offset = 0
        while True:
            stopping = self._stop.wait(0.5)
            if self.path.exists():
                with open(self.path) as f:
                    f.seek(offset)
                    for line in f.readlines():
                        if not line.endswith("\n"):
                            break
                        offset += len(line)
                        row = json.loads(line)
                        expected = expected_last_step(row, self.total, self.max_seconds)
                        if expected != bar.total:
                            bar.total = expected
                        bar.update(row["step"] - bar.n)
                        bar.set_postfix(postfix(row))
            if stopping:
                break
        bar.close()


def expected_last_step(row: dict, total: int, max_seconds: float | None) -> int:
    """The step a run is expected to end at after logging ``row``: train.steps, or sooner where
    the training clock's pace so far reaches train.max_seconds first."""
    step, seconds = row["step"], row.get("train_seconds", 0.0)
    if max_seconds is None or step < 1 or seconds <= 0:
        return total
    return max(step, min(total, int(step + (max_seconds - seconds) * step / seconds)))


def postfix(row: dict) -> dict[str, str]:
    """The progress bar's metrics: SI-SNR first for audio (PSNR of quiet audio reads well
    while the fit is poor), then PSNR and throughput."""
    shown = {"si_snr": f"{row['si_snr']:.2f}"} if "si_snr" in row else {}
    shown["psnr"] = f"{row['psnr']:.2f}"
    shown["samples_per_s"] = f"{row.get('samples_per_s', 0):.3g}"
    return shown


def sampler_label(name: str, emphasis_power: float | None) -> str:
    """How the summary and the dry run name a sampler: with its residual emphasis when on."""
    return name + (f" with emphasis power {emphasis_power:g}" if emphasis_power else "")


def print_summary(run_dir: Path) -> None:
    """One screen: the final metrics, the time, and where everything is."""
    final = json.loads((run_dir / "final.json").read_text())
    metrics = "  ".join(
        f"{key} {final[key]:.4g}" for key in ("si_snr", "psnr", "ssim", "iou", "chamfer") if key in final
    )
    device = final.get("device_name") or final.get("device", "")
    lines = [
        f"done: {final['steps']} steps on {final['workers']} worker(s) ({device}),"
        f" {final['train_seconds']:.1f} s of training ({final['ms_per_step']:.1f} ms/step),"
        f" sampler {sampler_label(final['sampler'], final.get('emphasis_power'))}",
        f"final:           {metrics}",
        f"run directory:   {run_dir}",
    ]
    for name in ("reconstruction.png", "reconstruction.wav", "reconstruction.obj", "reconstruction.zarr"):
        if (run_dir / name).exists():
            lines.append(f"reconstruction:  {run_dir / name}")
            break
    lines.append(f"metrics:         {run_dir / 'metrics.jsonl'}  (summary: final.json)")
    lines.append(
        f"checkpoints:     {run_dir / 'checkpoints'}  (resume: python -m nint_dist.launch --resume {run_dir})"
    )
    if (run_dir / "tensorboard").exists():
        # the environment's own tensorboard when it is not on PATH (a venv that is not activated)
        tensorboard = shutil.which("tensorboard") or Path(sys.executable).parent / "tensorboard"
        lines.append(f"TensorBoard:     {tensorboard} --logdir {run_dir / 'tensorboard'}")
    print("\n".join(lines))
