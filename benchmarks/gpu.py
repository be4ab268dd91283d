"""The GPU targets of large-signal training in one process, without Ray, printed as a table last.

Parts, in order (each run is skipped, and says so, if it would end past ``--deadline-s``):
1. The fast step checked: the graphed step (``train.cuda_graphs=true``) against the eager one
   (``false``) from the same start, for uniform, the default sampler, ``error-map`` and uniform
   with the residual emphasis —
   selections and parameters after some steps, then the ms/step of each — and the lines that
   make the host wait for the GPU in 20 graphed steps of the default sampler (on a CPU both
   steps are eager: only the plumbing is checked); the epoch order computed on the GPU (one
   Triton kernel) against the CPU's, and its time per call; the hash grid's Triton kernels
   against the PyTorch grid (output, gradients, J·v), before the parts that train with them.
2. SIREN 6x256 on DIV2K ``01.png``, Adam 1e-4, ratio 0.2, 2000 steps, PSNR every 20 steps off
   the training clock: uniform, the default sampler, ``nint-paper``; uniform and the default
   sampler again with TF32 matrix products.
3. The hash grid (16 levels x 2 features, 3x64, Adam 1e-2, 2^18 samples per step) on the 14.7 MP
   photograph for ``--large-seconds`` of training with the default sampler at the default
   logging (its wall-clock is a target) and with uniform sampling.
4. A generated 1-gigapixel signal (32768², written on this machine's CPUs while parts 1-3 run)
   fitted with the hash grid for ``--giga-seconds``: samples/s, peak GPU memory, PSNR curve.
5. The default sampler against uniform on a second large photograph, as in part 3.
6. Only when ``--samplers`` names some: each of them on the 14.7 MP photograph as in part 3
   (the baselines that need no full pass, ``soft`` and ``evos``, and ``error-map``, against the
   default sampler and uniform). The nine-minute plan leaves no time for it: run it on its own,
   ``--parts samplers --samplers uniform,nint,soft,evos,error-map`` into a fresh ``--out``.

    python benchmarks/gpu.py --images DIR --out OUT [--deadline-s 515] [--parts P,...] [--smoke]

DIR holds ``01.png``, the photograph ``--large`` and the photograph ``--second``. ``--smoke``
scales everything down (tiny images made from the bundled sample, seconds instead of minutes)
so that the whole script can be checked end to end on a CPU.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from nint_dist.config import SamplerConfig, load_config
from nint_dist.devices import resolve_device
from nint_dist.ingest import image_signal, write_signal
from nint_dist.models.hashgrid import HashGrid
from nint_dist.samplers import settle
from nint_dist.selection import epoch_order
from nint_dist.training import Loop
from nint_dist.triton_support import runs_on

STARTED = time.time()
DEFAULT = settle(SamplerConfig(), "image").name
"""What the configuration's default sampler (``auto``) runs on images: the one the targets name."""
SIREN = ["model.name=siren", "model.layers=6", "model.width=256", "train.lr=1e-4", "sampler.ratio=0.2"]
HASH = [
    "model.name=hashgrid",
    "model.layers=3",
    "model.width=64",
    "model.hashgrid.levels=16",
    "model.hashgrid.features=2",
    "train.lr=1e-2",
    "sampler.pass_size=262144",
    "log.eval_pass_size=262144",
    "train.steps=100000000",
]
BATCH = 2**18
"""Samples per step on the large signals."""
PARTS = ("graph", "siren", "large", "giga", "second", "samplers")


def device() -> torch.device:
    return resolve_device("auto")


def elapsed() -> float:
    return time.time() - STARTED


def time_to(rows: list[dict], target: float) -> float | None:
    """Training seconds at which PSNR first reaches ``target`` (linear between evaluations)."""
    prev = {"train_seconds": 0.0, "psnr": 0.0}
    for row in rows:
        if row["psnr"] >= target:
            span = row["psnr"] - prev["psnr"]
            frac = (target - prev["psnr"]) / span if span > 0 else 1.0
            return prev["train_seconds"] + frac * (row["train_seconds"] - prev["train_seconds"])
        prev = row
    return None


