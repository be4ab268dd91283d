"""Samplers at equal CPU seconds on a large photograph, on audio and on an SDF volume (one worker,
one thread, no Ray).

Every fit trains until its training steps have used ``--seconds`` of CPU time (process time of
the steps alone: on a shared machine wall time measures the neighbours), then reports the exact
full-signal PSNR (and SI-SNR for audio, occupancy IoU for volumes). Evaluations in between are off
the clock.

    python benchmarks/large_cpu.py --image PHOTO.jpg --audio bach.wav --mesh bunny.obj --out DIR

Parts (``--parts``, default all):
- ``image``: the photograph resized to a 2048-pixel long side, hash grid (16 levels × 2, 2^19
  table, 3×64, Adam 1e-2), ratio 0.01, against every sampler of ``--image-samplers``;
- ``audio``: a 2 s excerpt (88 200 samples from 1 s in), SIREN 5×256 with the SIREN paper's
  first-layer frequency 3000, Adam 1e-4, ratio 0.2, seeds of ``--seeds``;
- ``volume``: the mesh's signed distance on a 64³ grid (``--volume-resolution``), SIREN 4×128, Adam
  1e-4, ratio 0.2; with ``--volume-model hashgrid`` a hash grid (16 levels × 2, 2^15 entries per
  level, 3×64, Adam 1e-2), ratio 0.01.

Writes ``DIR/large_cpu.json`` (every run's curve and final numbers) and prints markdown tables.
"""

import argparse
import json
import statistics
import sys
from functools import partial
from pathlib import Path

import numpy as np

from nint_dist.bench import machine, prepare_signal
from nint_dist.errors import UserError, run_cli
from nint_dist.samplers import SAMPLERS

IMAGE_SIDE = 2048
IMAGE_MODEL = [
    "model.name=hashgrid",
    "model.layers=3",
    "model.width=64",
    "model.hashgrid.levels=16",
    "model.hashgrid.features=2",
    "model.hashgrid.log2_size=19",
    f"model.hashgrid.max_resolution={IMAGE_SIDE}",
    "train.lr=1e-2",
    "sampler.ratio=0.01",
]
AUDIO_MODEL = [
    "model.name=siren",
    "model.layers=5",
    "model.width=256",
    "model.siren.w0_initial=3000",
    "train.lr=1e-4",
    "sampler.ratio=0.2",
]
AUDIO_START_S, AUDIO_SECONDS = 1.0, 2.0
VOLUME_SIREN = ["model.name=siren", "model.layers=4", "model.width=128", "train.lr=1e-4", "sampler.ratio=0.2"]


def volume_hashgrid(resolution: int) -> list[str]:
    """A hash grid whose 2^15-entry levels hold far fewer entries than the volume has points, as
    on large volumes (a 64³ volume in 2^19 entries per level is memorised, not fitted)."""
    return [
        "model.name=hashgrid",
        "model.layers=3",
        "model.width=64",
        "model.hashgrid.levels=16",
        "model.hashgrid.features=2",
        "model.hashgrid.log2_size=15",
        f"model.hashgrid.max_resolution={resolution}",
        "train.lr=1e-2",
        "sampler.ratio=0.01",
    ]


