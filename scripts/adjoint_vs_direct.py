"""How close is HomoODE's adjoint gradient to direct backprop, per field and tolerance?

    python scripts/adjoint_vs_direct.py

A 4-channel image28 HomoODE in float64, dopri5 at rtol = atol = tol, two inputs: the worst and the median
parameter group's relative error ||g_adjoint - g_direct|| / ||g_direct||, for the real ReLU / GroupNorm field
and for a smooth one (tanh in place of ReLU and of the last GroupNorm). The README quotes these figures.
"""

from __future__ import annotations

import torch
from torch import nn

import core
from core.models import ModelConfig, ODEConfig
from core.models.layers import ConvField


class SmoothConvField(ConvField):
    """The conv field with tanh for ReLU and for the output GroupNorm: smooth in z."""

    def forward(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.tanh(self.norm1(self.conv1(z)))
        if x is not None:
            h = h + x
        return torch.tanh(self.drop(self.conv2(h)))


def gradients(field: str, tol: float, adjoint: bool) -> dict[str, torch.Tensor]:
    ode = ODEConfig(method="dopri5", rtol=tol, atol=tol, adjoint=adjoint)
    config = ModelConfig(family="homoode", input_kind="image28", width=4, head_dim=4, num_classes=3, seed=1, ode=ode)
    model = core.build_model(config)
    if field == "smooth":
        torch.manual_seed(2)
        model.block.fn.field = SmoothConvField(4)
    model = model.double().eval()
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    nn.functional.cross_entropy(model(x).logits, torch.tensor([0, 2])).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None and p.grad.norm() > 0}


def main() -> None:
    torch.set_num_threads(1)
    print("| field | tol | worst group (rel. error) | median group |")
    print("|---|---:|---|---:|")
    for field in ("relu", "smooth"):
        for tol in (1e-6, 1e-8):
            direct, adjoint = gradients(field, tol, False), gradients(field, tol, True)
            errors = {n: float((adjoint[n] - g).norm() / g.norm()) for n, g in direct.items()}
            worst = max(errors, key=errors.get)
            median = sorted(errors.values())[len(errors) // 2]
            print(f"| {field} | {tol:g} | {errors[worst]:.2g} ({worst}) | {median:.2g} |", flush=True)


if __name__ == "__main__":
    main()