def run(signal: Path, run_dir: Path, settings: list[str], export: bool = False) -> dict:
    """One fit in this process; its final.json plus its metrics rows."""
    run_dir.mkdir(parents=True)
    base = [f"data.path={signal}", f"run.dir={run_dir}", "run.backend=local", "train.cuda_graphs=true"]
    cfg = load_config(None, [*base, *settings])
    if device().type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # without export: no final reconstruction files (minutes for a gigapixel)
    final = Loop.in_process(cfg, device(), export=export).run()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    phases = ("score", "select", "exchange", "train", "loop")
    steps = max(final["steps"], 1)
    return {
        **{
            k: final[k]
            for k in ("psnr", "steps", "train_seconds", "wall_seconds", "eval_seconds", "ms_per_step")
        },
        **{f"ms_{p}": 1000 * final[f"total_{p}_s"] / steps for p in phases},
        "compile_seconds": final["compile_seconds"],
        "peak_memory_gb": final["peak_memory_max_bytes"] / 1e9,
        "samples_per_step": rows[-1]["num_selected"] if rows else 0,
        "curve": [(r["step"], r["train_seconds"], r["wall_seconds"], r["psnr"]) for r in rows],
        "rows": rows,
    }


class Bench:
    """The results so far, saved after every run, and the deadline."""

    def __init__(self, out: Path, deadline: float):
        self.out, self.deadline = out, deadline
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        self.results: dict = {"device": name, "torch": torch.__version__, "runs": {}, "skipped": []}
        self.hash_extra: list[str] = []
        """Overrides of the hash grid's settings (the smoke test's smaller grid)."""
        self.overhead = 20.0
        """Expected wall seconds of a run beyond its training budget (loading, final evaluation)."""

    def save(self) -> None:
        (self.out / "gpu_results.json").write_text(json.dumps(self.results, indent=1))

    def fits(self, label: str, seconds: float) -> bool:
        if elapsed() + seconds + self.overhead <= self.deadline:
            return True
        print(f"skipped {label}: would end past the deadline ({self.deadline:.0f} s)", flush=True)
        self.results["skipped"].append(label)
        return False

    def fit(
        self, label: str, signal: Path, settings: list[str], seconds: float, export: bool = False
    ) -> dict | None:
        if not self.fits(label, seconds):
            return None
        started = time.time()
        try:
            r = run(signal, self.out / f"run-{len(self.results['runs'])}", settings, export)
        except Exception as e:  # one failed run must not cost the others
            print(f"{label} failed: {e!r}", flush=True)
            self.results["runs"][label] = {"error": repr(e)}
            self.save()
            return None
        r["process_seconds"] = time.time() - started
        if seconds > 0:
            self.overhead = max(10.0, r["process_seconds"] - r["train_seconds"])
        rows = r.pop("rows")
        self.results["runs"][label] = r
        self.save()
        print(
            f"{label}: {r['steps']} steps, {r['train_seconds']:.2f} s training,"
            f" {r['wall_seconds']:.1f} s wall, {r['ms_per_step']:.3f} ms/step, PSNR {r['psnr']:.2f},"
            f" peak {r['peak_memory_gb']:.2f} GB",
            flush=True,
        )
        r["rows"] = rows
        return r


def graph_check(bench: Bench, signal: Path, settings: list[str], steps: int) -> None:
    """Part 1: the graphed step against the eager one, and the host synchronisations left (on a
    CPU both steps are eager: only the plumbing is checked)."""
    try:
        bench.results["graph_check"] = compare_steps(bench, signal, settings, steps)
        count = 1 << 19 if device().type == "cuda" else 4096
        bench.results["graph_check"]["epoch_order"] = order_check(count)
        bench.results["graph_check"]["grid_kernels"] = grid_check()
    except Exception as e:  # the timed runs still follow
        print(f"graph check failed: {e!r}", flush=True)
        bench.results["graph_check"] = {"error": repr(e)}
    bench.save()


def order_check(count: int) -> dict:
    """The epoch order on the device (one Triton kernel on CUDA) against the CPU's PyTorch
    version, for the first ``count`` positions of an epoch of 01.png's and the 14.7 MP
    photograph's size, and the device's time per call."""
    out: dict = {"match": True}
    positions = torch.arange(count, device=device())
    sync = torch.cuda.synchronize if device().type == "cuda" else (lambda: None)
    for num_points in (2040 * 1356, 5120 * 2880):
        order = epoch_order(42, 3, positions, num_points)
        out["match"] &= bool(torch.equal(order.cpu(), epoch_order(42, 3, positions.cpu(), num_points)))
        sync()
        started = time.perf_counter()
        for epoch in range(20):
            epoch_order(42, epoch, positions, num_points)
        sync()
        out[f"ms_per_call_{num_points}"] = 1000 * (time.perf_counter() - started) / 20
    print(f"epoch order check: {out}", flush=True)
    return out


