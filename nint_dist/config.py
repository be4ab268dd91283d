"""Typed configuration: one dataclass per component, merged by omegaconf from a YAML file and
``key=value`` overrides, validated before any work starts. User mistakes raise ``ConfigError``
with one line that names the key."""

import datetime
from dataclasses import asdict, dataclass, field, make_dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from nint_dist.emphasis import EmphasisConfig
from nint_dist.errors import UserError
from nint_dist.models import MODELS
from nint_dist.models import check_device as check_model_device
from nint_dist.samplers import AUTO, BY_KIND, SAMPLERS, section_name, settle
from nint_dist.schedules import INTERVALS, RATIO_SCHEDULES


class ConfigError(UserError):
    """A user mistake in the configuration or the command line (one line, exit status 2)."""


def _now(fmt: str = "%Y%m%d-%H%M%S") -> str:
    return datetime.datetime.now().strftime(fmt)


if not OmegaConf.has_resolver("now"):
    _register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
    _register("now", _now)


@dataclass
class DataConfig:
    path: str = ""
    """A signal ``.zarr`` store, or a file ingested into the run directory first: PNG/JPEG, TIFF,
    ``.npy``, WAV or an OBJ mesh (see ``python -m nint_dist.ingest``)."""
    resolution: int = 128
    """OBJ meshes: grid points per axis of the signed-distance volume."""
    verify: Any = True
    """Check each worker's chunks against the checksums recorded at ingestion when loading:
    true (a store without usable checksums is trained on with one warning), false (no check) or
    strict (a store without usable checksums is refused)."""

    def __post_init__(self):
        if isinstance(self.verify, str) and self.verify.lower() in ("true", "false"):
            self.verify = self.verify.lower() == "true"
        if not any(self.verify is v for v in (True, False)) and self.verify != "strict":
            raise ValueError(f"data.verify must be true, false or strict, not {self.verify!r}")


@dataclass
class ModelCommon:
    """The keys every model shares; each model's own options are in ``model.<name>``."""

    name: str = "siren"
    """One of the model registry's names (nint_dist.models: siren, ffn, hashgrid, …); its options
    are the keys under model.<name>."""
    layers: int = 6
    """Number of linear layers, the head included (the reference SIREN has 6: 5 sine + head)."""
    width: int = 256
    """Hidden width."""

    def __post_init__(self):
        if self.name not in MODELS:
            raise ValueError(f"model.name must be one of {sorted(MODELS)}, not {self.name!r}")
        if self.layers < 2 or self.width < 1:
            raise ValueError("model.layers must be at least 2 and model.width at least 1")


@dataclass
class SamplerCommon:
    """The keys every sampler shares; each sampler's own options are in ``sampler.<name>``."""

    name: str = AUTO
    """auto: by the signal's kind, nint on images and, on audio and volumes, uniform draws with
    the residual emphasis (sampler.emphasis), which beat NINT's ranked pool there at equal
    seconds. Or one of the sampler registry's names (nint_dist.samplers: nint, nint-paper,
    uniform, full, int, egra, soft, evos, expansive, error-map, stratified, …); its options are
    the keys under sampler.<name> (a dash becomes an underscore: sampler.nint_paper)."""
    ratio: float = 0.2
    """Fraction of all coordinates trained on per step (the start value of a schedule)."""
    ratio_schedule: str = "constant"
    """constant, linear or step (see nint_dist.schedules)."""
    interval: str = "dense"
    """When to re-select: dense, dense2, incremental or decremental."""
    pass_size: int | None = None
    """Coordinates per pass of the samplers' scoring (residuals, NTK scores): bounds its memory.
    null: 65536 on GPUs, 4096 on CPUs, whose passes run faster in blocks that stay in cache.
    Evaluation and export have their own, log.eval_pass_size."""
    emphasis: EmphasisConfig = field(default_factory=EmphasisConfig)
    """Loss weights of the trained samples from their own residuals (nint_dist.emphasis), for
    any sampler; on by default where sampler.name=auto draws uniformly (audio, volumes)."""

    def __post_init__(self):
        if self.name != AUTO and self.name not in SAMPLERS:
            names = [AUTO, *sorted(SAMPLERS)]
            raise ValueError(f"sampler.name must be one of {names}, not {self.name!r}")
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"sampler.ratio must be in (0, 1], not {self.ratio}")
        if self.ratio_schedule not in RATIO_SCHEDULES:
            raise ValueError(f"sampler.ratio_schedule must be one of {RATIO_SCHEDULES}")
        if self.interval not in INTERVALS:
            raise ValueError(f"sampler.interval must be one of {INTERVALS}")
        if self.pass_size is not None and self.pass_size < 1:
            raise ValueError("sampler.pass_size must be positive")
        for name in {choice for choice, _ in BY_KIND.values()} if self.name == AUTO else [self.name]:
            SAMPLERS[name][0].check_config(self)

    def pass_size_on(self, device_type: str) -> int:
        """Coordinates per scoring pass on a device type ('cuda', 'cpu', ...)."""
        if self.pass_size is not None:
            return self.pass_size
        return 65536 if device_type == "cuda" else 4096


