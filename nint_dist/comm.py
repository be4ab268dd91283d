"""Collectives over the training process group, and the identity for one worker.

Every worker must make the same calls in the same order (``docs/method.md``, "Collectives"):
callers never skip a collective because their own data is empty. Each call blocks at most the process group's
timeout (set when the group is created: ``train.collective_timeout_s``).
"""

import torch
import torch.distributed as dist


class Comm:
    """The few collectives that exact distributed NINT needs."""

    def __init__(self, rank: int = 0, world_size: int = 1):
        self.rank = rank
        self.world_size = world_size
        self.bytes_sent: dict[str, int] = {"all_reduce": 0, "all_gather": 0, "all_to_all": 0}
        """Payload bytes this worker handed to each kind of collective so far (0 for one worker)."""
        if world_size > 1 and not dist.is_initialized():
            raise RuntimeError("a process group is required for more than one worker")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum_(self, tensors: list[torch.Tensor]) -> None:
        """Sum each tensor over workers in place, with one flattened all-reduce."""
        if not self.distributed or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        self.bytes_sent["all_reduce"] += flat.numel() * flat.element_size()
        dist.all_reduce(flat)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def all_reduce_max(self, value: float) -> float:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self._device())
        self.bytes_sent["all_reduce"] += 8
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def all_gather_padded(self, tensor: torch.Tensor, length: int, fill) -> torch.Tensor:
        """Gather a 1-D tensor of at most ``length`` entries from every worker: [W, length],
        the tail of each row filled with ``fill``."""
        padded = torch.full((length,), fill, dtype=tensor.dtype, device=tensor.device)
        padded[: tensor.numel()] = tensor
        if not self.distributed:
            return padded.unsqueeze(0)
        out = torch.empty((self.world_size, length), dtype=tensor.dtype, device=tensor.device)
        self.bytes_sent["all_gather"] += padded.numel() * padded.element_size()
        if out.is_cuda:
            dist.all_gather_into_tensor(out, padded)
        else:
            dist.all_gather(list(out.unbind(0)), padded)
        return out

    def all_to_all(self, send: torch.Tensor, send_counts: list[int], recv_counts: list[int]) -> torch.Tensor:
        """Rows of ``send`` [sum(send_counts), ...] go to worker w in rank order; returns the rows
        received, [sum(recv_counts), ...], in rank order of the senders."""
        if not self.distributed:
            return send
        recv = torch.empty((sum(recv_counts), *send.shape[1:]), dtype=send.dtype, device=send.device)
        self.bytes_sent["all_to_all"] += send.numel() * send.element_size()
        dist.all_to_all_single(recv, send.contiguous(), recv_counts, send_counts)
        return recv

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def _device(self) -> torch.device:
        if torch.cuda.is_available() and dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