def grid_check(points: int = 65536, tolerance: float = 1e-4) -> dict:
    """The hash grid's Triton kernels against the PyTorch grid on the GPU, before parts 3-6
    train with them: the output, the gradients of the tables and of the coordinates, and a J·v
    in the parameters (NINT's NTK scores), as the largest error relative to the largest value.
    Float32, part 3's grid (16 levels x 2 features, 2^20 table, tables spread over [-1, 1])."""
    if not runs_on(torch.empty(0, device=device())):
        return {"skipped": "the kernels run on CUDA (the tests check them interpreted)", "match": True}
    settings = dict(layers=3, width=64, levels=16, log2_size=20, features=2)
    torch.manual_seed(0)
    reference = HashGrid(2, 3, **settings).to(device())
    torch.nn.init.uniform_(reference.tables, -1.0, 1.0)
    fused = HashGrid(2, 3, backend="triton", **settings).to(device())
    fused.load_state_dict(reference.state_dict())
    coords = torch.rand(points, 2, device=device()) * 2.2 - 1.1  # some outside [-1, 1]: clamped
    target = torch.rand(points, 3, device=device())
    params = {name: p.detach() for name, p in reference.named_parameters()}
    tangents = {name: torch.randn_like(p) for name, p in params.items()}
    found = {}
    for name, model in (("torch", reference), ("triton", fused)):
        x = coords.clone().requires_grad_()
        y = model(x)
        (y - target).pow(2).mean().backward()
        def f(p: dict, model: HashGrid = model) -> torch.Tensor:
            return torch.func.functional_call(model, p, (coords[:4096],))

        _, along = torch.func.jvp(f, (params,), (tangents,))
        found[name] = {"forward": y.detach(), "tables": model.tables.grad, "coords": x.grad, "jvp": along}
    errors = {}
    for key, expected in found["torch"].items():
        scale = expected.abs().max().clamp_min(1e-30)
        errors[key] = float((found["triton"][key] - expected).abs().max() / scale)
    out = {"relative_errors": errors, "match": all(e <= tolerance for e in errors.values())}
    print(f"hash grid kernels check: {out}", flush=True)
    return out


def compare_steps(bench: Bench, signal: Path, settings: list[str], steps: int) -> dict:
    out: dict = {}
    variants = {  # error-map and the emphasis: a graphed pass that returns residuals
        "uniform": ["sampler.name=uniform"],
        DEFAULT: [f"sampler.name={DEFAULT}"],
        "error-map": ["sampler.name=error-map"],
        "uniform-emphasis": ["sampler.name=uniform", "sampler.emphasis.power=1"],
    }
    for sampler, chosen in variants.items():
        trainers = {}
        for mode in ("true", "false"):
            folder = bench.out / f"graph-check-{sampler}-{mode}"
            folder.mkdir(parents=True)
            cfg = load_config(
                None,
                [
                    f"data.path={signal}",
                    f"run.dir={folder}",
                    "run.backend=local",
                    *settings,
                    *chosen,
                    f"train.cuda_graphs={mode}",
                    "train.steps=1000",
                ],
            )
            trainers[mode] = Loop.in_process(cfg, device())
        same_selections = True
        for _ in range(steps):
            graphed, _ = trainers["true"].step()
            eager, _ = trainers["false"].step()
            same_selections &= bool(torch.equal(graphed.indices, eager.indices))
        pairs = zip(trainers["true"].model.parameters(), trainers["false"].model.parameters(), strict=True)
        diff = max(float((a - b).detach().abs().max()) for a, b in pairs)
        scale = max(float(p.detach().abs().max()) for p in trainers["false"].model.parameters())
        ms = {}
        for mode, trainer in trainers.items():  # each alone: the comparison waited at every step
            trainer.clock.close_block()
            for _ in range(steps):
                trainer.step()
            ms[mode] = 1000 * sum(trainer.clock.close_block().values()) / steps
        out[sampler] = {
            "graphed": trainers["true"].graphed is not None,
            "steps": steps,
            "same_selections": same_selections,
            "max_abs_param_diff": diff,
            "max_abs_param": scale,
            "match": same_selections and diff <= 1e-4 * scale,
            "ms_per_step_graphed": ms["true"],
            "ms_per_step_eager": ms["false"],
        }
        if sampler == DEFAULT and device().type == "cuda":
            out["host_syncs_per_20_steps"] = host_syncs(trainers["true"], 20)
        print(f"graph check {sampler}: {out[sampler]}", flush=True)
    return out