def _with_sections(name: str, common: type, registry: dict[str, tuple[type, type | None]]) -> type:
    """The section's schema: the common keys plus one sub-section per registered config class,
    so a registry entry is all it takes for a component's keys to exist."""
    sections = [
        (section_name(key), options, field(default_factory=options))
        for key, (_, options) in registry.items()
        if options is not None
    ]
    cls = make_dataclass(name, sections, bases=(common,))
    cls.__module__, cls.__doc__ = __name__, common.__doc__
    return cls


ModelConfig = _with_sections("ModelConfig", ModelCommon, MODELS)
SamplerConfig = _with_sections("SamplerConfig", SamplerCommon, SAMPLERS)

RENAMED: dict[str, tuple[str, ...]] = {
    "sampler.chunk": ("sampler.pass_size",),
    **{
        f"sampler.{old}": (f"sampler.nint.{new}", f"sampler.nint_paper.{new}")
        for old, new in [
            ("random_share", "random_share"),
            ("ntk_share", "ntk_share"),
            ("ntk_decay", "ntk_decay"),
            ("ntk_period", "ntk_period"),
            ("ntk_cutoff", "ntk_cutoff"),
            ("ntk_share_rule", "share_rule"),
            ("ntk_score", "ntk_score"),
        ]
    },
    "sampler.pool_factor": ("sampler.nint.pool_factor",),
    "sampler.ntk_max_points": ("sampler.nint.ntk_max_points",),
    "sampler.score_precision": ("sampler.nint.score_precision",),
    "sampler.tile_side": ("sampler.error_map.tile_side",),
    "sampler.map_samples_per_tile": ("sampler.error_map.samples_per_tile",),
    "sampler.map_decay": ("sampler.error_map.decay",),
    "sampler.map_power": ("sampler.error_map.power",),
    "sampler.map_uniform_share": ("sampler.error_map.uniform_share",),
    "sampler.map_weighting": ("sampler.error_map.weighting",),
    "sampler.edge_low": ("sampler.egra.edge_low",),
    "sampler.edge_high": ("sampler.egra.edge_high",),
    "sampler.edge_hysteresis_px": ("sampler.egra.hysteresis_px", "sampler.expansive.hysteresis_px"),
    "sampler.egra_edge_prob": ("sampler.egra.edge_prob",),
    "sampler.egra_base_prob": ("sampler.egra.base_prob",),
    **{f"sampler.soft_{k}": (f"sampler.soft.{k}",) for k in ("alpha", "warmup", "explore_share",
                                                              "reinit_share", "drift", "noise")},
    **{f"sampler.evos_{k}": (f"sampler.evos.{k}",) for k in ("interval_start", "interval_end",
                                                             "mutation", "lap_weight")},
    "sampler.expansive_anchor": ("sampler.expansive.anchor",),
    "model.w0": ("model.siren.w0",),
    "model.w0_initial": ("model.siren.w0_initial",),
    "model.ff_features": ("model.ffn.features",),
    "model.ff_scale": ("model.ffn.scale",),
    **{f"model.hash_{k}": (f"model.hashgrid.{k}",) for k in ("levels", "log2_size", "features",
                                                             "base_resolution", "max_resolution",
                                                             "backend", "dtype")},
}  # fmt: skip
"""Keys of earlier versions → their spelling now (two where the old key set both samplers'
option). Naming an old key is a ConfigError that says where it went."""


