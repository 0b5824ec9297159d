"""Dynamic int8 quantisation of a head's linear and recurrent-cell layers, for cheap decoding.

At COCO size a beam-search step reads 59 MB of fp32 weights (34 MB the recurrent cell, 20 MB the
output layer) for a handful of rows, more than the CPU's cache holds; in int8 they take a
quarter of that and stay cached (benchmarks/results/latency.json). Weights are quantised once,
symmetrically per output channel; each input row is quantised when it arrives, with its own
scale (dynamic quantisation), so the integer product is exact and a row's result never depends
on the other rows of its batch: batch company and beam width do not change a caption, as in
fp32.
torch's own dynamic quantisation (`torch.ao.quantization`) is deprecated and scales the
whole input tensor at once, so it would tie each beam's words to its neighbours'.

`quantize_int8` swaps modules by type (`nn.Linear`, `nn.LSTMCell`, `nn.GRUCell`) wherever
they sit, so it needs no knowledge of the head's layout.
"""

from typing import Literal

import torch
from torch import Tensor, nn

Quantization = Literal["none", "int8"]
_LEVELS = 127  # symmetric int8: -127..127, so that negation is exact
# Smaller layers (256 KB in fp32) stay in the CPU's L2 cache: quantising their input would
# cost more than reading their weights, and their outputs (an attention energy, the
# context gate) are single numbers where rounding shows most.
MIN_WEIGHTS = 2**16


def _per_row(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """int8 values and the fp32 scale of each row: matrix (N, K) ~= values * scale (N, 1)."""
    scale = matrix.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    scale = scale / _LEVELS
    return torch.round(matrix / scale).to(torch.int8), scale


class Int8Weight(nn.Module):
    """A weight (out, in) as int8 with one scale per output channel; `x @ W^T` for float x."""

    values: Tensor
    scale: Tensor

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        values, scale = _per_row(weight.detach().float())
        self.register_buffer("values", values)  # (out, in) int8
        self.register_buffer("scale", scale.view(1, -1))  # (1, out)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in) float -> (..., out) float."""
        rows = x.reshape(-1, x.size(-1))
        x_values, x_scale = _per_row(rows)  # (R, in), (R, 1)
        exact = torch._int_mm(x_values, self.values.t())  # (R, out) int32, no rounding
        return (exact * (x_scale * self.scale)).view(*x.shape[:-1], -1)


class Int8Linear(nn.Module):
    """`nn.Linear` with an int8 weight."""

    bias: Tensor | None

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = Int8Weight(linear.weight)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.weight(x)
        return out if self.bias is None else out + self.bias


class _Int8Cell(nn.Module):
    """The input and hidden weights of a recurrent cell, each int8 with its own input scale
    (the two inputs live on different scales), and the cell's biases in fp32."""

    bias_ih: Tensor
    bias_hh: Tensor

    def __init__(self, cell: nn.LSTMCell | nn.GRUCell) -> None:
        super().__init__()
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        self.weight_ih, self.weight_hh = Int8Weight(cell.weight_ih), Int8Weight(cell.weight_hh)
        zeros = torch.zeros(cell.weight_ih.size(0))
        biases = (cell.bias_ih, cell.bias_hh) if cell.bias else (zeros, zeros)
        self.register_buffer("bias_ih", biases[0].detach().clone())
        self.register_buffer("bias_hh", biases[1].detach().clone())

    def _zeros(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.size(0), self.hidden_size)


class Int8LSTMCell(_Int8Cell):
    """`nn.LSTMCell` (gates i, f, g, o) with int8 weights."""

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        h, c = hx if hx is not None else (self._zeros(x), self._zeros(x))
        gates = self.weight_ih(x) + self.bias_ih + self.weight_hh(h) + self.bias_hh  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class Int8GRUCell(_Int8Cell):
    """`nn.GRUCell` (gates r, z, n) with int8 weights."""

    def forward(self, x: Tensor, hx: Tensor | None = None) -> Tensor:
        h = hx if hx is not None else self._zeros(x)
        x_r, x_z, x_n = (self.weight_ih(x) + self.bias_ih).chunk(3, dim=1)
        h_r, h_z, h_n = (self.weight_hh(h) + self.bias_hh).chunk(3, dim=1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return n + z * (h - n)  # (1 - z) n + z h


_SWAPS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: Int8Linear,
    nn.LSTMCell: Int8LSTMCell,
    nn.GRUCell: Int8GRUCell,
}


def quantize_int8(model: nn.Module, min_weights: int = MIN_WEIGHTS) -> nn.Module:
    """`model` with every linear and recurrent-cell layer of at least `min_weights` weights
    in int8, in place, for inference: the int8 layers hold buffers, not parameters, so
    nothing of them trains."""
    for name, child in model.named_children():
        swap = _SWAPS.get(type(child))
        if swap is None:
            quantize_int8(child, min_weights)
        elif sum(p.numel() for p in child.parameters()) >= min_weights:
            setattr(model, name, swap(child))
    return model.eval()


def quantization_of(model: nn.Module) -> Quantization:
    """How `model`'s weights are stored, for the model card."""
    int8 = any(isinstance(m, Int8Weight) for m in model.modules())
    return "int8" if int8 else "none"