def host_syncs(trainer: Loop, steps: int) -> dict[str, int]:
    """Which lines make the host wait for the GPU during ``steps`` training steps."""
    syncs: dict[str, int] = {}
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(steps):
                trainer.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        where = f"{Path(w.filename).name}:{w.lineno}"
        syncs[where] = syncs.get(where, 0) + 1
    return syncs


def hash_settings(bench: Bench, signal: Path, seconds: float) -> list[str]:
    """The hash grid for a signal: finest level at its longest side, table 2^(log2 N − 4) within
    [2^12, 2^22] (2^20 for 14.7 MP), 2^18 samples per step."""
    import zarr

    shape = zarr.open_array(str(signal), mode="r").shape[:-1]
    num_points = math.prod(shape)
    table = max(12, min(22, math.ceil(math.log2(num_points)) - 4))
    extra = ["model.hashgrid.backend=auto"] if device().type == "cuda" else []  # Triton where installed
    return [
        *HASH,
        *extra,
        f"model.hashgrid.max_resolution={max(shape)}",
        f"model.hashgrid.log2_size={table}",
        f"sampler.ratio={min(BATCH / num_points, 0.5)}",
        f"train.max_seconds={seconds}",
        *bench.hash_extra,
    ]


def head_to_head(bench: Bench, name: str, signal: Path, seconds: float, default_logging: bool) -> None:
    """The default sampler and uniform on one large signal for ``seconds`` of training each."""
    quiet = [] if default_logging else ["log.tensorboard=false", "log.every=100"]
    bench.fit(
        f"{name} hash {DEFAULT}",
        signal,
        [*hash_settings(bench, signal, seconds), *quiet],
        seconds,
        default_logging,
    )
    uniform = ["sampler.name=uniform", "log.tensorboard=false", "log.every=100"]
    bench.fit(f"{name} hash uniform", signal, [*hash_settings(bench, signal, seconds), *uniform], seconds)


def ingest(image: Path, store: Path) -> Path:
    if not store.exists():
        write_signal(*image_signal(image), store, progress=False)
    return store


