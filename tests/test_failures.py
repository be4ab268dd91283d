"""Failures that must be loud and safe: a diverged model, checkpoints that would run code or are
all damaged, unverifiable stores, internal errors, a GPU shortage on a cluster."""

import json
from pathlib import Path

import pytest
import torch

from nint_dist import checkpoint, launch
from nint_dist.errors import RunFailed, UserError, run_cli
from tests.helpers import EXACT_FIT, free_port, launch_fit, leave_spawned_rank, make_tiny_signal

SETTINGS = [*EXACT_FIT, "log.progress=false", "log.tensorboard=false"]


def fit(signal: Path, run_dir: Path, *extra: str) -> int:
    return launch_fit(signal, run_dir, *SETTINGS, *extra)


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error")]
    assert len(err) == 1, err
    return err[0]


# ---------------------------------------------------------------- a diverged model


def test_a_diverged_run_stops_at_the_same_step_on_one_and_three_workers(
    ray_session, tiny_signal, tmp_path, capsys
):
    """lr=1e30 in float32: the loss overflows within a few steps. The run stops at the next
    evaluation with one line naming the step, exit 1, no retry, checkpoints kept — the same line
    on one and on three workers."""
    common = ["train.dtype=float32", "train.lr=1e30", "train.steps=12", "log.every=4"]
    common += ["train.checkpoint_every=2", "train.max_failures=1"]
    lines = {}
    for workers in (1, 3):
        run_dir = tmp_path / f"w{workers}"
        assert fit(tiny_signal, run_dir, *common, f"train.workers={workers}") == 1
        lines[workers] = one_error_line(capsys).replace(str(run_dir), "RUN")
        assert (run_dir / "checkpoints" / "step_000002").is_dir()  # what was written is kept
        assert not (run_dir / "final.json").exists()
        starts = json.loads((run_dir / "workers" / "rank_0.json").read_text())["starts"]
        assert starts == 1  # stopped on purpose: not retried
    assert lines[1] == lines[3]
    assert lines[1].startswith("error: step ") and "non-finite" in lines[1] and "train.lr" in lines[1]


def _nan_topk(rank: int, world: int, port: int, signal: str, folder: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    from nint_dist.comm import Comm
    from nint_dist.config import ModelConfig
    from nint_dist.models import build_model
    from nint_dist.shard import ShardContext, load_shard
    from nint_dist.signal import open_signal

    array, spec = open_signal(signal)
    shard = load_shard(array, spec, world, rank, torch.device("cpu"), torch.float64)
    model = build_model(2, 3, ModelConfig(layers=2, width=4)).double()
    ctx = ShardContext(model, shard, Comm(rank, world), pass_size=64, seed=0, total_steps=1)
    nan = torch.full((shard.size,), float("nan"), dtype=torch.float64)  # a diverged model's scores
    torch.save(ctx.global_topk(nan, 200), Path(folder) / f"rank{rank}.pt")  # k > a shard's 160
    if world > 1:
        leave_spawned_rank()


def test_nan_scores_select_the_same_coordinates_on_one_and_three_workers(tiny_signal, tmp_path):
    """The merge pads each worker's list to k with (−inf, padding index); NaN scores rank as −inf,
    and the padding must sort after every real index so that it is never picked."""
    import torch.multiprocessing as mp

    _nan_topk(0, 1, 0, str(tiny_signal), str(tmp_path))
    single = torch.load(tmp_path / "rank0.pt")
    port = free_port()
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_nan_topk, args=(r, 3, port, str(tiny_signal), str(tmp_path))) for r in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    merged = torch.load(tmp_path / "rank0.pt")
    assert merged.min() >= 0 and torch.equal(merged, single)


def test_a_diverged_local_run_gives_the_same_line(tiny_signal, tmp_path, capsys):
    common = ["train.lr=1e30", "train.steps=12", "log.every=4", "run.backend=local", "train.workers=1"]
    assert fit(tiny_signal, tmp_path / "run", *common) == 1
    line = one_error_line(capsys)
    assert line.startswith("error: step ") and "non-finite" in line


# ---------------------------------------------------------------- checkpoints


class _RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(_RunsCode.marker),))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    folder = tmp_path / "step_000004"
    folder.mkdir()
    _RunsCode.marker = str(tmp_path / "ran")
    checkpoint.write_state({"step": 4, "model": _RunsCode()}, folder)
    with pytest.raises(UserError, match="refusing to load it"):
        checkpoint.load(folder)
    assert not (tmp_path / "ran").exists()


