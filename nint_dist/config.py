"""Typed configuration: one dataclass per component, merged by omegaconf from a YAML file and
``key=value`` overrides, validated before any work starts. User mistakes raise ``ConfigError``
with one line that names the key."""

import datetime
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from nint_dist.errors import UserError
from nint_dist.schedules import INTERVALS, RATIO_SCHEDULES

NTK_SCORES = ("paper", "reference-code")


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
class ModelConfig:
    name: str = "siren"
    """One of the model registry's names: siren, ffn, hashgrid."""
    layers: int = 6
    """Number of linear layers, the head included (the reference SIREN has 6: 5 sine + head)."""
    width: int = 256
    """Hidden width."""
    w0: float = 30.0
    """SIREN frequency of the hidden sine layers."""
    w0_initial: float = 30.0
    """SIREN frequency of the first sine layer."""
    ff_features: int = 256
    """Fourier-feature MLP: number of random frequencies."""
    ff_scale: float = 10.0
    """Fourier-feature MLP: standard deviation of the frequencies."""
    hash_levels: int = 16
    """Hash grid: number of resolution levels."""
    hash_log2_size: int = 19
    """Hash grid: log2 of the entries per level's table."""
    hash_features: int = 2
    """Hash grid: features per entry."""
    hash_base_resolution: int = 16
    """Hash grid: grid points per axis at the coarsest level."""
    hash_max_resolution: int = 2048
    """Hash grid: grid points per axis at the finest level (about the signal's largest side)."""
    hash_backend: str = "torch"
    """Hash grid encoding: torch (plain PyTorch), triton (fused kernels, CUDA; needs the triton
    package) or auto (triton for CUDA tensors where it is installed, torch otherwise)."""
    hash_dtype: str = "float32"
    """Hash grid: precision table entries are read at; float16 halves the kernels' gather
    traffic, while the parameter, its gradient and the optimizer state stay float32."""

    def __post_init__(self):
        from nint_dist.models import MODELS

        if self.name not in MODELS:
            raise ValueError(f"model.name must be one of {sorted(MODELS)}, not {self.name!r}")
        if self.layers < 2 or self.width < 1:
            raise ValueError("model.layers must be at least 2 and model.width at least 1")
        from nint_dist.models.hashgrid import check_options

        check_options(self.hash_backend, self.hash_dtype)


