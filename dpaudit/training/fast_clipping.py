"""Opacus grad-sample mode ``fast``: per-example gradient norms without per-example gradients where they are large,
and the clipped sum from the same single backward pass.

DP-SGD needs two things from each batch: every example's gradient norm (to clip it) and the sum of the clipped
gradients. Opacus's ``hooks`` mode materialises every example's gradient of every layer (6.7 million values a step
for SimpleCNN at batch 256), and its ``ghost`` mode runs a second backward pass for the clipped sum. This mode does
neither where it does not pay:

- *ghost norms* (Goodfellow 2015; Li et al. 2022) for a Linear or Conv2d weight whose per-example gradient is large
  against its activations: for a layer with input patches A_i [T, D] and output gradients B_i [T, P] at T positions,
  ||B_i^T A_i||_F^2 = <A_i A_i^T, B_i B_i^T>, at cost T^2 (D + P) instead of T D P and no [P, D] tensor per example;
  with T = 1 (a Linear layer on vectors) it is |a_i|^2 |b_i|^2;
- *per-example gradients* where they are small (mixed ghost clipping, Bu, Mao & Xu, NeurIPS 2022), each layer
  choosing by the cost of the two ways (``use_ghost_norm``); biases always (P values an example). For SimpleCNN at
  batch 256: per-example for both convolutions, ghost norms for both Linear layers (16,384 + 320 weights). A
  convolution with a vertical stride of 2 or more gets them without a patch matrix, from its input's rows
  regrouped by stride phase (``conv_rows_by_phase``: ceil(kh / sh) matrix products an example);
- *book-keeping* (Bu et al., ICML 2023): the backward hooks keep each layer's activations and output gradients, and
  the optimizer step forms the clipped sum from them directly: sum_i c_i B_i^T A_i is one matrix product with
  the output gradients scaled by the clip factors c_i. There is no second backward pass.

Every other layer type (GroupNorm, an RNN cell, a user layer) falls back to Opacus's own per-example grad sampler,
exactly as ``hooks`` does, and so does a Linear or Conv2d layer called more than once in a forward pass.

It plugs into Opacus rather than forking it: ``GradSampleModuleFastClipping`` subclasses Opacus's
``GradSampleModule`` (its activation capture, rearrangement, grad samplers and forward counters are Opacus's own;
exact Linear and Conv2d layers take their output gradient from a hook on the output tensor instead of a full
backward hook, and the loss-reduction factor is folded into the norms and clip factors rather than multiplied into
every output gradient), ``DPOptimizerFastClipping`` subclasses ``DPOptimizer`` (scaling, skipped steps of
``BatchMemoryManager`` and the accountant's step hook are Opacus's own; the clipping is replaced), and
``register()`` adds the mode to the two look-ups Opacus's ``PrivacyEngine`` chooses them by (``get_gsm_class``,
``get_optimizer_class``). Noise is Opacus's draws: ``add_noise`` calls ``torch.normal`` as Opacus's does, parameter
by parameter in the same order and shapes (secure mode is Opacus's own code), so a seeded noise generator gives the
same noise as in ``hooks`` mode, bit for bit; the clip factors are Opacus's formula C / (norm + 1e-6) capped at 1,
and the clipping norm is read from the optimizer at each step (as ``hooks`` does; Opacus issue #664 was ghost
clipping reading a stale copy). tests/test_fast_clipping.py checks each privatised gradient against ``hooks``.

The backward pass itself computes no parameter gradients when dpaudit's ``without_discarded_param_grads`` is on
(train.py turns it on for this mode as for ``hooks``): the optimizer replaces ``p.grad`` anyway. The few-MB tensors a
step writes (patches, per-example convolution gradients) live in buffers kept from step to step (``Scratch``).
"""
from __future__ import annotations

import math
import weakref
from functools import partial

import torch
from opacus.grad_sample.grad_sample_module import GradSampleModule
from opacus.optimizers.optimizer import DPOptimizer
from torch import nn

MODE = "fast"
# A memory pass over one value of a per-example gradient, in multiply-adds of a matrix product: what a ghost norm
# saves per value (see use_ghost_norm).
MEMORY_PASS_MACS = 8.0


def use_ghost_norm(positions: int, out_features: int, in_features: int, factor: float | None = None) -> bool:
    """Whether the weight of a layer with ``positions`` output positions T, ``out_features`` P and ``in_features`` D
    (input channels x kernel size for a convolution) takes a ghost norm rather than per-example gradients.

    Both ways cost the same matrix product of T D P multiply-adds an example, in the ghost way for the clipped sum
    (the weight gradient with scaled output gradients), in the other for the per-example gradients themselves. On
    top, a ghost norm costs the two Gram matrices, T^2 (D + P), and per-example gradients cost passes over their
    P D values (write, norm, weighted sum), ``factor`` multiply-adds each (MEMORY_PASS_MACS when None). So: ghost
    iff T^2 (D + P) < factor P D. Bu, Mao & Xu (2022) compare 2 T^2 with P D, the norms alone (their clipped sums
    come from a second backward pass); on two CPU cores SimpleCNN's second convolution (T 25, P 32, D 256), ghost
    by their rule, is faster with per-example gradients (benchmarks/profile_dp_step.py --ghost-factors 8,30).

    >>> use_ghost_norm(196, 16, 1 * 8 * 8)   # SimpleCNN's first convolution: per-example gradients
    False
    >>> use_ghost_norm(25, 32, 16 * 4 * 4)   # its second convolution: per-example gradients too
    False
    >>> use_ghost_norm(1, 32, 512)           # a Linear layer on vectors: |a_i| |b_i|
    True
    """
    factor = MEMORY_PASS_MACS if factor is None else factor
    return positions * positions * (in_features + out_features) < factor * out_features * in_features


