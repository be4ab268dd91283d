"""The per-worker training loop. Ray Train runs ``train_worker`` on every worker; the local
backend runs ``run`` in the calling process with one worker. Both are this one code path.

A step reads: score and select (collective) → split the selection evenly → exchange targets
(all-to-all) → forward/backward on this worker's part (DDP all-reduce) → update → metrics.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nint_dist import scoring
from nint_dist.comm import Comm
from nint_dist.config import Config, from_dict
from nint_dist.metrics import psnr_from_mse
from nint_dist.models import build_model
from nint_dist.outputs import export_reconstruction
from nint_dist.runlog import RunLog
from nint_dist.samplers import Sampler, Selection, build_sampler
from nint_dist.schedules import num_selected, ratio_at
from nint_dist.selection import balanced_bounds, ddp_scaled_loss
from nint_dist.shard import Shard, ShardContext, load_shard
from nint_dist.signal import flat_to_coords, from_unit, open_signal, shard_rows, to_unit

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Runtime:
    """Where this worker sits in the group."""

    rank: int
    world_size: int
    device: torch.device


def ray_runtime() -> Runtime:
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    return Runtime(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device())


def train_worker(config: dict) -> None:
    """Ray Train's ``train_loop_per_worker``."""
    run(from_dict(config), ray_runtime())


