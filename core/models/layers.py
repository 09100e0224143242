"""Building blocks: feature extractors, vector fields / cells, heads, dropout, start points.

Shapes: images use states (B, C, H, W); points use states (B, D). Every field is autonomous
(it ignores t / λ, as the official HomoODE field does).
"""

from __future__ import annotations

import torch
from torch import nn


def groups_for(channels: int) -> int:
    """GroupNorm groups: min(32, C/2) (32 groups at C = 64, as the official network)."""
    return max(1, min(32, channels // 2))


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups_for(channels), channels)


class VariationalDropout(nn.Module):
    """Channel-wise dropout whose mask is drawn once per solve (``new_mask``) and reused by every
    evaluation of the field, so the ODE right-hand side stays one smooth function during a solve
    (and during the adjoint's backward re-integration)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.mask: torch.Tensor | None = None

    def new_mask(self, like: torch.Tensor) -> None:
        """Draw a mask of shape (B, C, 1, ...) for states shaped like ``like``; none in eval mode."""
        if not self.training or self.p == 0:
            self.mask = None
            return
        shape = like.shape[:2] + (1,) * (like.dim() - 2)
        keep = torch.bernoulli(torch.full(shape, 1 - self.p, dtype=like.dtype, device=like.device))
        self.mask = keep / (1 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mask is None or not self.training else x * self.mask


class ConvFeatures(nn.Module):
    """x (B, Cin, H, W) -> (B, C, H/2, W/2): Conv3x3 + BN + ReLU, Conv3x3 stride 2 + BN + ReLU."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvField(nn.Module):
    """Vector field on (B, C, H, W) states, optionally conditioned on x (B, C, H, W).

    Unconditioned (NODE / ANODE):  F(z) = GN(conv2(ReLU(GN(conv1(z)))))
    Conditioned (HomoODE):         F(z; x) = GN(drop(conv2(ReLU(GN(conv1(z))) + x)))
    The conditioned form is the official HomoODE field in its order: the condition is added after the first
    conv block, before conv2, at every evaluation, and the (variational) dropout acts on conv2's output.
    """

    def __init__(self, channels: int, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = group_norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = group_norm(channels)
        self.drop = VariationalDropout(dropout)

    def forward(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.relu(self.norm1(self.conv1(z)))
        if x is not None:
            h = h + x
        return self.norm2(self.drop(self.conv2(h)))


class GroupNormConvCell(nn.Module):
    """DEQ cell on (B, C, H, W): f(z; x) = GN(ReLU(z + GN(conv2(ReLU(GN(conv1(z)))) + x))).

    The residual form of the DEQ tutorial cells; the parameter count is that of ``ConvField`` plus one
    GroupNorm. Not a contraction: after a few dozen training steps the spectral radius of ∂f/∂z at z* sits at
    0.9-0.99 and Anderson misses 1e-4 in 30 iterations on most batches (docs/benchmarks.md), which makes it
    the Solver lab's example of a map where plain iteration struggles and homotopy continuation does not.
    ``ContractiveConvCell`` is the default.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = group_norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = group_norm(channels)
        self.norm3 = group_norm(channels)
        # Small initial weights keep the untrained map contractive, so the first solves converge.
        for conv in (self.conv1, self.conv2):
            nn.init.normal_(conv.weight, 0.0, 0.01)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self.norm2(self.conv2(torch.relu(self.norm1(self.conv1(z)))) + x)
        return self.norm3(torch.relu(z + h))


def conv_operator_norm(weight: torch.Tensor, size: int) -> torch.Tensor:
    """An upper bound, tight to a few per cent, of the spectral norm of a stride-1, zero-padded ("same")
    convolution with ``weight`` (Cout, Cin, k, k) acting on (Cin, size, size) inputs; differentiable.

    The padded convolution is a compression of the circular one on an N x N grid, N = size + k - 1 (embed
    the input in zeros, convolve circularly, keep the size x size window: nothing wraps into it), so its
    norm is at most the circular one's, which the DFT block-diagonalises (Sedghi, Gupta & Long 2019):
    ||conv|| <= max over frequencies w of sigma_max(K^(w)), K^(w) = sum_taps W[:, :, a, b] e^(-2 pi i w.(a, b) / N).
    (The norm of the reshaped (Cout, Cin k k) matrix that ``torch.nn.utils.spectral_norm`` uses is not a
    bound: 0.76 against a true 1.16 for a random 32-channel 3x3 kernel.)
    """
    n = size + weight.shape[-1] - 1
    spectrum = torch.fft.rfft2(weight, s=(n, n))  # (Cout, Cin, n, n/2 + 1): real kernels mirror the rest
    return torch.linalg.svdvals(spectrum.permute(2, 3, 0, 1)).amax()


class ContractiveConvCell(nn.Module):
    """DEQ cell on (B, C, S, S) that is a contraction in z by construction (Lipschitz constant <= gamma < 1):

        f(z; x) = ReLU(x + gamma W2^ * ReLU(W1^ * z + b1) + b2),   W^ = W / max(1, ||W||)

    with ||W|| the convolution's operator norm (``conv_operator_norm``), so ||f(z) - f(z')|| <= gamma ||z - z'||
    for every input: the equilibrium exists, is unique, and every solver converges to it (fixed-point
    iteration at rate gamma; Anderson much faster), and the implicit backward's linear solve with J^T converges
    too. No normalisation sits on the z path (GroupNorm's division by a batch statistic has no Lipschitz bound).
    Parameters: two C -> C 3x3 convolutions with bias, as ``GroupNormConvCell`` less its three GroupNorms.

    ``bind()`` computes the normalised weights once (with their graph when gradients are on) and returns the
    map with them fixed, so the 20-60 evaluations of one solve do not each redo the two norms.
    """

    def __init__(self, channels: int, size: int, gamma: float = 0.9):
        super().__init__()
        if not 0 < gamma < 1:
            raise ValueError(f"gamma must be in (0, 1) for a contraction, got {gamma!r}")
        self.size = size
        self.gamma = gamma
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self._cached: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None  # see normalized_weights

    def normalized_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W1^, gamma W2^): operator norms at most 1 and gamma.

        Without a graph to build (inference, validation, the Explorer's one-image solves) the pair is kept
        until a weight changes (an optimiser step or a load bumps its version; a move to another device
        changes its storage): the two norms cost more than a whole solve of one image."""
        w1, w2 = self.conv1.weight, self.conv2.weight
        if torch.is_grad_enabled() and (w1.requires_grad or w2.requires_grad):
            return self._normalize(w1, w2)
        key = (w1._version, w2._version, w1.data_ptr(), w2.data_ptr(), w1.dtype)
        if self._cached is None or self._cached[0] != key:
            with torch.no_grad():
                self._cached = (key, self._normalize(w1, w2))
        return self._cached[1]

    def _normalize(self, w1: torch.Tensor, w2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one = w1.new_ones(())
        w1 = w1 / torch.maximum(one, conv_operator_norm(w1, self.size))
        w2 = w2 / torch.maximum(one, conv_operator_norm(w2, self.size))
        return w1, self.gamma * w2

    def bind(self):
        """f(z, x) with this cell's normalised weights computed now, once."""
        weights = self.normalized_weights()
        return lambda z, x: self.forward(z, x, weights)

    def forward(
        self, z: torch.Tensor, x: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        w1, w2 = self.normalized_weights() if weights is None else weights
        h = torch.relu(nn.functional.conv2d(z, w1.to(z.dtype), self.conv1.bias, padding=1))
        return torch.relu(x + nn.functional.conv2d(h, w2.to(h.dtype), self.conv2.bias, padding=1))


class ConvHead(nn.Module):
    """(B, C, H, W) -> logits (B, K): GN, ReLU, Conv1x1 C->D, BN, ReLU, avg-pool to P x P, Linear."""

    def __init__(self, channels: int, head_dim: int, num_classes: int, pool: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            group_norm(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, head_dim, 1),
            nn.BatchNorm2d(head_dim),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(pool),
            nn.Flatten(),
            nn.Linear(head_dim * pool * pool, num_classes),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPField(nn.Module):
    """Vector field on (B, D) states, optionally conditioned on points x (B, 2).

    F(z) = W2 tanh(W1 z + b1) + b2, and with a condition F(z; x) = W2 tanh(W1 z + U x + b1) + b2; with
    ``depth`` > 1, ``depth - 1`` more hidden layers h <- tanh(V h + c) sit between W1 and W2.
    """

    def __init__(self, dim: int, hidden: int, cond_dim: int = 0, depth: int = 1):
        super().__init__()
        self.inp = nn.Linear(dim, hidden)
        self.cond = nn.Linear(cond_dim, hidden, bias=False) if cond_dim else None
        self.mid = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))  # none at depth 1
        self.out = nn.Linear(hidden, dim)

    def forward(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(z)
        if x is not None:
            h = h + self.cond(x)
        h = torch.tanh(h)
        for layer in self.mid:
            h = torch.tanh(layer(h))
        return self.out(h)


class MLPCell(nn.Module):
    """DEQ cell on (B, D): f(z; x) = tanh(W2 tanh(W1 z + U x + b1) + b2) (``depth`` as in MLPField)."""

    def __init__(self, dim: int, hidden: int, cond_dim: int, depth: int = 1):
        super().__init__()
        self.field = MLPField(dim, hidden, cond_dim, depth)
        # Keep the untrained map contractive (||∂f/∂z|| well below 1).
        with torch.no_grad():
            self.field.inp.weight.mul_(0.5)
            self.field.out.weight.mul_(0.5)
            for layer in self.field.mid:
                layer.weight.mul_(0.5)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.field(z, x))


def alternating_start(shape: tuple[int, ...]) -> torch.Tensor:
    """The fixed start point: -1, +1, -1, ... over channels (dim 1), broadcast over the rest (the official
    code's order)."""
    signs = torch.ones(shape[0])
    signs[0::2] = -1
    return signs.view((shape[0],) + (1,) * (len(shape) - 1)).expand(shape).clone()


class LearnableStart(nn.Module):
    """A start point shared by all inputs, one value per channel (images) or per dimension (points).

    Images: GN(conv1x1(ones)) with a 1 -> C conv without bias, i.e. C + 2C parameters (192 at
    C = 64, the official parametrisation). Points: a free vector of D parameters.
    """

    def __init__(self, state_shape: tuple[int, ...]):
        super().__init__()
        self.state_shape = state_shape
        if len(state_shape) == 1:
            self.value = nn.Parameter(alternating_start(state_shape))
            self.conv = self.norm = None
        else:
            channels = state_shape[0]
            self.value = None
            self.conv = nn.Conv2d(1, channels, 1, bias=False)
            self.norm = group_norm(channels)

    def forward(self) -> torch.Tensor:
        """-> (*state_shape) the start point (no batch dimension)."""
        if self.value is not None:
            return self.value
        ones = torch.ones((1, 1) + self.state_shape[1:], dtype=self.conv.weight.dtype, device=self.conv.weight.device)
        return self.norm(self.conv(ones))[0]
