"""``python -m nint_dist.bench --preset cpu``: sampling strategies × signals × seeds through the
training code of ``launch`` (the worker's ``Trainer``, one worker in this process), with the
training clock paused during evaluation.

Writes into ``--out``: ``results.json`` and ``curves.csv`` (PSNR and SSIM against steps and
against training seconds), ``<signal>.png`` (one figure per signal, one line per strategy, the
seed spread shaded) and ``tables.md`` (time to 25/30/35 dB, PSNR at fixed steps and at fixed
training seconds). A finished run is reused (an interrupted bench resumes) only when its configuration, the
package version and the package's code are those of the new run (``run_key.json``); a run that
fails is recorded with its error in ``results.json`` and ``tables.md``, not dropped.
"""

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nint_dist.errors import UserError, run_cli

THRESHOLDS_DB = (25.0, 30.0, 35.0)
CLOCKS = {
    "wall": "training seconds, wall clock, evaluation excluded",
    "cpu": "CPU seconds of the training steps, evaluation excluded",
}
BUNDLED_SAMPLE = Path(__file__).resolve().parent / "assets" / "sample.png"
"""The quickstart photograph shipped with the package (Kodak kodim05 at 192x128): the smoke
preset needs no data folder."""


@dataclass
class Preset:
    """A complete benchmark setting; ``overrides`` are config ``key=value`` pairs for every run."""

    signals: dict[str, tuple[str, int | None]]
    """label → (image path relative to ``--data`` or absolute, long side in pixels or None for as is)."""
    strategies: list[str] | None
    """Sampler names; None: every sampler of the registry (nint_dist.samplers.SAMPLERS)."""
    seeds: list[int]
    overrides: list[str]
    at_steps: list[int]
    at_seconds: list[float]
    note: str = ""
    clock: str = "wall"
    """Time axis: 'wall' (the Trainer's train_seconds, CUDA-synchronised) or 'cpu' (CPU seconds
    of the training steps: on a shared CPU machine other processes then do not count)."""
    threads: int | None = None
    """torch threads for the runs (None: PyTorch's default)."""


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        signals={"kodim05@48": (str(BUNDLED_SAMPLE), 48)},
        strategies=None,
        seeds=[42],
        overrides=["model.layers=3", "model.width=32", "train.lr=1e-3", "train.steps=40", "log.every=10"],
        at_steps=[20, 40],
        at_seconds=[0.5, 1.0],
        note="plumbing check: every strategy runs; the numbers mean little",
    ),
    "cpu": Preset(
        signals={
            "div2k-01@128": ("images/div2k/01.png", 128),
            "kodim03@128": ("images/kodak/kodim03.png", 128),
        },
        strategies=None,
        seeds=[42, 43],
        overrides=[
            "model.layers=4",
            "model.width=64",
            "train.lr=1e-3",
            "sampler.ratio=0.2",
            "train.steps=300",
            "log.every=25",
        ],
        at_steps=[100, 200, 300],
        at_seconds=[1.0, 2.0, 4.0],
        note="images downscaled to 128 px on the long side; SIREN 4x64, Adam 1e-3, ratio 0.2, 300 steps;"
        " one thread, time in CPU seconds of the training steps",
        clock="cpu",
        threads=1,
    ),
    "gpu-paper": Preset(
        signals={
            "div2k-01": ("images/div2k/01.png", None),
            "kodim01": ("images/kodak/kodim01.png", None),
        },
        strategies=None,
        seeds=[42],
        overrides=[
            "model.layers=6",
            "model.width=256",
            "train.lr=1e-4",
            "sampler.ratio=0.2",
            "train.steps=5000",
            "train.max_seconds=10",
            "log.every=100",
        ],
        at_steps=[250, 500, 1000],
        at_seconds=[2.0, 5.0, 10.0],
        note="the paper's setting: DIV2K 512x512 and Kodak, SIREN 6x256, Adam 1e-4, ratio 0.2;"
        " each run stops after 10 s of training or 5000 steps",
    ),
}