def wrap_for_update(model: nn.Module, rt: Runtime) -> nn.Module:
    """The module the optimizer step goes through: DDP for several workers, else the model."""
    if rt.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [rt.device] if rt.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """Everything one worker holds for a run."""

    def __init__(self, cfg: Config, rt: Runtime):
        self.cfg, self.rt = cfg, rt
        self.dtype = DTYPES[cfg.train.dtype]
        self.array, self.spec = open_signal(cfg.data.path)
        self.comm = Comm(rt.rank, rt.world_size)
        self.shard: Shard = load_shard(self.array, self.spec, rt.world_size, rt.rank, rt.device, self.dtype)
        torch.manual_seed(cfg.train.seed)
        self.model = build_model(len(self.spec.grid), self.spec.channels, cfg.model).to(rt.device, self.dtype)
        self.update_model = wrap_for_update(self.model, rt)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.train.lr, fused=rt.device.type == "cuda"
        )
        self.compile_seconds = 0.0
        if cfg.train.compile:
            self.update_model = torch.compile(self.update_model)
            self.compile_seconds = self._warm_up()
        self.sampler: Sampler = build_sampler(cfg.sampler)
        self.ctx = ShardContext(
            self.model, self.shard, self.comm, cfg.sampler.chunk, cfg.train.seed, cfg.train.steps
        )
        self.log = RunLog(cfg.run.dir, cfg.log.tensorboard, cfg.log.save_selection) if rt.rank == 0 else None
        self.step = 0
        self.train_seconds = 0.0

    def _warm_up(self) -> float:
        """Compile the training graph off the training clock: one forward/backward on a batch of
        the first step's size, gradients discarded, parameters untouched. Collective (DDP)."""
        t0 = time.perf_counter()
        k = num_selected(self.cfg.sampler.ratio, self.spec.num_points)
        lo, hi = balanced_bounds(k, self.rt.world_size, self.rt.rank)
        coords = self.shard.coords(0, min(hi - lo, self.shard.size))
        self.update_model(coords).pow(2).mean().backward()
        self.optimizer.zero_grad(set_to_none=True)
        _sync(self.rt.device)
        return time.perf_counter() - t0

    def train_step(self) -> tuple[Selection, torch.Tensor, dict[str, float]]:
        """One optimizer step. Collective: every worker calls it every step."""
        rt, device = self.rt, self.rt.device
        t0 = time.perf_counter()
        sel = self.sampler.select(self.ctx, self.step)
        _sync(device)
        t1 = time.perf_counter()
        k = sel.indices.numel()
        bounds = [balanced_bounds(k, rt.world_size, r) for r in range(rt.world_size)]
        part = sel.indices[bounds[rt.rank][0] : bounds[rt.rank][1]]
        route = self.ctx.route(part, bounds, sel.indices)
        stored = self.ctx.exchange_targets(route)
        _sync(device)
        t2 = time.perf_counter()
        coords = flat_to_coords(part, self.spec, self.dtype)
        prediction = self.update_model(coords)
        target = to_unit(stored, self.spec, self.dtype)
        weights = None if sel.weights is None else sel.weights[bounds[rt.rank][0] : bounds[rt.rank][1]]
        loss = ddp_scaled_loss(prediction, target, k, rt.world_size, weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        _sync(device)
        t3 = time.perf_counter()
        self.step += 1
        self.train_seconds += t3 - t0
        return sel, loss.detach(), {"score_select_s": t1 - t0, "exchange_s": t2 - t1, "train_s": t3 - t2}

    def evaluate(self, loss: torch.Tensor) -> dict[str, float]:
        """Global MSE/PSNR over the whole signal and the mean training loss. Collective."""
        s = self.shard
        stats = torch.stack(
            [
                scoring.squared_error_sum(self.model, s.coords, s.targets, s.size, self.cfg.sampler.chunk),
                loss.double().cpu(),
            ]
        ).to(self.rt.device)
        self.comm.all_reduce_sum_([stats])
        mse = float(stats[0]) / (self.spec.num_points * self.spec.channels)
        return {"loss": float(stats[1]) / self.rt.world_size, "mse": mse, "psnr": psnr_from_mse(mse)}

    def out_of_time(self) -> bool:
        """Same answer on every worker: the slowest worker's clock decides. Collective when a
        budget is set."""
        budget = self.cfg.train.max_seconds
        return budget is not None and self.comm.all_reduce_max(self.train_seconds) >= budget

    def state(self) -> dict:
        return {
            "step": self.step,
            "train_seconds": self.train_seconds,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "config": self.cfg.to_dict(),
        }

    def fit(self) -> dict | None:
        cfg = self.cfg
        timings = {"score_select_s": 0.0, "exchange_s": 0.0, "train_s": 0.0}
        result: dict[str, float] = {}
        while self.step < cfg.train.steps:
            sel, loss, split = self.train_step()
            for key, value in split.items():
                timings[key] += value
            if self.log is not None:
                self.log.selection(self.step, sel.indices.cpu())
            finished = self.step >= cfg.train.steps or self.out_of_time()
            if finished or self.step % cfg.log.every == 0:
                result = self.evaluate(loss)
                if self.log is not None:
                    self.log.metrics(self._row(sel, result, timings))
            if (
                self.log is not None
                and cfg.train.checkpoint_every
                and self.step % cfg.train.checkpoint_every == 0
            ):
                self.log.checkpoint(self.step, self.state())
            if finished:
                break
        extra = self.write_reconstruction()
        if self.log is None:
            return None
        self.log.checkpoint(self.step, self.state())
        summary = {
            "psnr": result["psnr"],
            "mse": result["mse"],
            "loss": result["loss"],
            "steps": self.step,
            "train_seconds": self.train_seconds,
            "ms_per_step": 1000.0 * self.train_seconds / max(self.step, 1),
            "compile_seconds": self.compile_seconds,
            "workers": self.rt.world_size,
            "sampler": cfg.sampler.name,
            "num_points": self.spec.num_points,
            **{f"total_{k}": v for k, v in timings.items()},
            **extra,
        }
        self.log.final(summary)
        self.log.close()
        return summary

    def _row(self, sel: Selection, result: dict, timings: dict) -> dict:
        ratio = ratio_at(
            self.cfg.sampler.ratio_schedule, self.cfg.sampler.ratio, self.step - 1, self.cfg.train.steps
        )
        return {
            "step": self.step,
            **result,
            "train_seconds": self.train_seconds,
            "ratio": ratio,
            "num_selected": int(sel.indices.numel()),
            **{f"share_{name}": n / max(sel.indices.numel(), 1) for name, n in sel.shares.items()},
            **{f"time_{k}": v / self.step for k, v in timings.items()},
        }

    def write_reconstruction(self) -> dict[str, float]:
        """Each worker writes its own rows of ``reconstruction.zarr`` (shards are chunk-aligned,
        so no two workers touch one chunk); worker 0 then exports the modality's files and
        returns its extra final metrics. Collective."""
        import zarr

        path = Path(self.cfg.run.dir) / "reconstruction.zarr"
        if self.rt.rank == 0:
            zarr.create_array(
                store=str(path),
                shape=self.array.shape,
                chunks=self.array.chunks,
                dtype=self.array.dtype,
                zarr_format=3,
                overwrite=True,
                attributes=dict(self.array.attrs),
            )
        self.comm.barrier()
        s = self.shard
        values = scoring.predict(self.model, s.coords, s.size, self.cfg.sampler.chunk).float().cpu().numpy()
        row_lo, row_hi = shard_rows(self.spec, self.rt.world_size, self.rt.rank)
        block = from_unit(values, self.spec, self.array.dtype).reshape(row_hi - row_lo, *self.array.shape[1:])
        zarr.open_array(str(path), mode="r+")[row_lo:row_hi] = block
        self.comm.barrier()
        if self.rt.rank == 0:
            return export_reconstruction(self.spec, path, Path(self.cfg.run.dir), source=self.array)
        return {}


def run(cfg: Config, rt: Runtime) -> dict | None:
    """Fit the signal; returns the summary on worker 0, None elsewhere."""
    return Trainer(cfg, rt).fit()
