"""``sampler.name=auto``, the default: what it settles to on each kind of signal, that an explicit
choice wins, and that a run with it trains exactly as a run that names its choice."""

import json

import pytest

from nint_dist import launch
from nint_dist.config import ConfigError, load_config
from nint_dist.sources import audio
from tests.helpers import make_audio


@pytest.mark.parametrize(
    ("kind", "name", "power"),
    [("image", "nint", 0.0), ("audio", "uniform", 1.0), ("volume", "uniform", 1.0), ("other", "nint", 0.0)],
)
def test_auto_settles_by_the_signals_kind(kind, name, power):
    cfg = load_config(None, ["data.path=x.zarr"])
    assert cfg.sampler.name == "auto" and cfg.sampler.emphasis.power is None
    settled = cfg.settled(kind).sampler
    assert (settled.name, settled.emphasis.power, settled.emphasis.active) == (name, power, power > 0)
    assert settled.emphasis.max_ratio == 2.0 and settled.ratio == cfg.sampler.ratio


def test_what_is_given_wins():
    given = load_config(None, ["data.path=x.zarr", "sampler.emphasis.power=0"]).settled("volume").sampler
    assert (given.name, given.emphasis.active) == ("uniform", False)
    given = load_config(None, ["data.path=x.zarr", "sampler.emphasis.power=0.5"]).settled("image").sampler
    assert (given.name, given.emphasis.power) == ("nint", 0.5)
    given = load_config(None, ["data.path=x.zarr", "sampler.name=nint"]).settled("audio").sampler
    assert (given.name, given.emphasis.active) == ("nint", False)
    with pytest.raises(ConfigError, match="'auto', 'egra'"):
        load_config(None, ["data.path=x.zarr", "sampler.name=automatic"])


def _fit(clip, run_dir, *overrides: str) -> dict:
    code = launch.main(
        [f"data.path={clip}", f"run.dir={run_dir}", "run.backend=local", "train.workers=1",
         "train.steps=12", "log.every=6", "log.progress=false", "log.tensorboard=false",
         "model.layers=3", "model.width=32", "model.siren.w0_initial=3000", "train.lr=1e-3", *overrides]
    )  # fmt: skip
    assert code == 0
    return json.loads((run_dir / "final.json").read_text())


def test_a_default_run_on_audio_trains_as_uniform_draws_with_the_emphasis(tmp_path, capsys):
    clip = tmp_path / "clip.wav"
    audio.write_wav(clip, make_audio(frames=2048)[:, None], 44100)
    auto = _fit(clip, tmp_path / "auto")
    assert "sampler uniform with emphasis power 1\n" in capsys.readouterr().out  # the summary
    named = _fit(clip, tmp_path / "named", "sampler.name=uniform", "sampler.emphasis.power=1")
    plain = _fit(clip, tmp_path / "plain", "sampler.name=uniform")
    assert (auto["sampler"], auto["emphasis_power"]) == ("uniform", 1.0)
    assert auto["loss"] == named["loss"] and auto["psnr"] == named["psnr"]
    assert "emphasis_power" not in plain and plain["loss"] != auto["loss"]
    assert "name: auto" in (tmp_path / "auto" / "config.yaml").read_text()  # the config as given

    capsys.readouterr()
    assert launch.main([f"data.path={clip}", f"run.dir={tmp_path / 'dry'}", "--dry-run"]) == 0
    assert "sampler:   auto (uniform with emphasis power 1), 410 points per step" in capsys.readouterr().out


def test_options_for_a_sampler_the_run_does_not_use_are_named(tmp_path, capsys):
    clip = tmp_path / "clip.wav"
    audio.write_wav(clip, make_audio(frames=2048)[:, None], 44100)
    base = [f"data.path={clip}", f"run.dir={tmp_path / 'dry'}", "sampler.nint.pool_factor=2", "--dry-run"]
    assert launch.main(base) == 0
    assert capsys.readouterr().err.splitlines() == [
        "warning: sampler.nint.* is set but the run uses uniform (sampler.name=auto on audio signals),"
        " so it does nothing; give sampler.name to use it"
    ]
    assert launch.main([*base[:-1], "sampler.name=nint", "--dry-run"]) == 0
    assert capsys.readouterr().err == ""