def check_renamed(keys: list[str]) -> None:
    """ConfigError for the first key of an earlier version, naming its new spelling."""
    for key in keys:
        if key in RENAMED:
            raise ConfigError(f"config key {key} is now {' or '.join(RENAMED[key])}")


def _dotted(values: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        keys += _dotted(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return keys


@dataclass
class TrainConfig:
    steps: int = 1000
    """Optimizer steps."""
    max_seconds: float | None = None
    """Budget on the training clock (evaluation excluded); stops at whichever limit comes first.
    A budget, not a hint: a step is started only if it fits (see ``training.clock.TimeBudget``)."""
    lr: float = 1e-4
    """Adam learning rate."""
    seed: int = 42
    """Seeds the model's initialisation and every random pick."""
    workers: int | None = None
    """Workers, one per GPU (or per CPU slot). null: one per visible GPU (the local machine's, or
    the Ray cluster's under RAY_ADDRESS), at least 1; 1 with train.device=cpu."""
    device: str = "auto"
    """auto (GPUs when there are any: then every worker needs one), cpu or cuda."""
    dtype: str = "float32"
    """float32 or float64 (exactness tests)."""
    checkpoint_every: int = 0
    """Steps between checkpoints; 0 writes one at the end only."""
    collective_timeout_s: float = 600.0
    """Longest wait of any collective before the run fails."""
    max_failures: int = 2
    """Ray Train restarts the worker group this many times after a worker dies; the restarted
    workers resume from the newest checkpoint (set train.checkpoint_every to lose less)."""
    micro_batch: int | None = None
    """Most samples per forward/backward pass: a larger part of the selection is trained in
    several passes with accumulated gradients (the same gradient), so activation memory does
    not grow with the signal. null: 4096 on CPUs for dense models (SIREN, Fourier features),
    whose passes run faster in blocks that stay in cache, and 262144 elsewhere (a hash grid's
    backward writes a gradient the size of its tables per pass)."""
    compile: bool = False
    """Compile the training forward/backward with torch.compile (worth it on GPUs; the first
    steps then include compilation time)."""
    tf32: bool = False
    """Let float32 matrix products use TensorFloat-32 on GPUs (faster, 10-bit mantissa), in
    training and scoring alike."""
    cuda_graphs: bool = False
    """Replay the training pass and nint's pool scoring from CUDA graphs where that is exact
    (one worker on a GPU, constant ratio, no torch.compile or autocast; nint_dist.faststep).
    Off by default until benchmarks/gpu.py has checked the replayed step against the eager one
    on a GPU; false runs every pass eagerly."""
    lr_schedule: str = "constant"
    """Learning rate over the steps (see nint_dist.lr_schedule): constant; cosine (to
    train.lr_min at train.steps); step (times train.lr_decay at each of train.lr_milestones);
    exponential (train.lr times train.lr_decay ** (step / train.steps), instant-ngp's kind)."""
    warmup_steps: int = 0
    """Steps of linear warm-up from train.lr / warmup_steps to train.lr before the schedule."""
    lr_min: float = 0.0
    """cosine: the learning rate reached at train.steps."""
    lr_decay: float = 0.1
    """step: factor applied at each milestone; exponential: factor reached at train.steps."""
    lr_milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    """step: where the rate drops, as fractions of train.steps."""
    precision: str = "fp32"
    """Training forward passes: fp32; bf16 (autocast, GPUs and CPUs); fp16 (autocast with a
    gradient scaler, GPUs only). Scoring and evaluation stay in train.dtype."""
    checkpoint_every_s: float = 300.0
    """Seconds of wall clock between checkpoints (checked at log steps with several workers);
    0 turns the time cadence off. A run stopped by SIGINT/SIGTERM also checkpoints first."""
    keep_checkpoints: int = 3
    """Newest checkpoints kept in RUN_DIR/checkpoints (older ones are deleted); 0 keeps all."""

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"train.steps must be at least 1, not {self.steps}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError("train.max_seconds must be positive (or null for no budget)")
        if self.lr <= 0:
            raise ValueError("train.lr must be positive")
        if self.workers is not None and self.workers < 1:
            raise ValueError("train.workers must be at least 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError("train.device must be auto, cpu or cuda")
        if self.dtype not in ("float32", "float64"):
            raise ValueError("train.dtype must be float32 or float64")
        if self.max_failures < 0:
            raise ValueError("train.max_failures must be >= 0")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise ValueError("train.micro_batch must be at least 1")
        if self.checkpoint_every < 0 or self.collective_timeout_s <= 0:
            raise ValueError("train.checkpoint_every must be >= 0 and train.collective_timeout_s > 0")
        from nint_dist.lr_schedule import LR_SCHEDULES

        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
        if self.warmup_steps < 0 or self.lr_min < 0 or not 0.0 < self.lr_decay <= 1.0:
            raise ValueError("train.warmup_steps and train.lr_min must be >= 0, train.lr_decay in (0, 1]")
        if not all(0.0 < m < 1.0 for m in self.lr_milestones):
            raise ValueError("train.lr_milestones must be fractions of train.steps in (0, 1)")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError("train.precision must be fp32, bf16 or fp16")
        if self.precision != "fp32" and self.dtype != "float32":
            raise ValueError(f"train.precision={self.precision} needs train.dtype=float32")
        if self.checkpoint_every_s < 0 or self.keep_checkpoints < 0:
            raise ValueError("train.checkpoint_every_s and train.keep_checkpoints must be >= 0")

    def micro_batch_on(self, device_type: str, dense: bool) -> int:
        """Samples per training pass on a device type ('cuda', 'cpu', ...) for a dense model or
        not (``models.is_dense``)."""
        if self.micro_batch is not None:
            return self.micro_batch
        return 4096 if device_type == "cpu" and dense else 262144


@dataclass
class LogConfig:
    every: int = 25
    """Steps between evaluations (off the training clock): PSNR over the evaluation subset
    (log.eval_points), exact over the whole signal at checkpoints and at the end."""
    eval_points: int = 262144
    """Coordinates of the fixed random subset on which PSNR is measured at log steps; 0 (or a
    signal no larger) measures the whole signal at every log step."""
    images_every: int = 500
    """Steps between TensorBoard images (preview, selection heat map), the preview's SSIM and
    score histograms; they are also written at the end."""
    eval_share: float | None = None
    """Most evaluation and logging time as a share of the training clock: a log step that
    would exceed it is skipped (not the checkpoints' and the end's). 0: no limit (benchmarks
    that need every row); null: 0.1 on GPUs, no limit on CPUs (whose rows then fall on every
    log.every steps, as tests expect)."""
    save_selection: bool = False
    """Write selection/step_NNNNNN.npy with the global indices trained on at each step."""
    tensorboard: bool = True
    """Write TensorBoard event files into run.dir."""
    progress: bool = True
    """Show a progress bar on the driver."""
    eval_pass_size: int | None = None
    """Coordinates per forward pass of evaluation, the final export, the TensorBoard preview and
    render: bounds their memory. null: 65536 on GPUs, 4096 on CPUs."""

    def __post_init__(self):
        if self.every < 1 or self.images_every < 1:
            raise ValueError("log.every and log.images_every must be at least 1")
        if self.eval_pass_size is not None and self.eval_pass_size < 1:
            raise ValueError("log.eval_pass_size must be positive")
        if self.eval_points < 0 or (self.eval_share is not None and self.eval_share < 0):
            raise ValueError("log.eval_points and log.eval_share must be >= 0")

    def eval_share_on(self, device_type: str) -> float | None:
        """The evaluation share in effect on a device type ('cuda', 'cpu', ...); None: no limit."""
        if self.eval_share is not None:
            return self.eval_share or None
        return 0.1 if device_type == "cuda" else None

    def eval_pass_size_on(self, device_type: str) -> int:
        """Coordinates per evaluation/export pass on a device type ('cuda', 'cpu', ...)."""
        if self.eval_pass_size is not None:
            return self.eval_pass_size
        return 65536 if device_type == "cuda" else 4096


@dataclass
class RunSection:
    dir: str = "runs/run"
    """Output directory; must not already hold a run."""
    backend: str = "auto"
    """auto (local for one worker without RAY_ADDRESS, else ray), ray (Ray Train workers) or local
    (this process, one worker, Ray not imported)."""
    wait_for_workers_s: float = 300.0
    """With RAY_ADDRESS set: how long to wait for the cluster to hold the GPUs (or CPU slots) the
    workers need, e.g. while it autoscales, before giving up with one line."""

    def __post_init__(self):
        if self.backend not in ("auto", "ray", "local"):
            raise ValueError("run.backend must be auto, ray or local")
        if not self.wait_for_workers_s >= 0:
            raise ValueError("run.wait_for_workers_s must be >= 0")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self):
        if self.run.backend == "local" and self.train.workers not in (None, 1):
            raise ValueError("run.backend=local runs one worker; set train.workers=1 or run.backend=ray")
        check_model_device(self.model, self.train.device)

    def settled(self, kind: str) -> "Config":
        """This config as it runs on a signal of ``kind`` ("image", "audio", "volume"): with
        ``sampler.name=auto`` and an unset emphasis power replaced by what they mean there."""
        return replace(self, sampler=settle(self.sampler, kind))

    def to_dict(self) -> dict:
        return asdict(self)


def load_config(path: str | Path | None, overrides: list[str]) -> Config:
    """YAML file + ``key=value`` overrides → a validated Config, or ConfigError."""
    schema = OmegaConf.structured(Config)
    try:
        layers = [schema]
        if path is not None:
            if not Path(path).is_file():
                raise ConfigError(f"config file not found: {path}")
            content = yaml.safe_load(Path(path).read_text())
            if content is not None and not isinstance(content, dict):
                raise ConfigError(f"config file {path} must hold sections of keys (data:, model:, …)")
            check_renamed(_dotted(content or {}))
            layers.append(OmegaConf.create(content or {}))
        for item in overrides:
            if item.startswith(("+", "~")):
                raise ConfigError(
                    f"override {item!r}: Hydra's +key / ~key forms are not needed here, every key exists"
                    " already (see --help-config); write key=value, or the key's default to reset it"
                )
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
        check_renamed([item.partition("=")[0].strip() for item in overrides])
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = _merge(layers, overrides)
        OmegaConf.resolve(merged)
        cfg = OmegaConf.to_object(merged)
    except ConfigKeyError as e:
        raise ConfigError(f"unknown config key '{e.full_key or e.key}'") from None
    except ValidationError as e:
        raise ConfigError(f"config key '{e.full_key}': {str(e).splitlines()[0]}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = f"config file {path}" if path is not None else "the overrides"
        raise ConfigError(f"cannot parse {where} as YAML ({str(e).splitlines()[0]})") from None
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(str(e).splitlines()[0]) from None
    if not cfg.data.path:
        raise ConfigError("data.path is required: an image file or a .zarr signal")
    return cfg


def _merge(layers: list, overrides: list[str]):
    """omegaconf's merge, whose errors for a mapping given where a list or a value belongs (or the
    other way round) name no key: find the override that does it, or blame the file."""
    try:
        return OmegaConf.merge(*layers)
    except (TypeError, ValidationError) as e:
        if isinstance(e, ValidationError) and e.full_key:
            raise
        for item in overrides:
            try:
                OmegaConf.merge(layers[0], OmegaConf.from_dotlist([item]))
            except (TypeError, ValidationError):
                key, _, value = item.partition("=")
                raise ConfigError(f"config key '{key}': {value!r} is not a value of its type") from None
        where = "the config file gives a mapping where a list belongs, or the other way round"
        raise ConfigError(where) from None


def from_dict(values: dict) -> Config:
    """Rebuild a Config from ``Config.to_dict()`` (what workers receive)."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), values))


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