@dataclass
class SamplerConfig:
    name: str = "nint"
    """A sampler registry name: full, uniform, nint-paper, nint, int, egra, soft, evos, expansive,
    error-map."""
    ratio: float = 0.2
    """Fraction of all coordinates trained on per step (the start value of a schedule)."""
    ratio_schedule: str = "constant"
    """constant, linear or step (see nint_dist.schedules)."""
    interval: str = "dense"
    """When to re-select: dense, dense2, incremental or decremental."""
    chunk: int | None = None
    """Coordinates per chunk in every scoring and evaluation pass: bounds their memory. null:
    65536 on GPUs, 4096 on CPUs, whose passes run faster in blocks that stay in cache."""
    random_share: float = 0.7
    """nint-paper: share of uniform random picks."""
    ntk_share: float = 0.3
    """nint-paper: initial NTK share before decay."""
    ntk_decay: float = 1.0
    """nint-paper: decay rate lambda of the NTK share."""
    ntk_period: int = 10
    """nint-paper: re-selections between NTK refreshes (alpha)."""
    ntk_cutoff: float = 1e-3
    """nint-paper: NTK scoring stops for good once the share falls below this."""
    ntk_share_rule: str = "code"
    """nint-paper: 'code' (the reference code's floor-division precedence) or 'paper'."""
    ntk_score: str = "paper"
    """nint-paper, nint: what the NTK share ranks. 'paper': ‖(J Jᵀ r)_i‖², the paper's rule;
    'reference-code': ‖f(x_i)‖², what the authors' code computes (it keeps the primal output of
    its JVP) and what produced the paper's tables."""
    pool_factor: float = 3.0
    """nint: residuals are ranked over a fresh uniform pool of about pool_factor·k coordinates per
    re-selection (k = the batch size); 0 ranks all N, as nint-paper does."""
    ntk_max_points: int = 1_000_000
    """nint: signals with more coordinates than this skip the NTK share (the pool's residual
    ranking only): there the NTK scores cost several training steps and help a few early ones."""
    score_precision: str = "full"
    """nint: precision of the residual ranking on GPUs (training keeps its own): 'full' (the
    training dtype), 'tf32' (TensorFloat-32 matrix products) or 'half' (float16 autocast);
    ignored on CPUs."""
    tile_side: int = 0
    """error-map: grid points per tile along each axis; 0 sizes tiles from the ratio so that a
    uniform batch puts about map_samples_per_tile samples in each."""
    map_samples_per_tile: float = 4.0
    """error-map: samples per tile per step that the automatic tile size aims at."""
    map_decay: float = 0.5
    """error-map: weight of a tile's earlier residuals each time it is trained on again."""
    map_power: float = 1.0
    """error-map: tiles are drawn in proportion to size · (mean residual)^map_power."""
    map_uniform_share: float = 0.5
    """error-map: share of the draw that is uniform over all coordinates."""
    map_weighting: str = "none"
    """error-map: 'none' (plain mean over the draw) or 'importance' (each sample's loss weighted
    by its uniform density over its draw density: an unbiased full-signal gradient)."""
    edge_low: float = 30.0
    """egra: Canny's low threshold on the 8-bit grey image's L1 Sobel magnitude."""
    edge_high: float = 40.0
    """egra: Canny's high threshold (same units)."""
    edge_hysteresis_px: int = 16
    """egra, expansive: how far (in pixels) Canny's hysteresis follows a weak edge from a strong one."""
    egra_edge_prob: float = 0.0025
    """egra: weight of an edge-band pixel on top of the base weight (the ports' p_e)."""
    egra_base_prob: float = 0.0064
    """egra: base weight of every pixel, times (1 − egra_edge_prob) (the ports' B_ref / N_ref)."""
    soft_alpha: float = 0.6
    """soft: final exponent of the importance correction (1 / error)^alpha; 0 is hard mining."""
    soft_warmup: int = 1000
    """soft: steps over which the exponent ramps from 0 (rho_t = min(t / warmup, alpha))."""
    soft_explore_share: float = 0.1
    """soft: share of particles moved to fresh uniform positions every step."""
    soft_reinit_share: float = 0.1
    """soft: share of lowest-loss particles re-drawn from the edge density every step."""
    soft_drift: float = 20.0
    """soft: Langevin step size a on the gradient of the log loss (positions in [0, 1])."""
    soft_noise: float = 0.02
    """soft: Langevin noise scale b (positions in [0, 1])."""
    evos_interval_start: int = 100
    """evos: steps between fitness evaluations at the start; falls linearly to evos_interval_end."""
    evos_interval_end: int = 50
    """evos: steps between fitness evaluations at the end."""
    evos_mutation: float = 0.5
    """evos: mutation share of every batch, as a fraction of the initial ratio (m = this * ratio)."""
    evos_lap_weight: float = 1e-5
    """evos: weight of the Laplacian error in the crossover ranking (8-bit units)."""
    expansive_anchor: float = 0.5
    """expansive: anchor (edge) area as a fraction of the initial ratio."""

    def __post_init__(self):
        from nint_dist.samplers import SAMPLERS

        if self.name not in SAMPLERS:
            raise ValueError(f"sampler.name must be one of {sorted(SAMPLERS)}, not {self.name!r}")
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"sampler.ratio must be in (0, 1], not {self.ratio}")
        if self.ratio_schedule not in RATIO_SCHEDULES:
            raise ValueError(f"sampler.ratio_schedule must be one of {RATIO_SCHEDULES}")
        if self.interval not in INTERVALS:
            raise ValueError(f"sampler.interval must be one of {INTERVALS}")
        if (self.chunk is not None and self.chunk < 1) or self.ntk_period < 1:
            raise ValueError("sampler.chunk and sampler.ntk_period must be positive")
        if not 0.0 <= self.random_share <= 1.0 or not 0.0 <= self.ntk_share <= 1.0:
            raise ValueError("sampler.random_share and sampler.ntk_share must be in [0, 1]")
        if self.ntk_share_rule not in ("code", "paper"):
            raise ValueError("sampler.ntk_share_rule must be 'code' or 'paper'")
        if self.ntk_score not in NTK_SCORES:
            raise ValueError(f"sampler.ntk_score must be one of {NTK_SCORES}, not {self.ntk_score!r}")
        if self.pool_factor < 0 or self.score_precision not in ("full", "tf32", "half"):
            raise ValueError(
                "sampler.pool_factor must be >= 0 and sampler.score_precision full, tf32 or half"
            )
        if self.tile_side < 0 or self.map_samples_per_tile <= 0 or not 0.0 <= self.map_decay <= 1.0:
            raise ValueError(
                "sampler.tile_side must be >= 0, sampler.map_samples_per_tile > 0"
                " and sampler.map_decay in [0, 1]"
            )
        if self.map_power < 0 or not 0.0 <= self.map_uniform_share <= 1.0:
            raise ValueError("sampler.map_power must be >= 0 and sampler.map_uniform_share in [0, 1]")
        if self.map_weighting not in ("none", "importance"):
            raise ValueError("sampler.map_weighting must be 'none' or 'importance'")
        if self.name == "soft" and self.ratio_schedule != "constant":
            raise ValueError("sampler.name=soft keeps a fixed population; use ratio_schedule=constant")
        if self.evos_interval_end < 1 or self.evos_interval_start < self.evos_interval_end:
            raise ValueError("sampler.evos_interval_start must be >= sampler.evos_interval_end >= 1")
        if not 0.0 <= self.evos_mutation < 1.0 or not 0.0 <= self.expansive_anchor <= 1.0:
            raise ValueError("sampler.evos_mutation must be in [0, 1) and sampler.expansive_anchor in [0, 1]")

    def chunk_on(self, device_type: str) -> int:
        """The chunk size in effect on a device type ('cuda', 'cpu', ...)."""
        if self.chunk is not None:
            return self.chunk
        return 65536 if device_type == "cuda" else 4096


