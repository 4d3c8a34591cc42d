"""A PyTorch ``nn.Linear`` whose forward pass runs on the board through xbard.

    from xbar_client import Client
    from xbar_client.torch import AnalogLinear
    c = Client("127.0.0.1:50051")
    layer = AnalogLinear.from_linear(c, trained_linear, bits=4)   # deploys W^T
    y = layer(x)                                                  # x @ W^T + b on the chip

Inference: ``forward`` sends the batch to ``MatrixService.Multiply`` and adds the bias on the
host. Chip-in-the-loop training (``train()`` mode with gradients on): the forward value is the
board's, the gradient the software product's (straight-through: ``y = y_sw + (y_hw -
y_sw).detach()``), so the optimizer learns weights that work on the chip as programmed; call
:meth:`AnalogLinear.deploy` to program the updated weights (each deploy is a program-verify of
the arrays, seconds on the twin, longer on a board).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import nn


class AnalogLinear(nn.Module):
    """``y = x W^T + b`` with ``x W^T`` computed on the chip (``W`` deployed as a matrix of
    in_features inputs x out_features outputs). ``deploy_options`` go to
    :meth:`xbar_client.Client.deploy_matrix` (``bits``, ``levels``, ``remap``, ``arrays``,
    ``replace``, ``name``...); ``repeats`` and ``input_range`` to ``multiply``."""

    def __init__(self, client, in_features: int, out_features: int, bias: bool = True, *,
                 repeats: int = 1, input_range: float = 0.0, **deploy_options):
        super().__init__()
        self.client = client
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=torch.float64))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=torch.float64)) if bias else None
        self.repeats = repeats
        self.input_range = input_range
        self.deploy_options = deploy_options
        self.deployment: Optional[str] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_linear(cls, client, linear: nn.Linear, *, deploy: bool = True, **options):
        """A copy of ``linear`` on the chip (deployed unless ``deploy`` is False)."""
        layer = cls(client, linear.in_features, linear.out_features, linear.bias is not None,
                    **options)
        with torch.no_grad():
            layer.weight.copy_(linear.weight.to(torch.float64))
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.to(torch.float64))
        if deploy:
            layer.deploy()
        return layer

    def deploy(self):
        """Programs the current weights (W^T: in x out) and keeps the deployment's id; a
        previous deployment of this layer is replaced on the same arrays when it held them."""
        w = self.weight.detach().cpu().numpy().T
        options = dict(self.deploy_options)
        if self.deployment is not None:
            options.setdefault("replace", True)
        dep = self.client.deploy_matrix(w, **options)
        if dep.state_code not in (2, 3):  # READY, DEGRADED (kernels.proto DeploymentState)
            raise RuntimeError(f"deployment {dep.id} is {dep.state}: {dep.message}")
        self.deployment = dep.id
        return dep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deployment is None:
            raise RuntimeError("AnalogLinear: not deployed; call deploy() first")
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        y_np = self.client.multiply(self.deployment, x2.detach().cpu().numpy().astype(np.float64),
                                    repeats=self.repeats, input_range=self.input_range)
        y_hw = torch.as_tensor(np.atleast_2d(y_np), dtype=x2.dtype, device=x2.device)
        if torch.is_grad_enabled() and (x2.requires_grad or self.weight.requires_grad):
            y_sw = x2 @ self.weight.to(x2.dtype).T
            y = y_sw + (y_hw - y_sw).detach()  # the board's value, the software gradient
        else:
            y = y_hw
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, deployment={self.deployment}")