def fit(store: Path, run_dir: Path, sampler: str, seed: int, settings: list[str], seconds: float) -> dict:
    """One fit (reused when its final.json exists); returns its curve and final numbers."""
    import shutil

    from nint_dist.config import load_config
    from nint_dist.signal import open_signal
    from nint_dist.training import CpuSeconds, Loop

    if not (run_dir / "final.json").exists():
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        cfg = load_config(
            None,
            [
                f"data.path={store}",
                f"run.dir={run_dir}",
                f"sampler.name={sampler}",
                f"train.seed={seed}",
                "train.steps=1000000",
                "run.backend=local",
                "log.tensorboard=false",
                "log.progress=false",
                *settings,
            ],
        )
        # the steps' CPU seconds are the clock and the budget; every evaluation is exact (the
        # curves are compared); images write no reconstruction files (a full pass more), audio
        # and volumes do: their SI-SNR and IoU come from them
        cpu = CpuSeconds(budget=seconds)
        image = len(open_signal(str(store))[1].grid) == 2
        loop = Loop.in_process(cfg, "cpu", cpu_seconds=cpu, budget=cpu, always_exact=True, export=not image)
        loop.run()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    final = json.loads((run_dir / "final.json").read_text())
    curve = {key: [row.get(key) for row in rows] for key in ("step", "cpu_seconds", "psnr")}
    return {
        "sampler": sampler,
        "seed": seed,
        "settings": settings,
        "steps": final["steps"],
        "cpu_seconds": curve["cpu_seconds"][-1],
        "wall_seconds": final["wall_seconds"],  # evaluations and the final export included
        "ms_per_step": 1000.0 * curve["cpu_seconds"][-1] / max(final["steps"], 1),
        "psnr": final["psnr"],
        **{key: final[key] for key in ("si_snr", "iou") if key in final},
        "curve": curve,
    }


def audio_excerpt(source: Path, folder: Path) -> Path:
    """A 2 s excerpt of a WAV file as a float32 signal store."""
    from nint_dist.ingest import ingest
    from nint_dist.sources.audio import read_wav, write_wav

    store = folder / f"{source.stem}-2s.zarr"
    if store.exists():
        return store
    if not source.is_file():
        raise UserError(f"audio file not found: {source}")
    wav = read_wav(source)
    rate = int(wav.attrs["sample_rate"])
    lo = int(AUDIO_START_S * rate)
    samples = np.asarray(wav.data[lo : lo + int(AUDIO_SECONDS * rate)], dtype=np.float64)
    if wav.value_range is not None:  # integer PCM: to [-1, 1]
        samples = samples / max(abs(wav.value_range[0]), abs(wav.value_range[1]))
    clip = folder / f"{source.stem}-2s.wav"
    write_wav(clip, samples, rate)
    ingest(clip, store, dtype="float32", progress=False)
    return store


def volume_store(source: Path, folder: Path, resolution: int) -> Path:
    from nint_dist.ingest import ingest

    store = folder / f"{source.stem}-{resolution}.zarr"
    if not store.exists():
        if not source.is_file():
            raise UserError(f"mesh file not found: {source}")
        ingest(source, store, resolution=resolution, dtype="float32", progress=False)
    return store


def variant(text: str) -> tuple[str, list[str]]:
    """``SAMPLER[:KEY=VALUE+KEY=VALUE]`` → (sampler, overrides); a bare key is the sampler's own
    (``nint:pool_factor=1`` → ``sampler.nint.pool_factor=1``). Settings are joined with ``+``:
    the lists of variants are comma-separated."""
    from nint_dist.samplers import section_name

    name, _, settings = text.partition(":")
    return name, [
        f"sampler.{section_name(name)}.{s}" if not s.startswith(("sampler.", "model.", "train.")) else s
        for s in settings.split("+")
        if s
    ]


