"""The plain ReLU MLP that follows an encoding (Fourier features, hash grid)."""

from torch import nn


def relu_mlp(in_dim: int, out_dim: int, layers: int, width: int) -> nn.Sequential:
    """``layers`` linear layers (the last one the linear head) with ReLU between them."""
    dims = [in_dim] + [width] * (layers - 1) + [out_dim]
    modules: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        modules.append(nn.Linear(d_in, d_out))
        if i < layers - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)
