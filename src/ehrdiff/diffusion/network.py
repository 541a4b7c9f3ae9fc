"""The denoiser network F of EHRDiff and its noise-level embeddings.

F is an MLP d -> h_1 -> ... -> h_k -> d. Before every linear layer its input gets an added linear projection of
the noise-level embedding, then a ReLU (the official EHRDiff ``LinearModel``: each block is
``Linear(ReLU(h + P_i(emb)))``); the last layer has no activation. The embedding maps c_noise to a vector:
a sinusoidal (positional) embedding, or random Fourier features, followed by Linear-SiLU-Linear.

Exact rewrites keep it fast without changing the function (each is tested against plain autograd):
- the k+1 projections P_i are one Linear(width, sum of layer inputs), so one matrix multiply replaces k+1 small
  ones (same parameters, same initial distribution: every P_i has fan-in ``width``);
- training runs a hand-written forward and backward (``_FusedMLP``) that keeps every activation in one buffer and
  writes gradients in place, instead of autograd's per-layer temporaries;
- when all rows share one noise level (sampling), the embedding and projections are computed once per call and
  each layer's shift is folded into the previous layer's bias.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """[sin(t f_k), cos(t f_k)], f_k = 10000^(-k/(h-1)), k = 0..h-1, h = ceil(features / 2).

    The official code uses ``features`` = data width and h = floor(d/2), which breaks for odd d (2 floor(d/2)
    outputs feed a layer expecting d); rounding h up gives an even number of outputs for any ``features``.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        half = max(2, math.ceil(features / 2))
        self.out_features = 2 * half
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / (half - 1))
        # cos(a) = sin(a + pi/2): one sin over [f, f] with phases [0, pi/2] instead of sin, cos and a concatenation
        self.register_buffer("freqs", torch.cat([freqs, freqs]).float(), persistent=False)
        self.register_buffer("phases", torch.cat([torch.zeros(half), torch.full((half,), math.pi / 2)]),
                             persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.phases, t.reshape(-1, 1).to(self.freqs.dtype), self.freqs).sin_()


class RandomFourierEmbedding(nn.Module):
    """[t, sin(2 pi t w_k), cos(2 pi t w_k)] with fixed random w_k ~ N(0, 1) (the official CinC/ECG setting:
    32 features, i.e. 16 frequencies, plus t itself: 33 outputs). The frequencies are a saved buffer."""

    def __init__(self, features: int = 32) -> None:
        super().__init__()
        half = max(1, math.ceil(features / 2))
        self.out_features = 2 * half + 1
        self.register_buffer("weights", torch.randn(half))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1, 1).to(self.weights.dtype)
        angles = 2 * math.pi * t * self.weights
        return torch.cat([t, angles.sin(), angles.cos()], dim=1)


