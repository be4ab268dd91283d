"""The config schema built from the sampler and model registries: every registered component's
section exists and is validated by its own dataclass, keys of earlier versions name their new
spelling (one line, exit status 2), and a saved config loads back unchanged."""

import dataclasses

import pytest

from nint_dist import launch
from nint_dist.config import RENAMED, Config, ConfigError, SamplerConfig, from_dict, load_config, to_yaml
from nint_dist.models import MODELS
from nint_dist.samplers import SAMPLERS, build_sampler, section_name
from nint_dist.samplers.stratified import Stratified, StratifiedConfig


def _error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error")]
    assert len(err) == 1, err
    return err[0]


def test_every_registered_config_is_a_section_of_its_own():
    cfg = load_config(None, ["data.path=x.png"])
    for section, registry in (("sampler", SAMPLERS), ("model", MODELS)):
        values = getattr(cfg, section)
        for name, (_, options) in registry.items():
            if options is None:
                assert not hasattr(values, section_name(name))
            else:
                assert type(getattr(values, section_name(name))) is options, name
    assert isinstance(cfg.sampler.stratified, StratifiedConfig)  # the registry line is all it took
    tuned = load_config(None, ["data.path=x.png", "sampler.name=stratified", "sampler.stratified.jitter=0.5"])
    sampler = build_sampler(tuned.sampler)
    assert isinstance(sampler, Stratified) and sampler.cfg.jitter == 0.5 and sampler.common.ratio == 0.2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sampler.stratified.jitter=2", "sampler.stratified.jitter must be in [0, 1]"),
        ("sampler.nint.pool_factor=-1", "sampler.nint.pool_factor must be >= 0"),
        ("sampler.nint_paper.share_rule=x", "sampler.nint_paper.share_rule must be"),
        ("model.hashgrid.backend=cuda", "model.hashgrid.backend must be one of"),
        ("sampler.name=nint-paper", None),  # dashes in names, underscores in sections
    ],
)
def test_each_section_validates_its_own_keys(override, message):
    if message is None:
        assert load_config(None, ["data.path=x.png", override]).sampler.nint_paper.ntk_period == 10
        return
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(None, ["data.path=x.png", override])


def test_cross_checks_live_with_their_component():
    with pytest.raises(ConfigError, match="sampler.name=soft keeps a fixed population"):
        load_config(None, ["data.path=x.png", "sampler.name=soft", "sampler.ratio_schedule=linear"])
    load_config(None, ["data.path=x.png", "sampler.name=uniform", "sampler.ratio_schedule=linear"])


def test_old_keys_in_overrides_name_their_new_spelling(tmp_path, capsys):
    argv = ["configs/quickstart.yaml", f"run.dir={tmp_path}/r", "sampler.pool_factor=2"]
    assert launch.main(argv) == 2
    assert _error_line(capsys) == "error: config key sampler.pool_factor is now sampler.nint.pool_factor"
    assert launch.main(["configs/quickstart.yaml", f"run.dir={tmp_path}/r", "sampler.chunk=64"]) == 2
    assert _error_line(capsys) == "error: config key sampler.chunk is now sampler.pass_size"
    assert not (tmp_path / "r").exists()


def test_old_keys_in_a_yaml_file_name_their_new_spelling(tmp_path, capsys):
    path = tmp_path / "old.yaml"
    path.write_text("data:\n  path: x.png\nmodel:\n  name: hashgrid\n  hash_levels: 8\n")
    assert launch.main([str(path), f"run.dir={tmp_path}/r"]) == 2
    assert _error_line(capsys) == "error: config key model.hash_levels is now model.hashgrid.levels"
    path.write_text("sampler:\n  ntk_score: paper\n")
    with pytest.raises(ConfigError, match="^config key sampler.ntk_score is now sampler.nint.ntk_score or"):
        load_config(path, ["data.path=x.png"])


def test_every_renamed_key_points_at_a_key_that_exists():
    leaves = set()

    def collect(values, prefix):
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            if dataclasses.is_dataclass(value):
                collect(value, f"{prefix}{f.name}.")
            else:
                leaves.add(f"{prefix}{f.name}")

    collect(Config(), "")
    for old, new in RENAMED.items():
        assert old not in leaves and set(new) <= leaves, old


def test_a_saved_config_loads_back_unchanged(tmp_path):
    overrides = ["data.path=x.png", "sampler.name=error-map", "sampler.error_map.tile_side=4",
                 "model.name=hashgrid", "model.hashgrid.levels=4", "log.eval_pass_size=1000"]  # fmt: skip
    cfg = load_config(None, overrides)
    (tmp_path / "config.yaml").write_text(to_yaml(cfg))
    again = load_config(tmp_path / "config.yaml", [])
    assert again == cfg == from_dict(cfg.to_dict())
    assert again.to_dict()["sampler"]["error_map"]["tile_side"] == 4
    assert isinstance(again.sampler, SamplerConfig)


def test_a_mapping_where_a_list_belongs_is_one_line_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="^config key 'train.lr_milestones': '{}' is not a value of its"):
        load_config(None, ["data.path=x.png", "train.lr_milestones={}"])
    with pytest.raises(ConfigError, match="^config key 'sampler.nint': '\\[1\\]' is not a value of its"):
        load_config(None, ["data.path=x.png", "sampler.nint=[1]"])  # a whole sub-section
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr_milestones:\n    a: 1\n")
    with pytest.raises(ConfigError, match="^the config file gives a mapping where a list belongs"):
        load_config(path, ["data.path=x.png"])