# ---- what each parameter carries from the backward pass to the optimizer step ------------------------------------

class Scratch:
    """Buffers kept from step to step. Allocating and freeing a few MB at every step costs as much as computing in
    them: glibc hands such blocks back to the system on free and the next step faults them in again (freeing
    SimpleCNN's conv2 per-example gradients took 1.5 ms of a step). A buffer still held by a live entry (a second
    backward pass before the step) is never handed out again: that call gets a fresh tensor."""

    HEADROOM = 1.25  # Poisson batches vary in size: room for a larger one without reallocating

    def __init__(self):
        self._bufs: dict = {}

    def get(self, key, shape: tuple, like: torch.Tensor, holder=None) -> torch.Tensor:
        numel = math.prod(shape)
        buf, held = self._bufs.get(key, (None, None))
        if held is not None and held() is not None:
            return like.new_empty(shape)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = like.new_empty(int(numel * self.HEADROOM) + 1)
        self._bufs[key] = (buf, None)
        return buf[:numel].view(shape)

    def hold(self, key, holder) -> None:
        """Mark the buffer behind ``key`` as read by ``holder`` until that object is gone."""
        if key in self._bufs:
            self._bufs[key] = (self._bufs[key][0], weakref.ref(holder))


def _buffer(scratch: Scratch | None, key, shape: tuple, like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(shape) if scratch is None else scratch.get(key, shape, like)


class PerExample:
    """A parameter's per-example gradients g [n, *shape]: materialised because they are small (biases, layers with
    many positions), or because the layer has no ghost norm (the fallback to Opacus's grad samplers)."""

    __slots__ = ("g", "finish", "scale", "_norm", "processed", "__weakref__")

    def __init__(self, g: torch.Tensor, finish=None, scale: float = 1.0):
        self.g = g
        self.finish = finish  # maps the clipped sum to the parameter's layout when g is stored in another order
        self.scale = scale  # the true per-example gradients are scale * g (see fast_entries)
        self.processed = False
        # the norms now, while g is still in cache from the product that wrote it
        self._norm = torch.linalg.vector_norm(g.reshape(len(g), math.prod(g.shape[1:])), dim=1)

    @property
    def n(self) -> int:
        return int(self.g.shape[0])

    def norm(self) -> torch.Tensor:
        """Per-example norms of g; the true gradients' norms are ``scale`` times these (the optimizer applies it)."""
        return self._norm

    def clipped_sum(self, c: torch.Tensor) -> torch.Tensor:
        """sum_i c_i g_i (c: the clip factors times ``scale``), Opacus's einsum("i,i...") in
        DPOptimizer.clip_and_accumulate, as one vector-matrix product."""
        n = len(self.g)
        out = torch.mv(self.g.reshape(n, -1).t(), c).view(self.g.shape[1:])
        return out if self.finish is None else self.finish(out)


def _gram_norm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||B_i^T A_i||_F for A [n, T, D], B [n, T, P], as sqrt(<A_i A_i^T, B_i B_i^T>) (rounding can make the inner
    product of two Gram matrices slightly negative where the norm is 0)."""
    if a.shape[1] == 1:
        return torch.linalg.vector_norm(a[:, 0], dim=1) * torch.linalg.vector_norm(b[:, 0], dim=1)
    gram_a = torch.bmm(a, a.transpose(1, 2))
    gram_b = torch.bmm(b, b.transpose(1, 2))
    return (gram_a * gram_b).sum(dim=(1, 2)).clamp(min=0).sqrt()


class GhostLinear:
    """A Linear weight's book-keeping: inputs A [n, T, D] and output gradients B [n, T, P] (T = 1 on vectors); the
    per-example norms come from them without the [P, D] gradient of each example."""

    __slots__ = ("a", "b", "shape", "scale", "_norm", "processed")

    def __init__(self, a: torch.Tensor, b: torch.Tensor, shape: torch.Size, scale: float = 1.0):
        self.a, self.b, self.shape, self.scale = a, b, shape, scale
        self._norm = _gram_norm(a, b)
        self.processed = False

    @property
    def n(self) -> int:
        return int(self.a.shape[0])

    def norm(self) -> torch.Tensor:
        return self._norm

    def clipped_sum(self, c: torch.Tensor) -> torch.Tensor:
        """sum_i c_i B_i^T A_i = (c B)^T A over all examples and positions: one matrix product."""
        cb = (self.b * c.view(-1, 1, 1)).reshape(-1, self.b.shape[2])
        return torch.mm(cb.t(), self.a.reshape(-1, self.a.shape[2])).view(self.shape)


class GhostConv2d:
    """A Conv2d weight's book-keeping: the layer's input x and output gradient b; the per-example norms come from
    the Gram matrices of the input's patches and of b (the patches are freed once the norms are known); the
    clipped sum is torch's own weight gradient of the convolution with b scaled by the clip factors."""

    __slots__ = ("x", "b", "weight", "conf", "scale", "_norm", "processed")

    def __init__(self, module: nn.Conv2d, x: torch.Tensor, b: torch.Tensor, scratch: Scratch | None = None,
                 scale: float = 1.0):
        self.x, self.b, self.weight, self.scale = x, b, module.weight.detach(), scale
        self.conf = (module.stride, _int_padding(module), module.dilation)
        n, p_out = b.shape[0], b.shape[1]
        self._norm = _gram_norm(_patches(module, x, scratch), b.reshape(n, p_out, -1).transpose(1, 2))
        self.processed = False

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def norm(self) -> torch.Tensor:
        return self._norm

    def clipped_sum(self, c: torch.Tensor) -> torch.Tensor:
        stride, padding, dilation = self.conf
        return torch.ops.aten.convolution_backward(
            self.b * c.view(-1, 1, 1, 1), self.x, self.weight, None, stride, padding, dilation, False, (0, 0), 1,
            (False, True, False))[1]


def _int_padding(module: nn.Conv2d) -> tuple[int, int] | None:
    """The convolution's zero padding as two integers, or None when it has none such ("same" with an odd total)."""
    pad = module.padding
    if pad == "valid":
        return (0, 0)
    if pad == "same":
        totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
        return None if any(t % 2 for t in totals) else tuple(t // 2 for t in totals)
    return tuple(pad)


def _patches(module: nn.Conv2d, x: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
    """The input's patches [n, T, kh kw C], channels last: each patch row is kw C contiguous values, which copies
    about twice as fast as Opacus's unfold2d ([n, C kh kw, T]); the order within a patch does not change a Gram
    matrix over positions. Written into ``scratch`` buffers (read only until the caller returns)."""
    ph, pw = _int_padding(module)
    n, c, h0, w0 = x.shape
    h, w = h0 + 2 * ph, w0 + 2 * pw
    (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
    ho, wo = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    xl = _buffer(scratch, (id(module), "nhwc"), (n, h, w, c), x)  # zero-padded, channels last
    if ph or pw:
        xl.zero_()
    xl[:, ph:ph + h0, pw:pw + w0].copy_(x.permute(0, 2, 3, 1))
    view = xl.as_strided((n, ho, wo, kh, kw, c), (h * w * c, sh * w * c, sw * c, dh * w * c, dw * c, 1))
    out = _buffer(scratch, (id(module), "patches"), (n, ho * wo, kh * kw * c), x)
    return out.view(n, ho, wo, kh, kw, c).copy_(view).view(n, ho * wo, kh * kw * c)


def _conv_per_example(module: nn.Conv2d, x: torch.Tensor, bb: torch.Tensor, scratch: Scratch | None = None,
                      scale: float = 1.0) -> PerExample:
    """Per-example weight gradients of a Conv2d (groups 1) from its input x and output gradient bb [n, P, T]."""
    n, c = x.shape[0], x.shape[1]
    if c == 1:
        # One input channel: the per-example gradients are one grouped convolution of the input with the output
        # gradients (groups = batch; Opacus's convolution2d_backward_as_a_convolution), which beats unfold + bmm.
        ho, wo = _out_size(module, x)
        g = torch.nn.functional.conv2d(x.transpose(0, 1), bb.reshape(n * bb.shape[1], 1, ho, wo),
                                       padding=_int_padding(module), dilation=module.stride, stride=module.dilation,
                                       groups=n)
        return PerExample(g[:, :, : module.kernel_size[0], : module.kernel_size[1]].reshape(n, *module.weight.shape),
                          scale=scale)
    # [n, P, kh kw C] from the channels-last patches; only the clipped sum is put back in the weight's order
    p_out, (kh, kw) = module.out_channels, module.kernel_size
    a = _patches(module, x, scratch)
    key = (id(module), "per-example")
    g = torch.bmm(bb, a, out=_buffer(scratch, key, (n, p_out, a.shape[2]), x))
    entry = PerExample(g, finish=lambda s: s.view(p_out, kh, kw, c).permute(0, 3, 1, 2).contiguous(), scale=scale)
    if scratch is not None:
        scratch.hold(key, entry)
    return entry


class PhasedConvGrad(PerExample):
    """A strided convolution's per-example weight gradients in the layout ``conv_rows_by_phase`` writes them: g
    [A, n, M], one block of M = P sh kw C values (or its transpose) per kernel-row offset a (kernel row kh = sh a +
    b). Norms and the clipped sum read it as it lies; ``finish`` puts the clipped sum in the weight's order."""

    __slots__ = ()

    def __init__(self, g: torch.Tensor, finish, scale: float = 1.0):
        self.g, self.finish, self.scale, self.processed = g, finish, scale, False
        # per example: the norm of its A blocks' norms (each block a contiguous row: the same accurate reduction as
        # PerExample's), two reductions for the whole layer
        self._norm = torch.linalg.vector_norm(torch.linalg.vector_norm(g, dim=2), dim=0)

    @property
    def n(self) -> int:
        return int(self.g.shape[1])

    def clipped_sum(self, c: torch.Tensor) -> torch.Tensor:
        """sum_i c_i g_i over the A blocks at once: one batched vector-matrix product."""
        return self.finish(torch.matmul(c, self.g))


def row_phases_apply(module: nn.Conv2d) -> bool:
    """Whether ``conv_rows_by_phase`` computes this Conv2d's per-example gradients: a vertical stride of 2 or more,
    no dilation (the other convolutions keep ``_conv_per_example``)."""
    return module.stride[0] >= 2 and tuple(module.dilation) == (1, 1)


def conv_rows_by_phase(module: nn.Conv2d, x: torch.Tensor, bb: torch.Tensor, scratch: Scratch | None = None,
                        scale: float = 1.0) -> PhasedConvGrad:
    """Per-example weight gradients of a Conv2d (groups 1, no dilation, vertical stride sh >= 2) from its input x
    [n, C, H, W] and output gradient bb [n, P, T], with a copy of the input about sh kw / (kh kw) the size of its
    patches (a quarter for SimpleCNN's first convolution, 8 x 8 stride 2: im2col copies 64 values per position).

    The kernel row kh = sh a + b reads input row sh (oh + a) + b. So with the input's rows regrouped by phase b,
    X[n, s, ow, b, kw, c] = x_padded[n, c, sh s + b, sw ow + kw], the input values that the kernel rows
    sh a .. sh a + sh - 1 meet at output position (oh, ow) are X[n, oh + a, ow] (sh kw C values), and the rows
    (oh, ow) of X[n, a : a + Ho] are one contiguous [T, sh kw C] matrix: the gradients of those kernel rows are one
    matrix product with bb per example, A = ceil(kh / sh) products in all, no patch matrix. Kernel rows past kh
    (when sh does not divide kh) are computed on zero rows or real ones and zeroed before the norms.
    For SimpleCNN's first convolution (1 channel): four products of [16, 196] x [196, 16] an example, a fifth
    faster than the grouped convolution of ``_conv_per_example``; for its second, two of [25, 128]^T x [25, 32]."""
    n, c, h0, w0 = x.shape
    (ph, pw), (kh, kw), (sh, sw) = _int_padding(module), module.kernel_size, module.stride
    ho, wo = _out_size(module, x)
    p_out, t, k = module.out_channels, ho * wo, kw * c
    offsets = -(-kh // sh)  # A
    s_n = ho + offsets - 1
    hp, wp = max(h0 + 2 * ph, sh * s_n), w0 + 2 * pw  # rows past the padded input: zeros for unused phases
    xl = _buffer(scratch, (id(module), "nhwc"), (n, hp, wp, c), x)  # zero-padded, channels last
    if hp > h0 + 2 * ph or ph or pw:
        xl.zero_()
    xl[:, ph:ph + h0, pw:pw + w0].copy_(x.permute(0, 2, 3, 1))
    xe = _buffer(scratch, (id(module), "phases"), (n, s_n, wo, sh, k), x)
    for b in range(sh):  # one copy per phase: contiguous runs of kw C values (one strided copy of all is slower)
        xe[:, :, :, b].copy_(xl.as_strided((n, s_n, wo, k), (hp * wp * c, sh * wp * c, sw * c, 1),
                                           xl.storage_offset() + b * wp * c))
    m = sh * k
    transposed = m > p_out  # the product with the longer side in the output's rows runs faster (both orders exact)
    key = (id(module), "per-example")
    g = _buffer(scratch, key, (offsets, n, m, p_out) if transposed else (offsets, n, p_out, m), x)
    for a in range(offsets):
        rows = xe[:, a:a + ho].reshape(n, t, m)  # a view
        if transposed:
            torch.bmm(rows.transpose(1, 2), bb.transpose(1, 2), out=g[a])
        else:
            torch.bmm(bb, rows, out=g[a])
    valid = kh - sh * (offsets - 1)  # phases of the last offset that are kernel rows
    if valid < sh:
        last = g[offsets - 1]
        (last[:, valid * k:] if transposed else last[:, :, valid * k:]).zero_()

    def finish(s: torch.Tensor) -> torch.Tensor:  # [A, m, P] or [A, P, m] -> [P, C, kh, kw]
        s = s.view(offsets, sh, kw, c, p_out).permute(4, 3, 0, 1, 2) if transposed else \
            s.view(offsets, p_out, sh, kw, c).permute(1, 4, 0, 2, 3)
        return s.reshape(p_out, c, offsets * sh, kw)[:, :, :kh].contiguous()

    entry = PhasedConvGrad(g.view(offsets, n, -1), finish, scale=scale)
    if scratch is not None:
        scratch.hold(key, entry)
    return entry


def _out_size(module: nn.Conv2d, x: torch.Tensor) -> tuple[int, int]:
    (ph, pw), (kh, kw), (sh, sw), (dh, dw) = _int_padding(module), module.kernel_size, module.stride, module.dilation
    return ((x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


def fast_entries(module: nn.Module, x: torch.Tensor, b: torch.Tensor, scratch: Scratch | None = None,
                 scale: float = 1.0) -> dict | None:
    """Per-parameter book-keeping of one call of an exact nn.Linear or nn.Conv2d (x: its input, b: the gradient of
    its output), or None when this mode has no fast path for the layer (then Opacus's grad sampler runs, as in hooks
    mode). The per-example gradients are ``scale`` times those of b: under loss_reduction="mean" Opacus multiplies
    the output gradient by the batch size first, a pass over every layer's output gradient that this mode folds
    into the norms and the clip factors instead (n values each). ``scratch``: buffers to reuse."""
    kind = type(module)
    if kind is nn.Conv2d and (module.groups != 1 or module.padding_mode != "zeros" or _int_padding(module) is None):
        return None
    if kind not in (nn.Linear, nn.Conv2d):
        return None
    if x.shape[0] == 0:  # an empty Poisson batch: nothing to clip
        return {p: PerExample(p.new_zeros((0,) + tuple(p.shape))) for p in module.parameters(recurse=False)
                if p.requires_grad}
    x = x.to(b.dtype)
    out = {}
    if kind is nn.Linear:
        n, p_out, d_in = x.shape[0], module.out_features, module.in_features
        a, bb = x.reshape(n, -1, d_in), b.reshape(n, -1, p_out)
        t = a.shape[1]
        if module.weight.requires_grad:
            if use_ghost_norm(t, p_out, d_in):
                out[module.weight] = GhostLinear(a, bb, module.weight.shape, scale)
            else:
                out[module.weight] = PerExample(torch.einsum("ntp,ntd->npd", bb, a), scale=scale)
        if module.bias is not None and module.bias.requires_grad:
            out[module.bias] = PerExample(bb.sum(1) if t > 1 else bb[:, 0], scale=scale)
        return out
    n, p_out = x.shape[0], module.out_channels
    bb = b.reshape(n, p_out, -1)
    if module.weight.requires_grad:
        d_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        if use_ghost_norm(bb.shape[2], p_out, d_in):
            out[module.weight] = GhostConv2d(module, x, b, scratch, scale)
        elif row_phases_apply(module):
            out[module.weight] = conv_rows_by_phase(module, x, bb, scratch, scale)
        else:
            out[module.weight] = _conv_per_example(module, x, bb, scratch, scale)
    if module.bias is not None and module.bias.requires_grad:
        out[module.bias] = PerExample(bb.sum(2), scale=scale)
    return out


# ---- the grad-sample module --------------------------------------------------------------------------------------

ACCUMULATION_ERROR = ("Poisson sampling is not compatible with grad accumulation. You need to call optimizer.step() "
                      "after every forward/backward pass or consider using BatchMemoryManager")


class GradSampleModuleFastClipping(GradSampleModule):
    """Opacus's GradSampleModule whose backward hooks keep, for each parameter and backward pass, what the optimizer
    needs to clip (``p._fast_entries``: ``GhostLinear``, ``GhostConv2d`` or ``PerExample``), not ``p.grad_sample``.

    An exact nn.Linear or nn.Conv2d gets its output gradient from a hook on its output tensor, registered by the
    forward hook that runs Opacus's activation capture, rather than from a full module backward hook: the gradient
    is the same tensor (``grad_output[0]``), but a full backward hook wraps every input and output of the layer in
    an autograd node of its own at every call, forward and backward (about half a millisecond of a SimpleCNN step
    on one core), and forbids modifying the layer's output in place. Every other layer keeps Opacus's hooks."""

    def __init__(self, m: nn.Module, *, batch_first=True, loss_reduction="mean", strict: bool = True,
                 force_functorch=False):
        super().__init__(m, batch_first=batch_first, loss_reduction=loss_reduction, strict=strict,
                         force_functorch=force_functorch)
        self._pending: dict = {}  # module -> {param: per-example gradient} while a layer called twice is in backward
        self._scratch = Scratch()
        owners: dict[int, str] = {}
        from opacus.utils.module_utils import trainable_modules, trainable_parameters

        for name, module in trainable_modules(self._module):
            for _, p in trainable_parameters(module):
                if id(p) in owners and owners[id(p)] != name:
                    self._close()
                    raise NotImplementedError(f"grad_sample_mode {MODE!r} does not support a parameter shared by two "
                                              f"layers ({owners[id(p)]} and {name}); use grad_sample_mode 'hooks'")
                owners[id(p)] = name
                p._fast_entries = []

    def add_hooks(self, *, loss_reduction: str = "mean", batch_first: bool = True,
                  force_functorch: bool = False) -> None:
        """Opacus's add_hooks (the same layers, the same activation capture, functorch preparation and handles), with
        an output-tensor hook in place of the full backward hook for exact nn.Linear and nn.Conv2d layers."""
        from opacus.grad_sample.functorch import prepare_layer
        from opacus.layers.dp_rnn import DPGRU, DPLSTM, DPRNN

        if force_functorch:
            return super().add_hooks(loss_reduction=loss_reduction, batch_first=batch_first,
                                     force_functorch=force_functorch)
        if hasattr(self._module, "autograd_grad_sample_hooks"):
            raise ValueError("Trying to add hooks twice to the same model")
        handles = self._module.autograd_grad_sample_hooks = []
        self.autograd_grad_sample_hooks = handles
        for module in self.iterate_submodules(self._module):
            if type(module) in (DPRNN, DPLSTM, DPGRU):  # their RNNLinear layers carry the hooks
                continue
            if type(module) not in self.GRAD_SAMPLERS:
                prepare_layer(module, batch_first=batch_first)
            backward = partial(self.capture_backprops_hook, loss_reduction=loss_reduction, batch_first=batch_first)
            if type(module) in (nn.Linear, nn.Conv2d):
                handles.append(module.register_forward_hook(partial(self._capture_and_hook_output, backward=backward)))
            else:
                handles.append(module.register_forward_hook(self.capture_activations_hook))
                handles.append(module.register_full_backward_hook(backward))
        self.enable_hooks()

    def _capture_and_hook_output(self, module: nn.Module, forward_input, output, backward):
        """Forward hook of an exact nn.Linear or nn.Conv2d: Opacus's capture_activations_hook inlined (the same
        conditions, the same state: ``module.activations``, ``p._forward_counter``; its generic parameter walks cost
        a tenth of a millisecond a step), then, where it kept the activations, a hook on the output that hands its
        gradient to ``backward`` as a full backward hook would."""
        if not module.training or not self.hooks_enabled or not torch.is_grad_enabled():
            return
        params = _trainable(module)
        if not params:  # Opacus's requires_grad(module)
            return
        acts = module.__dict__.get("activations")
        if acts is None:
            module.activations = acts = []
        acts.append([t.detach() for t in forward_input])
        for p in params:
            p._forward_counter += 1
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(partial(_output_grad, module, backward))

    def capture_backprops_hook(self, module: nn.Module, _forward_input, forward_output, loss_reduction: str,
                               batch_first: bool):
        if not self.hooks_enabled:
            return
        if type(module) in _EXACT and batch_first and self._single_call(module):
            # The common case without Opacus's generic rearrangement: one call of the layer on the whole batch
            # (so max_batch_len is the input's batch size), the output gradient as it comes.
            acts, params = module.activations, _trainable(module)
            x = acts[0][0]
            entries = fast_entries(module, x, forward_output[0].detach(), self._scratch,
                                   x.shape[0] if loss_reduction == "mean" else 1)
            if entries is not None:
                acts.pop()
                for p in params:
                    p._forward_counter = 0
                    if p in entries:
                        p._fast_entries.append(entries[p])
                        if not self.grad_accumulation_allowed and len(p._fast_entries) > 1:
                            raise ValueError(ACCUMULATION_ERROR)
                return
        from opacus.grad_sample.functorch import ft_compute_per_sample_gradient
        from opacus.utils.module_utils import trainable_parameters

        backprops = forward_output[0].detach()
        # Opacus's rearrangement without its loss-reduction step (a multiplication of the whole output gradient by
        # the batch size under "mean"): the fast path folds that factor into norms and clip factors (fast_entries)
        activations, backprops = self.rearrange_grad_samples(module=module, backprops=backprops,
                                                             loss_reduction="sum", batch_first=batch_first)
        scale = module.max_batch_len if loss_reduction == "mean" else 1
        params = [p for _, p in trainable_parameters(module)]
        pending = self._pending.get(module)
        entries = None
        # A layer called once in this forward pass (each of its parameters counted once) on a whole batch.
        if (pending is None and not self.force_functorch and all(p._forward_counter == 1 for p in params)
                and len(activations) == 1 and activations[0].shape[0] == module.max_batch_len):
            entries = fast_entries(module, activations[0], backprops, self._scratch, scale)
        if entries is None:
            if loss_reduction == "mean":
                backprops = backprops * scale  # what Opacus's rearrange_grad_samples does
            if not self.force_functorch and type(module) in self.GRAD_SAMPLERS:
                grads = self.GRAD_SAMPLERS[type(module)](module, activations, backprops)
            else:
                grads = ft_compute_per_sample_gradient(module, activations, backprops)
            pending = _accumulate(pending, grads, module.max_batch_len)
        for p in params:
            p._forward_counter -= 1
        if all(p._forward_counter == 0 for p in params):
            if entries is None:
                self._pending.pop(module, None)
                entries = {p: PerExample(g) for p, g in pending.items()}
            for p in params:
                if p in entries:
                    p._fast_entries.append(entries[p])
                    if not self.grad_accumulation_allowed and len(p._fast_entries) > 1:
                        raise ValueError(ACCUMULATION_ERROR)
        else:
            self._pending[module] = pending
        if len(module.activations) == 0 and hasattr(module, "max_batch_len"):
            del module.max_batch_len

    def _single_call(self, module: nn.Module) -> bool:
        """Whether this backward hook is the only one of the layer's pass: one call recorded (one activation, each
        trainable parameter counted once), none pending, no max_batch_len set by a packed sequence."""
        acts = module.__dict__.get("activations")
        return (acts is not None and len(acts) == 1 and not self.force_functorch and module not in self._pending
                and "max_batch_len" not in module.__dict__
                and all(p._forward_counter == 1 for p in _trainable(module)))

    def set_grad_sample_to_none(self):
        super().set_grad_sample_to_none()
        for p in self._module.parameters():
            if hasattr(p, "_fast_entries"):
                p._fast_entries = []

    def cleanup(self):
        super().cleanup()
        for p in self._module.parameters():
            if hasattr(p, "_fast_entries"):
                del p._fast_entries


_EXACT = (nn.Linear, nn.Conv2d)


def _trainable(module: nn.Module) -> list:
    """The layer's own trainable parameters (Opacus's trainable_parameters on a layer without sublayers)."""
    return [p for p in module._parameters.values() if p is not None and p.requires_grad]


def _output_grad(module: nn.Module, backward, grad: torch.Tensor) -> None:
    """A tensor hook on a layer's output: hands its gradient to the layer's backward hook, leaving it unchanged."""
    backward(module, None, (grad,))


def _accumulate(pending: dict | None, grads: dict, max_batch_len: int) -> dict:
    """Per-example gradients of several calls of one layer, summed out of place (autograd's buffers are never
    written); a call on fewer than ``max_batch_len`` examples (packed sequences) fills the first rows, as Opacus's
    create_or_accumulate_grad_sample does."""
    pending = {} if pending is None else pending
    for p, g in grads.items():
        if not p.requires_grad:
            continue
        if g.shape[0] != max_batch_len:
            full = g.new_zeros((max_batch_len,) + tuple(g.shape[1:]))
            full[: g.shape[0]] = g
            g = full
        pending[p] = g if p not in pending else pending[p] + g
    return pending


# ---- the optimizer -----------------------------------------------------------------------------------------------

class DPOptimizerFastClipping(DPOptimizer):
    """Opacus's DPOptimizer with clipping from the book-keeping of ``GradSampleModuleFastClipping``: per-example
    norms from ghost norms or per-example gradients, clip factors as Opacus computes them, clipped sums as one matrix
    product per layer. Noise, scaling, skipped steps and the accountant's hook are the parent's."""

    def _entries(self, p) -> list:
        entries = getattr(p, "_fast_entries", None)
        if entries is None:
            raise ValueError(f"Per sample gradient norms not found: is the model wrapped for grad_sample_mode "
                             f"{MODE!r} (GradSampleModuleFastClipping)?")
        return entries

    @property
    def accumulated_iterations(self) -> int:
        vals = {len(self._entries(p)) for p in self.params}
        if len(vals) > 1:
            raise ValueError("Number of accumulated steps is inconsistent across parameters")
        v = vals.pop() if vals else 1
        if v == 0:
            raise ValueError("Per sample gradient is not initialized. Not updated in backward pass?")
        return v

    @property
    def grad_samples(self):
        raise NotImplementedError(f"grad_sample_mode {MODE!r} does not materialise per-example gradients; use "
                                  f"'hooks' to read them")

    @torch.no_grad()
    def clip_and_accumulate(self):
        params = self.params
        entries = [self._entries(p) for p in params]
        passes = self.accumulated_iterations
        if any(e.processed for es in entries for e in es):
            raise ValueError("Gradients haven't been cleared since the last optimizer step. In order to obtain "
                             "privacy guarantees you must call optimizer.zero_grad()on each step")
        sums = [None] * len(params)
        for k in range(passes):  # each backward pass holds its own examples
            per_pass = [es[k] for es in entries]
            n = {e.n for e in per_pass}
            if len(n) != 1:
                raise ValueError(f"per-example book-keeping of one backward pass covers different batch sizes {n}")
            if n.pop() == 0:
                sums = [torch.zeros_like(p) if g is None else g for p, g in zip(params, sums)]
                continue
            # Each entry holds ``scale`` times its true gradients (the batch size under loss_reduction "mean",
            # fast_entries); one scale for the whole pass is the rule (one batch), and is then applied once.
            scales = {e.scale for e in per_pass}
            one = scales.pop() if len(scales) == 1 else None
            norms = torch.stack([e.norm() if one is not None else e.norm() * e.scale for e in per_pass], dim=1)
            norms = norms.norm(2, dim=1)  # as Opacus combines them
            if one is not None and one != 1:
                norms = norms * one
            c = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)  # Opacus's clip factors
            factors = {}  # the clip factors times an entry's scale, in its parameter's dtype and device
            for i, (p, e) in enumerate(zip(params, per_pass)):
                key = (e.scale, p.dtype, p.device)
                f = factors.get(key)
                if f is None:
                    f = factors[key] = (c if e.scale == 1 else c * e.scale).to(device=p.device, dtype=p.dtype)
                g = e.clipped_sum(f)
                sums[i] = g if sums[i] is None else sums[i] + g
        for p, g, es in zip(params, sums, entries):
            g = g.view_as(p) if g.is_contiguous() else g.reshape_as(p)
            p.summed_grad = g if p.summed_grad is None else p.summed_grad + g
            for e in es:
                e.processed = True

    def add_noise(self):
        """Opacus's add_noise, without its zero tensor per parameter: the same draws from the same generator, in the
        same order and shapes (torch.normal, as Opacus's _generate_noise calls it), so the noise is bit for bit
        Opacus's, and summed_grad + noise is the same sum (IEEE addition commutes). Secure mode and zero noise are
        Opacus's own code."""
        std = self.noise_multiplier * self.max_grad_norm
        if self.secure_mode or std == 0:
            return super().add_noise()
        for p in self.params:
            p.grad = self._noised(p, std).view_as(p)

    def _noised(self, p: torch.Tensor, std: float) -> torch.Tensor:
        """p.summed_grad plus Opacus's noise draw for it, in a new tensor; marks summed_grad as used."""
        summed = p.summed_grad
        if hasattr(summed, "_processed"):  # Opacus's _check_processed_flag
            raise ValueError("Gradients haven't been cleared since the last optimizer step. In order to obtain "
                             "privacy guarantees you must call optimizer.zero_grad()on each step")
        noise = torch.normal(mean=0, std=std, size=summed.shape, device=summed.device, generator=self.generator,
                             dtype=summed.dtype)
        summed._processed = True  # Opacus's _mark_as_processed
        return noise.add_(summed)

    def scale_grad(self):
        """Opacus's scale_grad (``p.grad /= expected_batch_size * passes``), with the number of accumulated passes
        counted once rather than once a parameter, and the integer divisor made a 0-d CPU tensor of the gradient's
        dtype once: a Python integer is wrapped and converted to that dtype at every division (8 us each), and
        the division by the converted value is the same operation (the same kernel reads both as a CPU scalar)."""
        if self.loss_reduction == "mean":
            k = self.expected_batch_size * self.accumulated_iterations
            divisors: dict = {}
            for p in self.params:
                g = p.grad
                d = divisors.get(g.dtype)
                if d is None:
                    d = divisors[g.dtype] = torch.tensor(k, dtype=g.dtype)
                g.div_(d)

    def zero_grad(self, set_to_none: bool = False):
        for p in self.params:
            if hasattr(p, "_fast_entries"):
                p._fast_entries = []
        super().zero_grad(set_to_none)

    def pre_step(self, closure=None):
        if not self.params:
            return True
        self.clip_and_accumulate()
        if self._check_skip_next_step():
            self._is_last_step_skipped = True
            return False
        self.add_noise()
        self.scale_grad()
        if self.step_hook:
            self.step_hook(self)
        self._is_last_step_skipped = False
        return True


# ---- registration ------------------------------------------------------------------------------------------------

def register() -> None:
    """Make ``grad_sample_mode="fast"`` known to Opacus's PrivacyEngine (idempotent; other modes unchanged).

    Opacus picks a mode's classes with two functions, ``opacus.grad_sample.utils.get_gsm_class`` and
    ``opacus.optimizers.get_optimizer_class``, which ``opacus.privacy_engine`` imports by name; each is wrapped to
    answer for this mode and to ask the original for every other."""
    import opacus.grad_sample.utils as gs_utils
    import opacus.optimizers as optimizers
    import opacus.privacy_engine as engine

    if getattr(gs_utils.get_gsm_class, "_dpaudit_fast", False):
        return
    original_gsm, original_opt = gs_utils.get_gsm_class, optimizers.get_optimizer_class

    def get_gsm_class(grad_sample_mode: str):
        if grad_sample_mode == MODE:
            return GradSampleModuleFastClipping
        return original_gsm(grad_sample_mode)

    def get_optimizer_class(clipping: str, distributed: bool, grad_sample_mode: str = None):
        if grad_sample_mode == MODE:
            if clipping == "flat" and not distributed:
                return DPOptimizerFastClipping
            raise ValueError(f"grad_sample_mode {MODE!r} supports flat clipping without distribution only, got "
                             f"clipping {clipping!r}, distributed {distributed}")
        return original_opt(clipping=clipping, distributed=distributed, grad_sample_mode=grad_sample_mode)

    get_gsm_class._dpaudit_fast = True
    get_optimizer_class._dpaudit_fast = True
    gs_utils.get_gsm_class = get_gsm_class
    optimizers.get_optimizer_class = get_optimizer_class
    for name, fn in (("get_gsm_class", get_gsm_class), ("get_optimizer_class", get_optimizer_class)):
        if hasattr(engine, name):
            setattr(engine, name, fn)