def smoke_images(folder: Path, names: list[str]) -> Path:
    """Small stand-ins for the photographs, cut from the bundled sample image."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sample = Image.open(Path(__file__).resolve().parents[1] / "nint_dist" / "assets" / "sample.png").convert(
        "RGB"
    )
    for name, size in zip(names, [(48, 48), (192, 128), (160, 96)], strict=True):
        sample.resize(size).save(folder / name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="folder with 01.png and the two photographs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--large", default="safelanding_5120x2880.jpg")
    parser.add_argument("--second", default="fallenleaf_2560x1600.jpg")
    parser.add_argument("--steps", type=int, default=2000, help="SIREN steps on 01.png")
    parser.add_argument("--large-seconds", type=float, default=60.0)
    parser.add_argument("--giga", default="32768x32768", help="generated grid ('' to skip)")
    parser.add_argument("--giga-seconds", type=float, default=150.0)
    parser.add_argument("--deadline-s", type=float, default=515.0, help="wall seconds for all runs")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which of {','.join(PARTS)} to run")
    parser.add_argument("--samplers", default="", help="part 6: samplers fitted on --large (comma-separated)")
    parser.add_argument("--smoke", action="store_true", help="everything tiny: a plumbing check on a CPU")
    args = parser.parse_args()
    parts = {p for p in args.parts.split(",") if p}
    if unknown := sorted(parts - set(PARTS)):
        parser.error(f"--parts: unknown {', '.join(unknown)} (choose from {', '.join(PARTS)})")
    args.out.mkdir(parents=True, exist_ok=True)
    siren, graph_steps = SIREN, 50
    if args.smoke:
        args.images = smoke_images(args.out / "images", ["01.png", args.large, args.second])
        args.steps, args.large_seconds, args.giga_seconds, args.giga = 40, 2.0, 3.0, "128x128"
        siren, graph_steps = [*SIREN, "model.layers=3", "model.width=32"], 5
    if args.images is None:
        parser.error("--images is required (or --smoke)")
    giga = args.out / "giga.zarr"
    maker = None
    if "giga" in parts and args.giga and not giga.exists():  # on the CPUs, beside parts 1-3 (one core)
        env = {**os.environ, "DASK_NUM_WORKERS": str(max(1, (os.cpu_count() or 2) - 4))}
        log = open(args.out / "generate.log", "w")
        command = [sys.executable, "-m", "nint_dist.generate", str(giga), "--shape", args.giga]
        maker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    bench = Bench(args.out, args.deadline_s)
    if args.smoke:
        bench.hash_extra = ["model.hashgrid.levels=4", "model.width=16"]
    small = ingest(args.images / "01.png", args.out / "01.zarr")
    large = ingest(args.images / args.large, args.out / f"{Path(args.large).stem}.zarr")
    second = ingest(args.images / args.second, args.out / f"{Path(args.second).stem}.zarr")
    bench.results["settings"] = vars(args) | {"images": str(args.images), "out": str(args.out)}

    if "graph" in parts:
        graph_check(bench, small, siren, graph_steps)
    per_step = [
        *siren,
        f"train.steps={args.steps}",
        "log.every=20",
        "log.eval_share=0",
        "log.tensorboard=false",
    ]
    if "siren" in parts:
        for name in ("uniform", DEFAULT, "nint-paper"):
            bench.fit(f"01.png siren {name}", small, [*per_step, f"sampler.name={name}"], 0.0)
        for name in ("uniform", DEFAULT):  # the card's TensorFloat-32 rate: what a 1 ms step needs
            settings = [*per_step, f"sampler.name={name}", "train.tf32=true"]
            bench.fit(f"01.png siren {name}, tf32", small, settings, 0.0)

    if "large" in parts:
        head_to_head(bench, Path(args.large).stem, large, args.large_seconds, default_logging=True)
    if maker is not None:
        print("waiting for the generated signal…", flush=True)
        maker.wait()
    if "giga" in parts and giga.exists():
        settings = [*hash_settings(bench, giga, args.giga_seconds), "log.tensorboard=false", "log.every=250"]
        bench.fit(f"generated {args.giga} hash {DEFAULT}", giga, settings, args.giga_seconds)
    elif "giga" in parts and args.giga:
        bench.results["skipped"].append(f"generated {args.giga}: the generator failed (see generate.log)")
    if "second" in parts:
        head_to_head(bench, Path(args.second).stem, second, args.large_seconds, default_logging=False)
    if "samplers" in parts:
        quiet = ["log.tensorboard=false", "log.every=100"]
        for name in [n for n in args.samplers.split(",") if n]:
            settings = [*hash_settings(bench, large, args.large_seconds), f"sampler.name={name}", *quiet]
            bench.fit(f"{Path(args.large).stem} hash {name}, quiet", large, settings, args.large_seconds)
    bench.results["total_seconds"] = elapsed()
    bench.save()
    print_tables(bench.results, args)


def fmt(value, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def print_tables(results: dict, args) -> None:
    runs = results["runs"]
    ok = {k: v for k, v in runs.items() if "error" not in v}
    print(
        f"\n## {results['device']}, torch {results['torch']},"
        f" {results.get('total_seconds', 0):.0f} s in all\n"
    )
    print(
        "| run | steps | training s | wall s | eval s | ms/step | score | select | train | PSNR | peak GB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, r in ok.items():
        print(
            f"| {label} | {r['steps']} | {r['train_seconds']:.2f} | {r['wall_seconds']:.1f}"
            f" | {r['eval_seconds']:.1f}"
            f" | {r['ms_per_step']:.3f} | {r['ms_score']:.3f} | {r['ms_select']:.3f} | {r['ms_train']:.3f}"
            f" | {r['psnr']:.2f} | {r['peak_memory_gb']:.2f} |"
        )
    for label, r in runs.items():
        if "error" in r:
            print(f"| {label} | failed: {r['error']} |")
    print(f"\nskipped: {results['skipped'] or 'nothing'}; graph check: {results.get('graph_check')}")
    large, second = Path(args.large).stem, Path(args.second).stem
    rows = []

    def row(target: str, measured, limit, met: bool | None) -> None:
        rows.append((target, measured, limit, "—" if met is None else ("yes" if met else "no")))

    def curve(label: str) -> list[dict]:
        return [{"train_seconds": c[1], "psnr": c[3]} for c in ok[label]["curve"]] if label in ok else []

    uniform, default = ok.get(f"{large} hash uniform"), ok.get(f"{large} hash {DEFAULT}")
    if uniform:
        rate = uniform["steps"] * uniform["samples_per_step"] / uniform["train_seconds"] / 1e6
        row(f"hash grid, uniform, {large}: M samples/s", f"{rate:.4g}", "≥ 150", rate >= 150)
    if uniform and default:
        ratio = default["ms_per_step"] / uniform["ms_per_step"]
        row(f"{DEFAULT} step / uniform step (hash grid, {large})", f"{ratio:.2f}", "≤ 1.3", ratio <= 1.3)
    if default:
        reach = time_to(curve(f"{large} hash {DEFAULT}"), 36.0)
        row(f"{large}: s to 36 dB, {DEFAULT}", fmt(reach), f"≤ {args.large_seconds:.0f}", reach is not None)
    for name in (large, second):  # final PSNRs (whole signal), both runs stopped by the same budget
        a, b = ok.get(f"{name} hash {DEFAULT}"), ok.get(f"{name} hash uniform")
        if a and b:
            gap = a["psnr"] - b["psnr"]
            measured = (
                f"{gap:+.2f} dB ({a['psnr']:.2f} after {a['train_seconds']:.1f} s vs {b['psnr']:.2f}"
                f" after {b['train_seconds']:.1f} s)"
            )
            row(f"{name}: {DEFAULT} − uniform at the budget", measured, "≥ +0.50 dB", gap >= 0.5)
    for suffix in ("", ", tf32"):  # float32 training, then TensorFloat-32 matrix products
        u, n = ok.get(f"01.png siren uniform{suffix}"), ok.get(f"01.png siren {DEFAULT}{suffix}")
        if u:
            ms = u["ms_per_step"]
            row(f"SIREN 6x256, 01.png: uniform{suffix} ms/step", f"{ms:.3f}", "≤ 1.0", ms <= 1.0)
        if n:
            reach = time_to(curve(f"01.png siren {DEFAULT}{suffix}"), 30.0)
            row(f"{DEFAULT}{suffix}: s to 30 dB", fmt(reach), "≤ 1.2", reach is not None and reach <= 1.2)
            own = time_to(curve(f"01.png siren uniform{suffix}"), 30.0) if u else None
            limit = None if own is None else 0.8 * own
            met = reach is not None and limit is not None and reach <= limit
            row(f"{DEFAULT}{suffix}: s to 30 dB vs 0.8 × uniform{suffix}'s", fmt(reach), fmt(limit), met)
    n, p = ok.get(f"01.png siren {DEFAULT}"), ok.get("01.png siren nint-paper")
    if n and p:
        gap = n["psnr"] - p["psnr"]
        row(f"{DEFAULT} − nint-paper at {args.steps} steps", f"{gap:+.2f} dB", "≥ −0.30 dB", gap >= -0.3)
    if default:
        limit = 1.15 * default["train_seconds"] + 10
        row(
            f"wall-clock at default logging ({large}, {DEFAULT})",
            f"{default['wall_seconds']:.1f} s",
            f"{limit:.1f} s",
            default["wall_seconds"] <= limit,
        )
    giga = ok.get(f"generated {args.giga} hash {DEFAULT}")
    if giga:
        rate = giga["steps"] * giga["samples_per_step"] / giga["train_seconds"] / 1e6
        row(
            f"gigapixel {args.giga}: {giga['train_seconds']:.0f} s without running out of memory",
            f"{rate:.4g} M samples/s, peak {giga['peak_memory_gb']:.1f} GB, PSNR {giga['psnr']:.2f}",
            "—",
            True,
        )
    elif "giga" in args.parts.split(","):
        row(f"gigapixel {args.giga}", "not run", "—", False)
    print(f"\n### Targets ({results['device']})\n")
    print("| target | measured | limit | met |")
    print("|---|---|---|---|")
    for target, measured, limit, met in rows:
        print(f"| {target} | {measured} | {limit} | {met} |")
    print(
        "| CPU rows (audio, SDF, 2048×1280 regression check) | measured on a CPU,"
        " not by this script | — | — |"
    )


if __name__ == "__main__":
    main()
