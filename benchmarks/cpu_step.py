"""What one training step costs on a CPU, and what the CPU training settings change: passes of
``train.micro_batch`` rows and ``devices.keep_freed_cpu_memory``.

For the signals and models of ``large_cpu.py`` (the audio excerpt, the SDF volume, the
photograph with the hash grid) and the samplers ``uniform`` and ``nint``, each setting runs in
a fresh process (the allocator's setting cannot be undone in one), one thread:

- ``one pass``: the whole selection in one forward/backward, glibc's allocator as it comes
  (what these settings were before);
- ``passes``: the default passes (4096 rows for dense models on CPUs), allocator as it comes;
- ``default``: the default passes and the loop's allocator setting (what a fit does now).

Each process trains ``--warmup`` steps (past ``nint``'s NTK phase, which ends by re-selection
60), then reports the mean CPU ms of the next ``--steps`` steps.

    python benchmarks/cpu_step.py --audio bach.wav --mesh bunny.obj --image PHOTO.jpg --out OUT.json
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from large_cpu import AUDIO_MODEL, IMAGE_MODEL, IMAGE_SIDE, VOLUME_MODEL, audio_excerpt, volume_store

from nint_dist.bench import machine, prepare_signal
from nint_dist.errors import UserError, run_cli

SETTINGS = {
    "one pass": (["train.micro_batch=262144"], False),
    "passes": ([], False),
    "default": ([], True),
}
"""name → (overrides, whether the loop's allocator setting is made)."""

ONE_FIT = """
import json, shutil, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
import nint_dist.training.loop as loop_module
from nint_dist.config import load_config
from nint_dist.training import Loop

store, run_dir, sampler, keep, warmup, steps, *overrides = sys.argv[1:]
if keep != "1":
    loop_module.keep_freed_cpu_memory = lambda: False  # glibc's allocator as it comes
shutil.rmtree(run_dir, ignore_errors=True)
Path(run_dir).mkdir(parents=True)
cfg = load_config(None, [f"data.path={store}", f"run.dir={run_dir}", f"sampler.name={sampler}",
    "train.steps=1000000", "run.backend=local", "log.tensorboard=false", "log.progress=false",
    "log.every=1000000", *overrides])
loop = Loop.in_process(cfg, "cpu")
for _ in range(int(warmup)):
    loop.step()
started = time.process_time()
for _ in range(int(steps)):
    loop.step()
seconds = time.process_time() - started
print(json.dumps({"ms_per_step": 1000 * seconds / int(steps)}))
"""


def one(
    store: Path, run_dir: Path, sampler: str, setting: str, settings: list[str], warmup: int, steps: int
) -> float:
    """CPU ms per step of one fit under ``setting``, in a fresh process."""
    overrides, keep = SETTINGS[setting]
    argv = [
        str(store),
        str(run_dir),
        sampler,
        "1" if keep else "0",
        str(warmup),
        str(steps),
        *settings,
        *overrides,
    ]
    done = subprocess.run([sys.executable, "-c", ONE_FIT, *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{sampler} {setting}: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["ms_per_step"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--audio", type=Path, required=True, help="a WAV file of at least 3 s")
    parser.add_argument("--mesh", type=Path, required=True, help="a closed OBJ mesh")
    parser.add_argument("--image", type=Path, required=True, help="a large photograph")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--warmup", type=int, default=62)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)

    def body() -> int:
        for path in (args.audio, args.mesh, args.image):
            if not path.is_file():
                raise UserError(f"file not found: {path}")
        work = args.out.parent / f"{args.out.stem}-work"
        signals = work / "signals"
        signals.mkdir(parents=True, exist_ok=True)
        parts = {
            "audio": (audio_excerpt(args.audio, signals), AUDIO_MODEL),
            "volume": (volume_store(args.mesh, signals), VOLUME_MODEL),
            "image": (prepare_signal(args.image, IMAGE_SIDE, signals), IMAGE_MODEL),
        }
        results = {"machine": machine(), "warmup": args.warmup, "steps": args.steps, "rows": []}
        print("| signal | sampler | " + " | ".join(f"{s} (CPU ms)" for s in SETTINGS) + " |")
        print("|---|---|" + "---|" * len(SETTINGS))
        for part, (store, model) in parts.items():
            for sampler in ("uniform", "nint"):
                row = {"signal": part, "sampler": sampler}
                for setting in SETTINGS:
                    run_dir = work / "runs" / f"{part}-{sampler}-{setting.replace(' ', '-')}"
                    row[setting] = one(store, run_dir, sampler, setting, model, args.warmup, args.steps)
                results["rows"].append(row)
                args.out.write_text(json.dumps(results, indent=1))
                print(
                    f"| {part} | {sampler} | " + " | ".join(f"{row[s]:.0f}" for s in SETTINGS) + " |",
                    flush=True,
                )
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