# ---------------------------------------------------------------- curves → numbers (pure)


def time_to_reach(seconds: list[float], psnr: list[float], target: float) -> float | None:
    """Training seconds at which the PSNR curve first reaches ``target``, linearly interpolated
    between evaluations (from (0 s, −inf) before the first one); None if never."""
    previous_t, previous_p = 0.0, None
    for t, p in zip(seconds, psnr, strict=True):
        if p >= target:
            if previous_p is None or previous_p >= target:
                return t
            return previous_t + (target - previous_p) / (p - previous_p) * (t - previous_t)
        previous_t, previous_p = t, p
    return None


def value_at(xs: list[float], ys: list[float], x: float) -> float | None:
    """The curve (xs ascending) linearly interpolated at ``x``; None outside [xs[0], xs[-1]]."""
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    return float(np.interp(x, xs, ys))


def mean_or_none(values: list[float | None]) -> tuple[float | None, int]:
    """Mean of the values that exist, and how many exist."""
    present = [v for v in values if v is not None]
    return (float(np.mean(present)) if present else None), len(present)


def summarise(runs: list[dict], preset: Preset) -> dict:
    """Per (signal, strategy): means over seeds of every table entry."""
    table: dict[str, dict[str, dict]] = {}
    for run in runs:
        table.setdefault(run["signal"], {}).setdefault(run["strategy"], {"runs": []})["runs"].append(run)
    for by_strategy in table.values():
        for cell in by_strategy.values():
            seeds = cell.pop("runs")
            curves = [(r["curve"]["seconds"], r["curve"]["step"], r["curve"]["psnr"]) for r in seeds]
            cell["seeds"] = len(seeds)
            cell["ms_per_step"] = float(np.mean([r["ms_per_step"] for r in seeds]))
            cell["final_psnr"] = float(np.mean([r["curve"]["psnr"][-1] for r in seeds]))
            cell["final_ssim"] = float(np.mean([r["curve"]["ssim"][-1] for r in seeds]))
            for target in THRESHOLDS_DB:
                cell[f"s_to_{target:g}dB"] = mean_or_none([time_to_reach(t, p, target) for t, _, p in curves])
            for step in preset.at_steps:
                cell[f"psnr_at_{step}_steps"] = mean_or_none([value_at(s, p, step) for _, s, p in curves])
            for sec in preset.at_seconds:
                cell[f"psnr_at_{sec:g}_s"] = mean_or_none([value_at(t, p, sec) for t, _, p in curves])
    return table


def _fmt(entry, digits: int, seeds: int) -> str:
    value, count = entry
    if value is None:
        return "—"
    text = f"{value:.{digits}f}"
    return text if count == seeds else f"{text} ({count}/{seeds})"


def markdown_tables(table: dict, preset: Preset) -> str:
    """One table per signal; entries are means over seeds, '(n/m)' when only n of m seeds got there."""
    out = []
    for signal, by_strategy in table.items():
        header = (
            ["strategy", "ms/step"]
            + [f"s to {t:g} dB" for t in THRESHOLDS_DB]
            + [f"PSNR @ {s} steps" for s in preset.at_steps]
            + [f"PSNR @ {s:g} s" for s in preset.at_seconds]
            + ["final PSNR", "final SSIM"]
        )
        out.append(f"**{signal}**\n")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for strategy, cell in by_strategy.items():
            seeds = cell["seeds"]
            row = [strategy, f"{cell['ms_per_step']:.1f}"]
            row += [_fmt(cell[f"s_to_{t:g}dB"], 2, seeds) for t in THRESHOLDS_DB]
            row += [_fmt(cell[f"psnr_at_{s}_steps"], 2, seeds) for s in preset.at_steps]
            row += [_fmt(cell[f"psnr_at_{s:g}_s"], 2, seeds) for s in preset.at_seconds]
            row += [f"{cell['final_psnr']:.2f}", f"{cell['final_ssim']:.4f}"]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- running


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    return f"{device}; PyTorch {torch.__version__}; Python {platform.python_version()}"