def test_a_real_checkpoint_loads_weights_only(tiny_signal, tmp_path):
    assert fit(tiny_signal, tmp_path / "run", "train.steps=2", "run.backend=local", "train.workers=1") == 0
    state = checkpoint.load(checkpoint.latest(tmp_path / "run"))
    assert state["step"] == 2 and isinstance(state["torch_rng"], torch.Tensor)


def test_a_restart_with_every_checkpoint_damaged_fails_instead_of_starting_over(tiny_signal, tmp_path):
    """What Ray Train's automatic restart meets: the loop of the restarted workers finds only
    damaged checkpoints. It stops (one line through failure.json under Ray), never trains from 0."""
    from nint_dist.config import load_config
    from nint_dist.training import Loop

    run_dir = tmp_path / "run"
    steps = ["train.steps=4", "train.checkpoint_every=2", "run.backend=local", "train.workers=1"]
    assert fit(tiny_signal, run_dir, *steps) == 0
    for folder in (run_dir / "checkpoints").iterdir():
        state = folder / checkpoint.STATE
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    cfg = load_config(run_dir / "config.yaml", [])
    with pytest.raises(RunFailed, match="every checkpoint .* is damaged"):
        Loop.in_process(cfg, "cpu")
    (run_dir / "checkpoints").rename(tmp_path / "moved")  # no checkpoint at all: a fresh start
    assert Loop.in_process(cfg, "cpu").steps_done == 0


# ---------------------------------------------------------------- internal errors


def test_only_user_errors_exit_2(capsys):
    def raises(error):
        def body():
            raise error

        return body

    assert run_cli(raises(UserError("bad input"))) == 2
    assert capsys.readouterr().err.strip() == "error: bad input"
    assert run_cli(raises(ValueError("an internal bug"))) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: internal error, ValueError: an internal bug (run with -v for the traceback)"]
    assert run_cli(raises(KeyError("k")), verbose=True) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: internal error, KeyError")


def test_config_mistakes_stay_user_errors(tmp_path, capsys):
    argv = ["configs/quickstart.yaml", "sampler.nint.ntk_score=tangent", f"run.dir={tmp_path}/r"]
    assert launch.main(argv) == 2
    assert "sampler.nint.ntk_score" in one_error_line(capsys)


# ---------------------------------------------------------------- messages


def _obj(path: Path, vertices, triangles) -> Path:
    lines = [f"v {x} {y} {z}" for x, y, z in vertices] + [
        f"f {a + 1} {b + 1} {c + 1}" for a, b, c in triangles
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


TETRA = [(0, 2, 1), (0, 1, 3), (1, 2, 3), (0, 3, 2)]  # closed, outward-consistent


def test_mesh_notes_say_what_was_found_and_what_was_done(tmp_path):
    from nint_dist.sources.mesh import read_mesh

    vertices = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, -1, 0), (0, 0, -1)]
    # two tetrahedra glued along the edge 0-1: no hole, one edge shared by four triangles
    glued = TETRA + [(0, 1, 4), (1, 5, 4), (0, 4, 5), (0, 5, 1)]
    (note,) = read_mesh(_obj(tmp_path / "glued.obj", vertices, glued), 8).notes
    assert note == (
        "glued.obj is not watertight: no holes, 1 non-manifold edge (shared by more than two triangles);"
        " kept the non-manifold edges as they are; inside/outside is a majority vote of rays along the"
        " three axes"
    )
    (note,) = read_mesh(_obj(tmp_path / "open.obj", vertices[:4], TETRA[1:]), 8).notes
    assert note.startswith("open.obj is not watertight: 1 hole (3 boundary edges); closed each hole")
    assert "non-manifold" not in note
    assert read_mesh(_obj(tmp_path / "closed.obj", vertices[:4], TETRA), 8).notes == []


# ---------------------------------------------------------------- stores without checksums


def _strip_checksums(store: Path, chunk_rows: int | None) -> None:
    import zarr

    from nint_dist.signal import ATTRS_KEY

    array = zarr.open_array(str(store), mode="r+")
    attrs = dict(array.attrs)[ATTRS_KEY]
    if chunk_rows is None:
        attrs.pop("checksums")
    else:
        attrs["checksums"]["chunk_rows"] = chunk_rows
    array.attrs[ATTRS_KEY] = attrs