@dataclass
class TrainConfig:
    steps: int = 1000
    """Optimizer steps."""
    max_seconds: float | None = None
    """Budget on the training clock (evaluation excluded); stops at whichever limit comes first.
    A budget, not a hint: a step is started only if it fits (see ``Trainer.out_of_time``)."""
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
    micro_batch: int = 262144
    """Most samples per forward/backward pass: a larger part of the selection is trained in
    several passes with accumulated gradients (the same gradient), so activation memory does
    not grow with the signal."""
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
        if self.micro_batch < 1:
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

    def __post_init__(self):
        if self.every < 1 or self.images_every < 1:
            raise ValueError("log.every and log.images_every must be at least 1")
        if self.eval_points < 0 or (self.eval_share is not None and self.eval_share < 0):
            raise ValueError("log.eval_points and log.eval_share must be >= 0")

    def eval_share_on(self, device_type: str) -> float | None:
        """The evaluation share in effect on a device type ('cuda', 'cpu', ...); None: no limit."""
        if self.eval_share is not None:
            return self.eval_share or None
        return 0.1 if device_type == "cuda" else None


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
        hash_triton = self.model.name == "hashgrid" and self.model.hash_backend == "triton"
        if hash_triton and self.train.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError("model.hash_backend=triton needs a GPU; with train.device=cpu use torch or auto")

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
            layers.append(OmegaConf.create(content or {}))
        for item in overrides:
            if item.startswith(("+", "~")):
                raise ConfigError(
                    f"override {item!r}: Hydra's +key / ~key forms are not needed here, every key exists"
                    " already (see --help-config); write key=value, or the key's default to reset it"
                )
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers)
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


def from_dict(values: dict) -> Config:
    """Rebuild a Config from ``Config.to_dict()`` (what workers receive)."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), values))


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