def markdown(runs: list[dict], metric: str) -> str:
    """One row per variant: mean over seeds of the metric, PSNR, steps and ms/step."""
    by_variant: dict[str, list[dict]] = {}
    for run in runs:
        by_variant.setdefault(run["variant"], []).append(run)
    lines = [
        f"| sampler | seeds | {metric} (mean) | PSNR (mean) | steps | CPU ms/step |",
        "|---|---|---|---|---|---|",
    ]
    for name, group in by_variant.items():
        values = [r.get(metric, r["psnr"]) for r in group]
        digits = 3 if metric == "iou" else 2  # IoUs differ in the third digit
        each = ", ".join(f"{v:.{digits}f}" for v in values)
        psnr = statistics.mean(r["psnr"] for r in group)
        steps = statistics.mean(r["steps"] for r in group)
        ms = statistics.mean(r["ms_per_step"] for r in group)
        mean = statistics.mean(values)
        value = f"{mean:.{digits}f} ({each})"
        lines.append(f"| {name} | {len(group)} | {value} | {psnr:.2f} | {steps:.0f} | {ms:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", type=Path, help="a large photograph (resized to a 2048-pixel long side)")
    parser.add_argument("--audio", type=Path, help="a WAV file of at least 3 s")
    parser.add_argument("--mesh", type=Path, help="a closed OBJ mesh")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", default="image,audio,volume")
    parser.add_argument("--seconds", type=float, default=45.0, help="CPU seconds of training per fit")
    parser.add_argument("--image-samplers", default="uniform,shuffled,nint,error-map,soft,evos")
    parser.add_argument("--modality-samplers", default="uniform,shuffled,auto,nint,error-map")
    parser.add_argument("--seeds", default="42,43,44", help="seeds of the audio and volume fits")
    parser.add_argument("--volume-model", choices=["siren", "hashgrid"], default="siren")
    parser.add_argument("--volume-resolution", type=int, default=64, help="grid points per axis")
    parser.add_argument("--image-seed", type=int, default=42)
    parser.add_argument("--image-every", type=int, default=10, help="steps between image evaluations")
    args = parser.parse_args(argv)

    def body() -> int:
        import torch

        torch.set_num_threads(1)
        parts = [p for p in args.parts.split(",") if p]
        unknown = set(parts) - {"image", "audio", "volume"}
        if unknown:
            raise UserError(f"unknown part(s): {', '.join(sorted(unknown))}")
        signals = args.out / "signals"
        signals.mkdir(parents=True, exist_ok=True)
        jobs = []  # (part, variant text, store, seed, settings)
        if "image" in parts:
            if args.image is None:
                raise UserError("--image is required for the image part")
            store = prepare_signal(args.image, IMAGE_SIDE, signals)
            for text in args.image_samplers.split(","):
                jobs.append(
                    ("image", text, store, args.image_seed, [*IMAGE_MODEL, f"log.every={args.image_every}"])
                )
        seeds = [int(s) for s in args.seeds.split(",") if s]
        volume_model = (
            VOLUME_SIREN if args.volume_model == "siren" else volume_hashgrid(args.volume_resolution)
        )
        for part, source, prepare, model in (
            ("audio", args.audio, audio_excerpt, AUDIO_MODEL),
            ("volume", args.mesh, partial(volume_store, resolution=args.volume_resolution), volume_model),
        ):
            if part not in parts:
                continue
            if source is None:
                raise UserError(f"--{'audio' if part == 'audio' else 'mesh'} is required for the {part} part")
            for text in args.modality_samplers.split(","):
                name = variant(text)[0]
                if name in SAMPLERS and SAMPLERS[name][0].needs_image:
                    raise UserError(f"--modality-samplers: {name} works on images only, not on {part}")
            store = prepare(source, signals)
            for seed in seeds:
                for text in args.modality_samplers.split(","):
                    jobs.append((part, text, store, seed, [*model, "log.every=20"]))
        results_path = args.out / "large_cpu.json"
        results = {"machine": machine(), "seconds": args.seconds, "runs": []}
        for part, text, store, seed, settings in jobs:
            sampler, extra = variant(text)
            model = ""
            if part == "volume" and (args.volume_model, args.volume_resolution) != ("siren", 64):
                model = f"-{args.volume_model}-{args.volume_resolution}"
            tag = f"{part}{model}-{text.replace(':', '_').replace('=', '-').replace('+', '_')}-{seed}"
            run = fit(store, args.out / "runs" / tag, sampler, seed, [*settings, *extra], args.seconds)
            run.update(part=part, variant=text)
            results["runs"].append(run)
            results_path.write_text(json.dumps(results, indent=1))
            extra_metric = {k: run[k] for k in ("si_snr", "iou") if k in run}
            print(
                f"{tag}: {run['steps']} steps, {run['ms_per_step']:.0f} CPU ms/step, PSNR {run['psnr']:.2f}"
                + "".join(f", {k} {v:.3f}" for k, v in extra_metric.items()),
                flush=True,
            )
        for part, metric in (("image", "psnr"), ("audio", "si_snr"), ("volume", "iou")):
            runs = [r for r in results["runs"] if r["part"] == part]
            if runs:
                print(f"\n{part} ({args.seconds:.0f} CPU s per fit)\n{markdown(runs, metric)}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
