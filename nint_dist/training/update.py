"""How the model learns: the module the gradients go through (DDP for several workers,
torch.compile when asked), Adam, the fp16 gradient scaler, the learning-rate schedule, and the
micro-batched forward/backward that accumulates one step's gradient under autocast.
"""

import time
from contextlib import nullcontext

import torch
from torch import nn

from nint_dist.comm import Comm
from nint_dist.config import Config
from nint_dist.emphasis import Emphasis
from nint_dist.lr_schedule import lr_at
from nint_dist.models import build_model, is_dense
from nint_dist.models.hashgrid import pack_optimizer_state
from nint_dist.selection import ddp_scaled_loss
from nint_dist.signal import SignalSpec, flat_to_coords, to_unit

DTYPES = {"float32": torch.float32, "float64": torch.float64}
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def wrap_for_update(model: nn.Module, world_size: int, device: torch.device) -> nn.Module:
    """The module the optimizer step goes through: DDP for several workers, else the model."""
    if world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


class Update:
    """The model, its optimizer and how one step's gradient is made and applied. Building it
    draws the model's initial weights from torch's generator (seeded by the caller)."""

    def __init__(self, cfg: Config, spec: SignalSpec, world_size: int, device: torch.device):
        self.train, self.spec, self.world_size, self.device = cfg.train, spec, world_size, device
        self.dtype = DTYPES[cfg.train.dtype]
        if device.type == "cuda":  # both ways: an earlier fit in this process must not leak
            torch.backends.cuda.matmul.allow_tf32 = cfg.train.tf32
        self.model = build_model(len(spec.grid), spec.channels, cfg.model).to(device, self.dtype)
        self.module = wrap_for_update(self.model, world_size, device)
        """What forward/backward go through (DDP and/or compiled); ``model`` holds the weights."""
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.train.lr, fused=device.type in ("cuda", "cpu")
        )
        if cfg.train.precision == "fp16" and device.type != "cuda":
            raise ValueError("train.precision=fp16 needs GPUs (use bf16 on CPUs)")
        self.scaler = torch.amp.GradScaler("cuda") if cfg.train.precision == "fp16" else None
        """fp16 only: scales the loss so small gradients survive float16; its state is checkpointed."""
        self.autocast = cfg.train.precision in AUTOCAST
        self.micro_batch = cfg.train.micro_batch_on(device.type, is_dense(self.model))
        emphasis = cfg.sampler.emphasis
        self.emphasis = Emphasis(emphasis, device, self.dtype) if emphasis.active else None
        """Loss weights from the samples' residuals (``sampler.emphasis``), else None."""

    def compile(self, first_batch: torch.Tensor) -> float:
        """``torch.compile`` the training module and compile its graph off the training clock:
        one forward/backward on ``first_batch`` (coordinates of the first step's size), gradients
        discarded, parameters untouched. Collective (DDP). Returns the seconds it took."""
        self.module = torch.compile(self.module)
        t0 = time.perf_counter()
        self.module(first_batch).pow(2).mean().backward()
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    def learning_rate(self, step: int) -> float:
        t = self.train
        return lr_at(
            t.lr_schedule, step, t.steps, t.lr, t.warmup_steps, t.lr_min, t.lr_decay, t.lr_milestones
        )

    def accumulate(
        self,
        part: torch.Tensor,
        stored: torch.Tensor,
        weights: torch.Tensor | None,
        num_selected: int,
        errors: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Forward/backward over this worker's part in passes of at most ``micro_batch``
        samples. The scaled loss is a sum over samples, so the accumulated gradient equals one
        pass over the whole part, while activation memory stays bounded by the pass size. DDP
        all-reduces once, on the last pass; every worker makes exactly one such pass (also
        with an empty part). Returns this worker's loss; appends each pass's per-sample
        mean_c |f − y| to ``errors`` when given."""
        size = self.micro_batch
        starts = list(range(0, part.numel(), size)) or [0]
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        precision = self.train.precision
        autocast = (
            torch.autocast(self.device.type, dtype=AUTOCAST[precision]) if self.autocast else nullcontext()
        )
        for i, lo in enumerate(starts):
            hi = lo + size
            last = i == len(starts) - 1
            defer = self.module.no_sync() if self.world_size > 1 and not last else nullcontext()
            with defer:
                with autocast:
                    prediction = self.module(flat_to_coords(part[lo:hi], self.spec, self.dtype))
                prediction = prediction.to(self.dtype)  # the loss in training precision, not autocast's
                target = to_unit(stored[lo:hi], self.spec, self.dtype)
                piece = None if weights is None else weights[lo:hi]
                residuals = None
                if errors is not None or self.emphasis is not None:
                    residuals = (prediction.detach() - target).abs().mean(dim=-1)
                if self.emphasis is not None:
                    piece = self.emphasis.weigh(residuals, piece)
                loss = ddp_scaled_loss(prediction, target, num_selected, self.world_size, piece)
                (loss if self.scaler is None else self.scaler.scale(loss)).backward()
                if errors is not None:
                    errors.append(residuals)
            total += loss.detach()
        return total

    def measured(self, errors: torch.Tensor, num_selected: int, comm: Comm) -> None:
        """After a step: the residuals of this worker's part [m], for the next step's emphasis.
        Collective (only where ``emphasis`` is on)."""
        if self.emphasis is not None:
            total = self.emphasis.power_sum(errors).reshape(1)
            comm.all_reduce_sum_([total])
            self.emphasis.rescale(total[0], num_selected)

    def apply(self, step: int) -> None:
        """The optimizer step with step ``step``'s learning rate (through the scaler under fp16)."""
        lr = self.learning_rate(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()

    @property
    def lr(self) -> float:
        """The learning rate of the last step."""
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **({"grad_scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
            **(self.emphasis.state_dict() if self.emphasis is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        pack_optimizer_state(self.model, self.optimizer)
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        if self.emphasis is not None:
            self.emphasis.load_state_dict(state)