class NoiseEmbedding(nn.Module):
    """c_noise -> features -> Linear -> SiLU -> Linear (``width`` outputs), plus, with ``n_classes`` > 0, a learned
    embedding of the class label (classifier-free guidance, ehrdiff.models.ehrdiff.conditioning).

    The class table has ``n_classes`` + 1 rows, the last one the "null" class (no condition); ``class_labels`` None
    means the null class for every row, one label is shared by every row (the sampling fast path keeps a single
    embedding row), one label per row gives per-row embeddings (training). The table starts at zero and is created
    without random draws, so a fresh conditional network computes what the unconditional one does."""

    def __init__(self, kind: str, features: int, width: int, n_classes: int = 0) -> None:
        super().__init__()
        if kind == "sinusoidal":
            self.features = SinusoidalEmbedding(features)
        elif kind == "fourier":
            self.features = RandomFourierEmbedding(features)
        else:
            raise ValueError(f"unknown noise embedding '{kind}' (use 'sinusoidal' or 'fourier')")
        self.width = width
        self.mlp = nn.Sequential(nn.Linear(self.features.out_features, width), nn.SiLU(), nn.Linear(width, width))
        self.n_classes = int(n_classes)
        if self.n_classes:
            self.classes = nn.Embedding(self.n_classes + 1, width, _weight=torch.zeros(self.n_classes + 1, width))

    def forward(self, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        e = self.mlp(self.features(c_noise))
        if not self.n_classes:
            if class_labels is not None:
                raise ValueError("class labels given to a network trained without a condition")
            return e
        if class_labels is None:
            return e + self.classes.weight[self.n_classes]
        return e + self.classes(class_labels)


class MLPDenoiserNet(nn.Module):
    """F(x; c_noise): ``x`` is (B, d); ``c_noise`` has B values, or 1 value shared by every row.

    Parameters are those of the official network: ``layers[i]`` (Linear with bias) and, for every layer input, a
    projection of the embedding (kept as one Linear, ``projection``). Training runs through ``_FusedMLP``, a
    hand-written forward and backward of exactly this function (tested against plain autograd, ``reference_forward``).
    """

    def __init__(self, dim: int, hidden_dims: tuple[int, ...] | list[int], embedding: NoiseEmbedding) -> None:
        super().__init__()
        dims = [int(dim), *map(int, hidden_dims), int(dim)]
        self.dim = int(dim)
        self.embedding = embedding
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.input_dims = dims[:-1]
        # one Linear holding every layer's projection of the embedding (see the module docstring)
        self.projection = nn.Linear(embedding.width, sum(self.input_dims))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, scale: torch.Tensor | None = None,
                class_labels: torch.Tensor | None = None, *, plain: bool = False) -> torch.Tensor:
        """F(scale * x; c_noise, class_labels); ``scale`` (one value, or one per row) lets the caller's input scaling
        (EDM's c_in) ride along with the first layer's addition instead of costing a pass of its own. ``plain``:
        through ``reference_forward``, whose layers are ordinary modules (what per-example gradient hooks see)."""
        if plain:
            return self.reference_forward(x, c_noise, scale, class_labels)
        e = self.embedding(c_noise, class_labels)
        if not torch.is_grad_enabled() and e.shape[0] == 1:
            return self._forward_shared(x, e, scale)
        if scale is not None and x.requires_grad:
            x, scale = x * scale, None
        if torch.is_grad_enabled() and not x.requires_grad:
            e = e.expand(x.shape[0], -1) if e.shape[0] != x.shape[0] else e
            # the bias of layer i-1 and the projection bias of layer i both add to layer i's input: their sum is
            # added once, in the same pass as the ReLU
            zeros = self.projection.bias.new_zeros(self.input_dims[0])
            shift_bias = self.projection.bias + torch.cat([zeros, *(m.bias for m in self.layers[:-1])])
            weights = [m.weight for m in self.layers]
            scale = torch.ones((), dtype=x.dtype, device=x.device) if scale is None else scale
            if not hasattr(self, "_workspace"):
                self._workspace = _Workspace()
            return _FusedMLP.apply(x, scale.detach(), e, self.projection.weight, shift_bias, self.layers[-1].bias,
                                   (tuple(self.input_dims), self._workspace), *weights)
        return self._forward_with(x if scale is None else x * scale, e)

    def reference_forward(self, x: torch.Tensor, c_noise: torch.Tensor, scale: torch.Tensor | None = None,
                          class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The same function with plain autograd operations (for tests and for gradients with respect to x)."""
        return self._forward_with(x if scale is None else x * scale, self.embedding(c_noise, class_labels),
                                  in_place=False)

    def _forward_with(self, x: torch.Tensor, e: torch.Tensor, in_place: bool = True) -> torch.Tensor:
        shifts = self.projection(e).split(self.input_dims, dim=1)
        h = self.layers[0](torch.relu(x + shifts[0]))
        for layer, shift in zip(self.layers[1:], shifts[1:]):
            # in place on our own intermediate (a linear layer's output is not needed by its backward)
            h = layer(torch.relu_(h.add_(shift)) if in_place else torch.relu(h + shift))
        return h

    def _forward_shared(self, x: torch.Tensor, e: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        """One noise level for all rows (sampling): every shift is a vector, so layer i's shift joins layer i-1's
        bias and each layer is one addmm and one in-place ReLU."""
        shifts = self.projection(e)[0].split(self.input_dims)
        h = torch.relu_(x + shifts[0] if scale is None else torch.addcmul(shifts[0], x, scale))
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            bias = layer.bias + shifts[i + 1] if i < last else layer.bias
            h = torch.addmm(bias, h, layer.weight.t())
            if i < last:
                h.relu_()
        return h

    def linear_shapes(self, batch_rows: int = 1) -> list[tuple[int, int, int]]:
        """(rows, in, out) of every matrix multiply in one forward pass with per-row noise levels (for FLOP counts)."""
        shapes = [(batch_rows, m.in_features, m.out_features) for m in self.embedding.mlp if isinstance(m, nn.Linear)]
        shapes.append((batch_rows, self.projection.in_features, self.projection.out_features))
        shapes += [(batch_rows, m.in_features, m.out_features) for m in self.layers]
        return shapes


def _add_relu_(t: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """t <- relu(t + bias) in one pass where PyTorch has the fused kernel (CPU)."""
    if _ADD_RELU is not None and t.device.type == "cpu":
        return _ADD_RELU(t, bias)
    return t.add_(bias).relu_()


try:
    _ADD_RELU = torch.ops.aten._add_relu_   # used by PyTorch's own graph fusion; absent in some builds
except (AttributeError, RuntimeError):
    _ADD_RELU = None


class _Workspace:
    """The activation and gradient buffers of the last training step, reused by the next one: fresh multi-MB
    buffers cost page faults inside the matrix multiplies that first write them. A buffer still held by a graph
    that has not run backward is never handed out again, and autograd's version check refuses a backward through
    a graph whose saved buffer was overwritten."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}
        self.busy = False

    def take(self, name: str, like_shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        buf = self.buffers.get(name)
        if buf is None or buf.shape != like_shape or buf.dtype != dtype or buf.device != device:
            buf = self.buffers[name] = torch.empty(like_shape, dtype=dtype, device=device)
        return buf


class _FusedMLP(torch.autograd.Function):
    """F's layers with all activations in one (B, sum of layer inputs) buffer and gradients written in place.

    Forward: S = e P^T; then a_0 = relu(scale x + S_0 + c_0), and a_i = relu(S_i + a_{i-1} W_{i-1}^T + c_i) computed
    in place in S's column block i (a GEMM accumulating into the block, then one pass adding the bias c_i and
    applying the ReLU); out = a_k W_k^T + b_k. c is ``shift_bias``.
    Backward mirrors it: each block's gradient goes straight into the matching block of one gradient buffer, whose
    column sums and products give the gradients of shift_bias, P and e. Compared with autograd this saves the
    per-layer bias copies and sums, the concatenation of the shift gradients and most temporary allocations.
    """

    @staticmethod
    def forward(ctx, x, scale, e, P, shift_bias, last_bias, dims_and_workspace, *weights):
        dims, workspace = dims_and_workspace
        shape = (e.shape[0], sum(dims))
        if workspace.busy:      # an earlier graph still needs its buffer: use a fresh one
            S = torch.mm(e, P.t())
        else:
            S = torch.mm(e, P.t(), out=workspace.take("S", shape, e.dtype, e.device))
            workspace.busy = True
        ctx.workspace, ctx.owns = workspace, S is workspace.buffers.get("S")
        blocks, biases = S.split(dims, dim=1), shift_bias.split(dims)
        _add_relu_(blocks[0].addcmul_(x, scale), biases[0])
        for i in range(1, len(dims)):
            _add_relu_(blocks[i].addmm_(blocks[i - 1], weights[i - 1].t()), biases[i])
        out = torch.addmm(last_bias, blocks[-1], weights[-1].t())
        ctx.dims = dims
        ctx.save_for_backward(e, P, S, *weights)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        e, P, S, *weights = ctx.saved_tensors
        dims = ctx.dims
        blocks = S.split(dims, dim=1)
        grad_S = ctx.workspace.take("grad_S", tuple(S.shape), S.dtype, S.device)   # only used inside backward
        grad_blocks = grad_S.split(dims, dim=1)
        grad_w = [None] * len(weights)
        grad_out = grad_out.contiguous()
        grad_w[-1] = grad_out.t().mm(blocks[-1])
        grad_last_bias = grad_out.sum(0)
        upstream = grad_out
        for i in range(len(dims) - 1, -1, -1):
            # gradient with respect to a_i, then through the ReLU into the pre-activation block i
            torch.mm(upstream, weights[i], out=grad_blocks[i])
            torch.ops.aten.threshold_backward.grad_input(grad_blocks[i], blocks[i], 0, grad_input=grad_blocks[i])
            if i > 0:
                grad_w[i - 1] = grad_blocks[i].t().mm(blocks[i - 1])
            upstream = grad_blocks[i]
        grad_shift_bias = grad_S.sum(0)
        grad_P = grad_S.t().mm(e)
        grad_e = grad_S.mm(P) if ctx.needs_input_grad[2] else None
        if ctx.owns:
            ctx.workspace.busy = False
        return (None, None, grad_e, grad_P, grad_shift_bias, grad_last_bias, None, *grad_w)