def prepare_signal(source: Path, long_side: int | None, folder: Path) -> Path:
    """The image (downscaled with Lanczos if asked) as a signal store in ``folder``; reused if there."""
    from PIL import Image

    from nint_dist.ingest import image_signal, write_signal

    store = folder / f"{source.stem}-{long_side or 'full'}.zarr"
    if store.exists():
        return store
    if not source.is_file():
        raise UserError(f"benchmark signal not found: {source} (set --data to the test-signal folder)")
    image = folder / f"{source.stem}-{long_side or 'full'}.png"
    with Image.open(source) as img:
        img = img.convert("RGB")
        if long_side is not None:
            scale = long_side / max(img.size)
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
        img.save(image)
    array, spec = image_signal(image)
    write_signal(array, spec, store)
    return store


def bench_trainer_class():
    """The worker's Trainer with SSIM added to each evaluation (one worker: its shard is the
    whole image). Evaluation stays off the training clock, as in every run."""
    from nint_dist import scoring
    from nint_dist.metrics import ssim
    from nint_dist.worker import Trainer

    class BenchTrainer(Trainer):
        cpu_seconds = 0.0

        def train_step(self):
            start = time.process_time()
            out = super().train_step()
            self.cpu_seconds += time.process_time() - start
            return out

        def evaluate(self, loss, exact=True):
            result = super().evaluate(loss, exact=True)  # curves are compared: always the whole signal
            result["cpu_seconds"] = self.cpu_seconds
            s = self.shard
            if len(self.spec.grid) == 2 and self.rt.world_size == 1:
                predicted = scoring.predict(self.model, s.coords, s.size, self.chunk)
                shape = (*self.spec.grid, self.spec.channels)
                result["ssim"] = ssim(
                    predicted.clamp(0, 1).reshape(shape).cpu(), s.targets(0, s.size).reshape(shape).cpu()
                )
            return result

    return BenchTrainer


RUN_KEY = "run_key.json"


def code_digest() -> str:
    """SHA-256 over the package's Python sources: a finished run made by other code is not reused."""
    import hashlib

    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_key(cfg) -> dict:
    """What a finished run must match to be reused: its whole configuration (the run directory
    aside), the package version and the code."""
    from nint_dist import __version__

    config = cfg.to_dict()
    config["run"] = {k: v for k, v in config["run"].items() if k != "dir"}
    return {"version": __version__, "code": code_digest(), "config": config}


