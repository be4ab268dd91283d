"""Hostile input: random values for every config key, odd images, non-finite data. Each either
works or ends with exit status 2 and one `error:` line — never a traceback, never a half-written
run directory."""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nint_dist import launch
from nint_dist.config import Config, ConfigError, load_config


def config_keys(cls=Config, prefix="") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            keys += config_keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(config_keys()), value=VALUES)
def test_any_value_for_any_key_is_accepted_or_one_clear_error(key, value):
    text = "null" if value is None else str(value)
    try:
        cfg = load_config(None, ["data.path=x.png", f"{key}={text}"])
    except ConfigError as e:
        message = str(e)
        assert message and "\n" not in message
        return
    assert isinstance(cfg, Config)


def test_training_passes_are_small_only_for_dense_models_on_cpus_unless_set():
    from nint_dist.models import build_model, is_dense

    for name, dense in (("siren", True), ("ffn", True), ("hashgrid", False)):
        cfg = load_config(None, ["data.path=x.png", f"model.name={name}"])
        assert is_dense(build_model(2, 3, cfg.model)) == dense
        assert cfg.train.micro_batch_on("cpu", dense) == (4096 if dense else 262144)
        assert cfg.train.micro_batch_on("cuda", dense) == 262144
    cfg = load_config(None, ["data.path=x.png", "train.micro_batch=100"])
    assert (cfg.train.micro_batch_on("cpu", True), cfg.train.micro_batch_on("cuda", False)) == (100, 100)


def test_pass_sizes_follow_the_device_unless_set():
    auto = load_config(None, ["data.path=x.png"])
    assert (auto.sampler.pass_size_on("cuda"), auto.sampler.pass_size_on("cpu")) == (65536, 4096)
    assert (auto.log.eval_pass_size_on("cuda"), auto.log.eval_pass_size_on("cpu")) == (65536, 4096)
    both = load_config(None, ["data.path=x.png", "sampler.pass_size=100", "log.eval_pass_size=300"])
    assert (both.sampler.pass_size_on("cpu"), both.log.eval_pass_size_on("cuda")) == (100, 300)
    for key in ("sampler.pass_size", "log.eval_pass_size", "train.micro_batch"):
        with pytest.raises(ConfigError, match=key):
            load_config(None, ["data.path=x.png", f"{key}=0"])


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_yaml_file_is_accepted_or_one_clear_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("yaml") / "config.yaml"
    path.write_text(content)
    try:
        load_config(path, ["data.path=x.png"])
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)


def run(tmp_path, data, *extra) -> int:
    return launch.main(["configs/quickstart.yaml", f"data.path={data}", f"run.dir={tmp_path / 'run'}",
                        "run.backend=local", "train.workers=1", "train.steps=3", "log.every=3",
                        "log.progress=false", "model.layers=2", "model.width=8", *extra])  # fmt: skip


@pytest.mark.parametrize(
    "shape,mode",
    [((1, 53, 3), "RGB"), ((37, 23, 3), "RGB"), ((29, 31), "L"), ((17, 19, 4), "RGBA"), ((23, 41), "I;16")],
)
def test_odd_images_fit(tmp_path, shape, mode):
    rng = np.random.default_rng(0)
    dtype = np.uint16 if mode == "I;16" else np.uint8
    pixels = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    Image.fromarray(pixels).save(tmp_path / "odd.png")
    assert Image.open(tmp_path / "odd.png").mode == mode
    assert run(tmp_path, tmp_path / "odd.png") == 0
    assert (tmp_path / "run" / "final.json").exists()


def test_fewer_rows_than_workers_is_refused(tmp_path, capsys):
    Image.fromarray(np.zeros((1, 50, 3), np.uint8)).save(tmp_path / "row.png")
    code = run(tmp_path, tmp_path / "row.png", "run.backend=ray", "train.workers=2")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "into 2 workers" in err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_are_refused(tmp_path, capsys, bad):
    values = np.random.default_rng(0).random((16, 16, 1)).astype(np.float32)
    values[3, 4, 0] = bad
    np.save(tmp_path / "signal.npy", values)
    assert run(tmp_path, tmp_path / "signal.npy") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not (tmp_path / "run").exists()
