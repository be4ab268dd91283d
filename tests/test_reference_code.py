"""``nint-paper`` against the authors' code's own recorded choices (tests/data/reference/README.md).

The recording ran the reference NINT sampler for 200 dense steps on a 32×32 crop of the bundled
sample image, in float64, from recorded initial weights. Its random share comes from torch's
global generator, which nint_dist does not use; here the context hands the sampler the
reference's random picks of each step, so both runs train on the same coordinates and the
deterministic parts (the NTK set and the residual set) can be compared exactly.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nint_dist.config import (
    Config,
    DataConfig,
    LogConfig,
    ModelConfig,
    RunSection,
    SamplerConfig,
    TrainConfig,
)
from nint_dist.samplers.nint_paper import NintPaperConfig
from nint_dist.schedules import reselect_at

REFERENCE = Path(__file__).parent / "data" / "reference"
SAMPLE = Path(__file__).parents[1] / "nint_dist" / "assets" / "sample.png"


def load(name: str) -> dict:
    with np.load(REFERENCE / name) as f:
        return {k: f[k] for k in f.files}


def split(rec: dict, part: str) -> list[np.ndarray]:
    return np.split(rec[part], np.cumsum(rec[f"{part}_counts"])[:-1])


def crop_signal(folder: Path, crop: np.ndarray) -> Path:
    from PIL import Image

    from nint_dist.ingest import write_signal
    from nint_dist.signal import SignalSpec

    top, left, h, w = (int(v) for v in crop)
    array = np.asarray(Image.open(SAMPLE).convert("RGB"))[top : top + h, left : left + w].copy()
    spec = SignalSpec((h, w), 3, (0.0, 255.0), ((-1.0, 1.0), (-1.0, 1.0)), chunk_rows=8)
    path = folder / "crop.zarr"
    write_signal(array, spec, path, progress=False)
    return path


def replay(tmp_path: Path, rec: dict, ntk_score: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train nint_dist's nint-paper with the reference's initial weights and random picks;
    return the (NTK, residual) parts of each re-selection."""
    from nint_dist.worker import Runtime, Trainer

    setup = json.loads(str(rec["setup"]))
    cfg = Config(
        data=DataConfig(path=str(crop_signal(tmp_path, rec["crop"]))),
        model=ModelConfig(layers=setup["layers"], width=setup["width"]),
        sampler=SamplerConfig(
            name="nint-paper",
            ratio=setup["ratio"],
            interval="dense",
            nint_paper=NintPaperConfig(ntk_score=ntk_score),
        ),
        train=TrainConfig(steps=setup["steps"], lr=setup["lr"], dtype="float64"),
        log=LogConfig(every=10**6, tensorboard=False, progress=False),
        run=RunSection(dir=str(tmp_path / "run"), backend="local"),
    )
    Path(cfg.run.dir).mkdir()
    trainer = Trainer(cfg, Runtime(0, 1, torch.device("cpu")))
    layers = setup["layers"]
    names = {f"net.{i}.linear": f"net.{2 * i}" for i in range(layers - 1)}
    names["last_layer.linear"] = f"net.{2 * (layers - 1)}"
    state = {}
    for key in (k[len("init/") :] for k in rec if k.startswith("init/")):
        module, param = key.rsplit(".", 1)
        state[f"{names[module]}.{param}"] = torch.from_numpy(rec[f"init/{key}"])
    trainer.model.load_state_dict(state)

    randoms = iter(split(rec, "random"))
    chosen = []

    def reference_random(count: int, exclude: torch.Tensor, step: int) -> torch.Tensor:
        picks = torch.from_numpy(next(randoms).astype(np.int64))
        assert picks.numel() == count
        chosen.append(exclude.numpy().copy())  # cat([ntk, residual]) of this re-selection
        return picks

    trainer.ctx.random_picks = reference_random
    parts = []
    while trainer.step < cfg.train.steps:
        sel, _ = trainer.train_step()
        if len(chosen) > len(parts):
            n_ntk = sel.shares["ntk"]
            parts.append((chosen[-1][:n_ntk], chosen[-1][n_ntk:]))
    return parts


@pytest.mark.parametrize(
    ("recording", "ntk_score"),
    [("nint_reference_code.npz", "reference-code"), ("nint_reference_tangent.npz", "paper")],
)
def test_nint_paper_makes_the_reference_codes_choices(tmp_path, recording, ntk_score):
    """``reference-code`` reproduces the unmodified reference; ``paper`` reproduces the
    reference with its JVP's tangent in place of its primal output."""
    rec = load(recording)
    parts = replay(tmp_path, rec, ntk_score)
    ntk, residual = split(rec, "ntk"), split(rec, "residual")
    assert len(parts) == len(ntk) == len(rec["steps"]) == 200
    for i, (ours_ntk, ours_residual) in enumerate(parts):
        step = int(rec["steps"][i])
        np.testing.assert_array_equal(np.sort(ours_ntk), np.sort(ntk[i]), err_msg=f"NTK set, step {step}")
        np.testing.assert_array_equal(
            np.sort(ours_residual), np.sort(residual[i]), err_msg=f"residual set, step {step}"
        )
    assert {len(n) for n in ntk} == {0, 1, 3, 8, 22}  # every NTK share, up to the cut-off


def test_the_two_rules_choose_different_ntk_sets():
    """The recordings differ from the first re-selection: the score is not the same quantity."""
    code, tangent = load("nint_reference_code.npz"), load("nint_reference_tangent.npz")
    assert not np.array_equal(np.sort(split(code, "ntk")[0]), np.sort(split(tangent, "ntk")[0]))


def test_reselection_steps_are_the_reference_codes_for_any_step_count():
    intervals = json.loads(str(load("nint_reference_code.npz")["intervals"]))
    assert {"incremental/777", "decremental/200", "decremental/777"} <= set(intervals)
    for key, steps in intervals.items():
        name, total = key.split("/")
        ours = [t for t in range(int(total)) if reselect_at(name, t, int(total))]
        if steps == "ZeroDivisionError":  # too short for a phase: the reference fails, we stay dense
            assert ours == list(range(int(total))), key
        else:
            assert ours == steps, key