def run_one(
    store: Path,
    run_dir: Path,
    strategy: str,
    seed: int,
    overrides: list[str],
    device: str,
    clock: str = "wall",
) -> dict:
    """One fit through the Trainer; returns its curve from metrics.jsonl and its final.json. A
    finished run in ``run_dir`` is reused when its ``run_key.json`` matches this one's."""
    import torch

    from nint_dist.config import load_config
    from nint_dist.worker import Runtime

    cfg = load_config(
        None,
        [
            f"data.path={store}",
            f"run.dir={run_dir}",
            f"sampler.name={strategy}",
            f"train.seed={seed}",
            "run.backend=local",
            "log.tensorboard=false",
            "log.progress=false",
            "log.eval_share=0",  # every row: the curves are compared
            *overrides,
        ],
    )
    key = json.loads(json.dumps(run_key(cfg)))  # as it reads back from the file
    try:
        reusable = (run_dir / "final.json").exists() and json.loads((run_dir / RUN_KEY).read_text()) == key
    except (OSError, ValueError):
        reusable = False
    if not reusable:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        bench_trainer_class()(cfg, Runtime(0, 1, torch.device("cuda" if use_cuda else "cpu"))).fit()
        (run_dir / RUN_KEY).write_text(json.dumps(key, indent=1) + "\n")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    final = json.loads((run_dir / "final.json").read_text())
    curve = {
        key: [row.get(key) for row in rows]
        for key in ("step", "train_seconds", "cpu_seconds", "psnr", "ssim")
    }
    curve["seconds"] = curve["cpu_seconds" if clock == "cpu" else "train_seconds"]
    ms_per_step = 1000.0 * curve["seconds"][-1] / max(curve["step"][-1], 1)
    return {"ms_per_step": ms_per_step, "final": final, "curve": curve}


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``STRATEGY[:KEY=VALUE,KEY=VALUE...]`` → (strategy, overrides)."""
    strategy, _, settings = text.partition(":")
    return strategy, [s for s in settings.split(",") if s]


def write_csv(runs: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["signal", "strategy", "seed", "step", "train_seconds", "cpu_seconds", "psnr", "ssim"]
        )
        for run in runs:
            c = run["curve"]
            for row in zip(
                c["step"], c["train_seconds"], c["cpu_seconds"], c["psnr"], c["ssim"], strict=True
            ):
                writer.writerow([run["signal"], run["strategy"], run["seed"], *row])


def plot(runs: list[dict], folder: Path, clock: str = "wall") -> list[Path]:
    """One figure per signal: PSNR and SSIM against steps and against training seconds; one line
    per strategy (mean over seeds), the band between the seeds' lowest and highest values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for signal in dict.fromkeys(r["signal"] for r in runs):
        fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharey="row")
        for strategy in dict.fromkeys(r["strategy"] for r in runs if r["signal"] == signal):
            group = [r["curve"] for r in runs if r["signal"] == signal and r["strategy"] == strategy]
            for row, metric in enumerate(("psnr", "ssim")):
                for col, axis in enumerate(("step", "seconds")):
                    end = min(c[axis][-1] for c in group)
                    grid = np.linspace(min(c[axis][0] for c in group), end, 200)
                    ys = np.array([np.interp(grid, c[axis], c[metric]) for c in group])
                    ax = axes[row, col]
                    (line,) = ax.plot(grid, ys.mean(0), label=strategy)
                    ax.fill_between(grid, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.2)
        for row, metric in enumerate(("PSNR (dB)", "SSIM")):
            for col, axis in enumerate(("optimizer steps", CLOCKS[clock])):
                axes[row, col].set_xlabel(axis)
                axes[row, col].set_ylabel(metric)
                axes[row, col].grid(alpha=0.3)
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(signal)
        fig.tight_layout()
        path = folder / f"{signal}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def bench(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nint_dist.samplers import SAMPLERS

    preset = PRESETS[args.preset]
    threads = args.threads or preset.threads
    if threads:
        import torch

        torch.set_num_threads(threads)
    strategies = args.strategies or [s for s in preset.strategies or SAMPLERS if s in SAMPLERS]
    unknown = [s for s in strategies if s not in SAMPLERS]
    if unknown:
        raise UserError(f"unknown strategy {unknown[0]!r}; registered: {', '.join(sorted(SAMPLERS))}")
    signals = {k: v for k, v in preset.signals.items() if not args.signals or k in args.signals}
    if args.signals and len(signals) != len(args.signals):
        raise UserError(f"unknown signal; the preset has: {', '.join(preset.signals)}")
    seeds = args.seeds or preset.seeds
    overrides = [*preset.overrides, *([f"train.steps={args.steps}"] if args.steps else []), *args.set]
    needs_data = [rel for rel, _ in signals.values() if not Path(rel).is_absolute()]
    if needs_data and args.data is None:
        raise UserError(
            f"the {args.preset} preset reads {', '.join(needs_data)} from a folder of test signals;"
            " pass it with --data DIR"
        )
    out = Path(args.out or f"bench-{args.preset}")
    (out / "signals").mkdir(parents=True, exist_ok=True)
    stores = {
        label: prepare_signal(Path(args.data or ".") / rel, side, out / "signals")
        for label, (rel, side) in signals.items()
    }

    jobs = [(label, strategy, seed) for label in stores for strategy in strategies for seed in seeds]
    pending = any(not (out / "runs" / f"{a}-{b}-{c}" / "final.json").exists() for a, b, c in jobs)
    if pending and args.warmup_steps:
        # one short throwaway fit first, so that the first timed run does not pay for warming up;
        # nint-paper's first step takes every path a sampler uses, torch.func's VJP/JVP included
        # (their first call in a process costs ~0.3 s on a CPU)
        warmup = out / "runs" / "warmup"
        run_one(
            next(iter(stores.values())),
            warmup,
            "nint-paper",
            0,
            [
                *overrides,
                f"train.steps={args.warmup_steps}",
                f"log.every={args.warmup_steps}",
                "train.max_seconds=null",
            ],
            args.device,
        )
        shutil.rmtree(warmup)
    runs, failed = [], []
    with tqdm(jobs, unit="run", file=sys.stderr, dynamic_ncols=True) as bar:
        for label, strategy, seed in bar:
            bar.set_postfix_str(f"{label} {strategy} seed {seed}")
            try:
                result = run_one(
                    stores[label],
                    out / "runs" / f"{label}-{strategy}-{seed}",
                    strategy,
                    seed,
                    overrides,
                    args.device,
                    preset.clock,
                )
            except Exception as e:  # a failed run is a result: recorded, and the bench goes on
                failed.append({"signal": label, "strategy": strategy, "seed": seed, "error": one_line(e)})
                continue
            runs.append({"signal": label, "strategy": strategy, "seed": seed, **result})

    table = summarise(runs, preset)
    command = "python -m nint_dist.bench " + " ".join(args.argv)
    meta = {
        "preset": args.preset,
        "command": command,
        "machine": machine(),
        "seeds": seeds,
        "overrides": overrides,
        "clock": preset.clock,
        "threads": threads,
    }
    results = {**meta, "summary": table, "runs": runs, "failed": failed}
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_csv(runs, out / "curves.csv")
    figures = plot(runs, out, preset.clock)
    header = (
        f"Preset `{args.preset}` ({preset.note}). Machine: {meta['machine']}.\n"
        f"Command: `{command}`. Seeds: {', '.join(map(str, seeds))}; entries are means over seeds.\n"
        f"Settings: {' '.join(overrides)}. Time axis: {CLOCKS[preset.clock]}"
        f"{f'; torch threads: {threads}' if threads else ''}.\n\n"
    )
    failures = "".join(
        f"\nFailed: {f['signal']} {f['strategy']} seed {f['seed']}: {f['error']}" for f in failed
    )
    (out / "tables.md").write_text(
        header + markdown_tables(table, preset) + failures + ("\n" if failed else "")
    )
    print(f"tables:  {out / 'tables.md'}\ncurves:  {out / 'curves.csv'}, {out / 'results.json'}")
    print("figures: " + ", ".join(str(p) for p in figures))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m nint_dist.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="smoke")
    parser.add_argument(
        "--strategies", nargs="+", help="sampler names (default: the preset's, if registered)"
    )
    parser.add_argument("--signals", nargs="+", help="signal labels of the preset (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="further config overrides")
    parser.add_argument(
        "--data",
        help="folder the preset's image paths are relative to (the cpu and gpu-paper presets:"
        " images/div2k/NN.png, images/kodak/kodimNN.png); the smoke preset uses the bundled sample",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, help="torch threads (default: the preset's)")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed warm-up fit first (0: none)")
    parser.add_argument("--out", help="output folder (default: bench-PRESET); finished runs are reused")
    args = parser.parse_args(argv)
    args.argv = argv
    return run_cli(lambda: bench(args))


if __name__ == "__main__":
    sys.exit(main())