@pytest.mark.parametrize(
    ("chunk_rows", "reason"),
    [(None, "it holds no checksums"), (8, "recorded for chunks of 8 rows")],
)
def test_an_unverifiable_store_is_said_once_and_refused_when_strict(
    tiny_signal, tmp_path, capsys, chunk_rows, reason
):
    _strip_checksums(tiny_signal, chunk_rows)
    local = ["train.steps=2", "run.backend=local", "train.workers=1"]
    assert fit(tiny_signal, tmp_path / "run", *local) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and reason in warnings[0] and "not verified" in warnings[0]
    assert fit(tiny_signal, tmp_path / "strict", *local, "data.verify=strict") == 2
    line = one_error_line(capsys)
    assert "data.verify=strict" in line and reason in line
    assert not (tmp_path / "strict").exists()
    assert fit(tiny_signal, tmp_path / "quiet", *local, "data.verify=false") == 0
    assert "warning" not in capsys.readouterr().err


def test_data_verify_takes_three_values(tmp_path):
    from nint_dist.config import ConfigError, load_config

    for value, expected in (("true", True), ("false", False), ("strict", "strict")):
        assert load_config(None, ["data.path=x.zarr", f"data.verify={value}"]).data.verify == expected
    with pytest.raises(ConfigError, match="data.verify must be true, false or strict"):
        load_config(None, ["data.path=x.zarr", "data.verify=sometimes"])


# ---------------------------------------------------------------- workers that raise or hang


def test_a_worker_that_raises_is_retried_then_one_line(ray_session, tiny_signal, tmp_path, capsys):
    import zarr

    zarr.open_array(str(tiny_signal), mode="r+")[12:16] = 7  # worker 1's chunk row 3, behind its checksum
    run_dir = tmp_path / "run"
    assert fit(tiny_signal, run_dir, "train.steps=4", "train.workers=2", "train.max_failures=1") == 1
    line = one_error_line(capsys)
    assert line.startswith("error: training failed") and "chunk row 3 (rows 12-15)" in line
    # the group was started, failed, restarted once, failed again. Worker 1 records each start
    # before it reads the damaged rows, so it counts both; worker 0 may be stopped before it records
    # a start (Ray ends the group as soon as worker 1 raises), so it counts one or two
    starts = {r: json.loads((run_dir / "workers" / f"rank_{r}.json").read_text())["starts"] for r in (0, 1)}
    assert starts[1] == 2 and starts[0] in (1, 2)


def test_a_worker_that_hangs_in_a_collective_fails_the_run_naming_it(
    ray_session, tiny_signal, tmp_path, capsys
):
    """SIGSTOP freezes worker 1 mid-run; worker 0 waits in the next collective until
    train.collective_timeout_s and the run ends with one line that names worker 1."""
    import os
    import signal
    import threading
    import time

    run_dir = tmp_path / "run"
    args = ["train.steps=1000000", "train.max_seconds=300", "train.workers=2", "train.max_failures=0"]
    args += ["train.collective_timeout_s=5", "log.every=50"]
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(code=fit(tiny_signal, run_dir, *args)))
    thread.start()
    deadline = time.time() + 300
    while not (run_dir / "metrics.jsonl").exists() or not (run_dir / "workers" / "rank_1.json").exists():
        assert time.time() < deadline and thread.is_alive(), "the run ended before it trained"
        time.sleep(0.1)
    victim = json.loads((run_dir / "workers" / "rank_1.json").read_text())["pid"]
    os.kill(victim, signal.SIGSTOP)
    thread.join(timeout=240)
    if thread.is_alive():  # the run did not end: let the worker go on, so the test can fail cleanly
        os.kill(victim, signal.SIGCONT)
    assert outcome.get("code") == 1
    line = one_error_line(capsys)
    assert f"worker 1 (pid {victim}" in line and "collective_timeout_s=5" in line, line


# ---------------------------------------------------------------- a cluster without the GPUs


def test_a_cluster_short_of_gpus_is_waited_for_until_the_deadline(ray_session, tmp_path, capsys, monkeypatch):
    """RAY_ADDRESS names a running cluster (this test's own, without GPUs): the launch waits
    run.wait_for_workers_s for GPUs to join, then one line, exit 2, nothing written."""
    signal_path = make_tiny_signal(tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", ray_session.get_runtime_context().gcs_address)
    args = ["train.device=cuda", "train.workers=2", "run.wait_for_workers_s=1"]
    assert fit(signal_path, tmp_path / "run", *args) == 2
    line = one_error_line(capsys)
    assert "0 GPUs and train.workers=2 needs 2" in line and "run.wait_for_workers_s=1 s" in line
    assert not (tmp_path / "run").exists()
