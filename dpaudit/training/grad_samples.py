"""Speed-ups to Opacus's ``hooks`` grad-sample mode that leave every privatised gradient bit-for-bit the same.

Both are context managers that train.py wraps around a DP training loop; both undo themselves on exit.
tests/test_grad_samples.py trains the same model with and without them and compares it bit for bit.
"""
from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


@contextmanager
def grad_samples_without_copy() -> Iterator[None]:
    """Let Opacus keep each layer's per-example gradients as computed instead of copying them.

    Opacus (1.6, ``create_or_accumulate_grad_sample``) allocates a zero tensor of the batch's shape for
    every parameter at every step and copies the per-example gradients into it: 8% of a DP step on the
    seed's CNN (profile: 7 ms of 91). When the gradients already span the whole batch (every layer
    here; only packed sequences differ) the zero-fill adds nothing: 0 + g == g exactly, so clipping,
    noise and accounting are unchanged. A layer called twice in one forward accumulates out of place,
    so autograd's buffers are never written.
    """
    try:
        import opacus.grad_sample.grad_sample_module as gsm
    except ImportError:
        yield
        return
    original = getattr(gsm, "create_or_accumulate_grad_sample", None)
    if original is None:  # another Opacus layout: keep its own code
        yield
        return

    def fast(*, param, grad_sample, max_batch_len):
        if not param.requires_grad:
            return
        if grad_sample.shape[0] != max_batch_len:
            return original(param=param, grad_sample=grad_sample, max_batch_len=max_batch_len)
        if hasattr(param, "_current_grad_sample"):
            param._current_grad_sample = param._current_grad_sample + grad_sample
        else:
            param._current_grad_sample = grad_sample

    gsm.create_or_accumulate_grad_sample = fast
    try:
        yield
    finally:
        gsm.create_or_accumulate_grad_sample = original


class _ConvInputGradOnly(torch.autograd.Function):
    """conv2d whose backward returns the input's gradient only (see ``without_discarded_param_grads``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.conf = (x.shape, stride, padding, dilation, groups)
        ctx.save_for_backward(weight)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        shape, stride, padding, dilation, groups = ctx.conf
        grad_in = None
        if ctx.needs_input_grad[0]:
            grad_in = torch.ops.aten.convolution_backward(
                grad_out, grad_out.new_empty(shape), weight, None, stride, padding, dilation, False,
                (0,) * len(stride), groups, (True, False, False))[0]
        return grad_in, None, None, None, None, None, None


class _LinearInputGradOnly(torch.autograd.Function):
    """linear whose backward returns the input's gradient only."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(weight)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        return (grad_out @ weight if ctx.needs_input_grad[0] else None), None, None


def _detached(p: torch.Tensor | None) -> torch.Tensor | None:
    return None if p is None else p.detach()


# Where the input needs a gradient, the layer runs on its detached parameters: autograd's own backward node then
# computes the input's gradient alone, with the same kernel call as a plain backward (bit for bit), and without the
# Python node of the autograd Functions above (about 45 us a layer a step, forward and backward) and without the
# freshly allocated input-shaped tensor _ConvInputGradOnly hands convolution_backward (likely first touched there:
# SimpleCNN's conv2 forward and backward 0.8 to 1.8 ms slower at batch 256 on one thread). A layer whose
# input needs no gradient (a first layer) needs the Function: on detached parameters its output would leave the
# graph, and its output gradient would never be computed.
def _conv_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    if x.requires_grad:
        return F.conv2d(x, self.weight.detach(), _detached(self.bias), self.stride, self.padding, self.dilation,
                        self.groups)
    return _ConvInputGradOnly.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def _linear_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.requires_grad:
        return F.linear(x, self.weight.detach(), _detached(self.bias))
    return _LinearInputGradOnly.apply(x, self.weight, self.bias)


def _fast_forward_for(module: nn.Module):
    # Exact types only: a subclass may change forward, and any other padding mode pads in Python first.
    if type(module) is nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str):
        return _conv_forward
    if type(module) is nn.Linear:
        return _linear_forward
    return None


@contextmanager
def without_discarded_param_grads(model: nn.Module) -> Iterator[int]:
    """Stop autograd from computing the batch-summed weight gradients that Opacus's DPOptimizer throws away.

    In ``hooks`` mode Opacus computes per-example gradients in backward hooks, and ``DPOptimizer.add_noise``
    then *replaces* ``p.grad`` with the clipped sum plus noise. The ordinary summed gradient that autograd
    also computes for every parameter is never read, yet it is the costliest part of the seed CNN's
    backward (the first convolution's weight gradient alone takes longer than its per-example gradients).
    Inside this context Conv2d and Linear layers compute only their input's gradient; their backward
    hooks still receive the same output gradients, so the per-example gradients, the clipped sums and
    the noise are exactly what they were. Only for ``hooks`` mode: ghost clipping reads ``p.grad`` from
    its second backward, and functorch traces the forward.

    Yields the number of layers switched.
    """
    switched = []
    for module in model.modules():
        forward = _fast_forward_for(module)
        if forward is not None and "forward" not in module.__dict__:
            module.forward = types.MethodType(forward, module)
            switched.append(module)
    try:
        yield len(switched)
    finally:
        for module in switched:
            del module.forward
