"""What one decoding step must cost at least on this machine: the bytes of weights it reads
and the FLOPs it does, against the measured memory read bandwidth and matmul peak.

At batch 1 a step multiplies a few rows by every weight matrix of the decoder, so it is bound
by reading the weights (bytes / bandwidth) unless they fit in the cache; the FLOPs bound
(FLOPs / peak) is the other floor. Both are measured here, not taken from a data sheet.
"""

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import timed
from models.captioner import Captioner, Prepared


def read_bandwidth(megabytes: int, repeats: int) -> float:
    """Bytes/s of summing an fp32 array `megabytes` large (far beyond the cache by default)."""
    array = torch.ones(megabytes * 2**20 // 4)
    return array.numel() * 4 / timed(lambda: array.sum(), repeats)["median_s"]


def _own_bytes(module: nn.Module) -> int:
    tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    return sum(t.numel() * t.element_size() for t in tensors)


@contextmanager
def _around_modules(
    model: nn.Module, enter: Callable[[str, nn.Module], None], leave: Callable[[str], None]
) -> Iterator[None]:
    """Call `enter(name, module)` before and `leave(name)` after each submodule's forward."""

    def before(name: str) -> Callable:
        def hook(module: nn.Module, _: object) -> None:  # None: the inputs pass unchanged
            enter(name, module)

        return hook

    def after(name: str) -> Callable:
        def hook(*_: object) -> None:  # None: the output passes unchanged
            leave(name)

        return hook

    handles = []
    for name, module in model.named_modules():
        if module is not model:
            handles.append(module.register_forward_pre_hook(before(name)))
            handles.append(module.register_forward_hook(after(name)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def weight_bytes_per_step(model: Captioner, tokens: Tensor, prepared: Prepared) -> int:
    """Bytes of weights one `step` reads: every module it calls, its own parameters and
    buffers; an embedding only for the rows looked up."""
    called: dict[str, nn.Module] = {}
    with _around_modules(model, called.setdefault, lambda _: None), torch.inference_mode():
        model.step(tokens, prepared)
    total = 0
    for module in called.values():
        if isinstance(module, nn.Embedding):
            total += tokens.numel() * module.embedding_dim * module.weight.element_size()
        else:
            total += _own_bytes(module)
    return total


def flops_per_step(model: Captioner, tokens: Tensor, prepared: Prepared) -> int:
    """Matmul FLOPs of one fp32 `step` (a multiply-add counts 2), by PyTorch's counter; an
    int8 step does the same arithmetic in integers."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.step(tokens, prepared)
    return counter.get_total_flops()


def module_ms(model: Captioner, tokens: Tensor, prepared: Prepared, repeats: int) -> dict:
    """Median milliseconds per step of each module (a nested module also counts within its
    parent's figure), largest first: where a step goes."""
    started: dict[str, float] = {}
    per_step: list[dict[str, float]] = []

    def enter(name: str, _: nn.Module) -> None:
        started[name] = time.perf_counter()

    def leave(name: str) -> None:
        spent = per_step[-1]
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - started[name]

    with _around_modules(model, enter, leave), torch.inference_mode():
        for _ in range(repeats + 1):  # the first is a warm-up
            per_step.append({})
            model.step(tokens, prepared)
    names = per_step[-1]
    medians = {n: statistics.median(s[n] for s in per_step[1:]) * 1e3 for n in names}
    return dict(sorted(medians.items(), key=lambda item: -item[1]))
