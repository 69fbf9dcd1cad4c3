"""Resource guards for the files dpaudit reads: checked BEFORE anything is unpacked, decoded or allocated, so
that a small hostile or damaged file costs a one-line error, not gigabytes of memory and a traceback.

* ``.npz`` archives (datasets, signals) and ``.npy`` files (member indices): every array's shape and dtype are
  read from its ``.npy`` header, and the bytes they declare must be present in the file and fit in memory;
  an archive may not unpack to more than ``MAX_EXPANSION`` times its size (zip bombs), the limit checkpoints
  already have (``dpaudit.training.train``). ``np.load`` would otherwise allocate whatever a 200-byte header claims.
* images (``imagefolder:``): PIL's decompression-bomb guard (an image of more than ``Image.MAX_IMAGE_PIXELS``
  pixels, its warning as much as its error) becomes the same one-line error.
* record indices: a number too large for int64 is an index out of range, not an ``OverflowError``.

Stdlib and numpy only (no torch): the checks run before any of that is imported.
"""
from __future__ import annotations

import math
import os
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dpaudit.errors import DPAuditError

# The checkpoints' limit (dpaudit.training.train): an archive may unpack to 50 times its size, and any archive to 50 MiB.
MAX_EXPANSION = 50
MIN_EXPANSION_BASE = 1 << 20


def memory_budget() -> int:
    """Bytes an input may declare: half of this machine's physical memory (what is left must hold the models)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        total = 16 << 30
    return max(int(total) // 2, 1 << 30)


def _gib(n: int) -> str:
    for unit, shift in (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30)):
        if n >= 1 << shift:
            return f"{n / 2**shift:.3g} {unit}"
    return f"{n / 2**20:.3g} MiB"


def read_npy_header(fp) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) from an open ``.npy`` stream positioned at its start; ValueError if the
    header is not a ``.npy`` header."""
    fmt = np.lib.format
    start = fp.tell() if hasattr(fp, "tell") else 0
    major, _minor = fmt.read_magic(fp)
    if major == 1:
        shape, _fortran, dtype = fmt.read_array_header_1_0(fp)
    elif major in (2, 3):
        shape, _fortran, dtype = fmt.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unknown .npy format version {major}")
    return tuple(int(d) for d in shape), dtype, int(fp.tell() - start)


def declared_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Bytes an array of this shape and dtype needs, in Python integers (no overflow whatever the header says)."""
    return math.prod(shape) * max(int(dtype.itemsize), 1)


def check_npy(path: str | Path, what: str) -> None:
    """A plain ``.npy`` file: the array its header declares is in the file and fits in memory."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            shape, dtype, header = read_npy_header(f)
    except (ValueError, OSError, EOFError) as exc:
        raise DPAuditError(f"{what}: {path} is not a readable .npy file ({_first_line(exc)})") from None
    _check_declared(what, f"{path}", shape, dtype, size - header)


def check_npz(path: str | Path, what: str) -> None:
    """A ``.npz`` archive, before ``np.load`` unpacks anything: its members unpack to at most ``MAX_EXPANSION``
    times its size, and every ``.npy`` member's header declares an array whose bytes the member holds and
    that fits in memory. A file that is not a zip archive is left to the caller's own message."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            unpacked = sum(i.file_size for i in infos)
            budget = memory_budget()
            if unpacked > MAX_EXPANSION * max(size, MIN_EXPANSION_BASE) or unpacked > budget:
                raise DPAuditError(f"{what}: {path} would unpack to {_gib(unpacked)} from {_gib(size)}; refused as a "
                                   f"likely zip bomb (at most {MAX_EXPANSION}x its size and {_gib(budget)}); save "
                                   f"the arrays again, with np.savez")
            for info in infos:
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as member:
                    try:
                        shape, dtype, header = read_npy_header(member)
                    except (ValueError, EOFError) as exc:
                        raise DPAuditError(f"{what}: array {info.filename[:-4]!r} in {path} has a damaged header "
                                           f"({_first_line(exc)}); save the arrays again") from None
                _check_declared(what, f"array {info.filename[:-4]!r} in {path}", shape, dtype,
                                info.file_size - header)
    except (zipfile.BadZipFile, OSError, EOFError):
        return  # not a (readable) zip: np.load and the caller's message say what it is
    except RuntimeError as exc:  # zipfile: encrypted members, unsupported compression
        raise DPAuditError(f"{what}: {path} cannot be read ({_first_line(exc)}); save it with np.savez") from None


def _check_declared(what: str, where: str, shape, dtype, available: int) -> None:
    need = declared_bytes(shape, dtype)
    if need > max(available, 0):
        raise DPAuditError(f"{what}: {where} declares shape {tuple(shape)} of {dtype} ({_gib(need)}), more than the "
                           f"{_gib(max(available, 0))} of data it holds; the file is damaged or forged, save it again")
    budget = memory_budget()
    if need > budget:
        raise DPAuditError(f"{what}: {where} holds {_gib(need)}, more than half this machine's memory "
                           f"({_gib(budget)}); use a smaller subset")


# ---- images -----------------------------------------------------------------------------------------

@contextmanager
def open_image(path: str | Path, what: str):
    """``PIL.Image.open`` with its decompression-bomb guard as a one-line ``DPAuditError``: an image whose
    header claims more than ``Image.MAX_IMAGE_PIXELS`` pixels (PIL warns there, and raises above twice that)
    is refused before it is decoded. A 48 KB PNG can otherwise claim 20000x20000 pixels."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DPAuditError(f"{what}: image {path} is too large to decode ({_first_line(exc)[:120]}); refused as a "
                           f"likely decompression bomb; resize it (dpaudit trains on small images)") from None
    with im:
        yield im


# ---- indices ----------------------------------------------------------------------------------------

INT64_MAX = np.iinfo(np.int64).max


def parse_index(token: str, option: str, path) -> int:
    """One whole-number record index from text; a value beyond int64 is out of range (one line, not an
    OverflowError from numpy)."""
    value = int(token)
    if abs(value) > INT64_MAX:
        raise DPAuditError(f"{option} {path}: index {token[:30]}{'...' if len(token) > 30 else ''} is out of range "
                           f"for any dataset; list record indices 0..N-1")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else exc.__class__.__name__


# ---- white-box gradient canaries ------------------------------------------------------------------------

def gradient_canary_bytes(cfg) -> int:
    """Peak memory the white-box gradient canaries of one DP model need, estimated from the configuration
    (``dpaudit.training.train``): one float32 observation row of M values per noisy step, kept and then stacked (twice),
    plus the per-batch canary inputs and their per-example gradients, [B, M] float32 several times over.
    Steps ≈ epochs · N / B with N up to members + canaries + M (every gradient canary drawn in)."""
    m = int(cfg.gradient_canaries)
    if m <= 0:
        return 0
    worst = 0
    for e in cfg.epsilons:
        if not math.isfinite(e):
            continue
        r = cfg.recipe(e)
        batch = max(int(r["batch_size"]), 1)
        n = int(cfg.members) + int(cfg.canaries) + m
        steps = int(r["epochs"]) * math.ceil(n / batch)
        physical = min(batch, 512)  # TrainConfig.max_physical_batch_size
        worst = max(worst, 2 * steps * m * 4 + 4 * physical * m * 4)
    return worst


def check_gradient_canary_memory(cfg) -> None:
    """Before any training: refuse --gradient-canaries whose observations would not fit in memory (a million
    canaries otherwise fail after minutes with an allocation error)."""
    need, budget = gradient_canary_bytes(cfg), memory_budget()
    if need > budget:
        raise DPAuditError(f"--gradient-canaries {cfg.gradient_canaries} would need about {_gib(need)} of memory to "
                           f"observe every step (more than half this machine's, {_gib(budget)}); use fewer, such as "
                           f"--gradient-canaries 1000")


# ---- saved models -------------------------------------------------------------------------------------

def check_fits_state(spec, input_shape: tuple[int, ...], n_classes: int, state: dict, path) -> None:
    """Before a model is built for real: the architecture ``spec`` for ``input_shape`` and ``n_classes`` has as
    many weights as the saved ``state``. It is built on PyTorch's meta device (shapes only, no memory), so a
    6 KB record claiming 4096x4096 inputs and 100,000 classes is refused without allocating gigabytes."""
    import torch

    from dpaudit.training.models import resolve_model

    saved = sum(int(v.numel()) for v in state.values() if isinstance(v, torch.Tensor))
    try:
        with torch.device("meta"):
            module = resolve_model(spec)(tuple(input_shape), n_classes)
        built = sum(int(t.numel()) for t in list(module.parameters()) + list(module.buffers()))
    except Exception:  # noqa: BLE001 - a factory that cannot build on the meta device: checked when built
        return
    if built != saved:
        raise DPAuditError(f"{path} holds {saved:,} weights but its record's architecture (input shape "
                           f"{list(input_shape)}, {n_classes} classes) has {built:,}; the record is damaged or foreign, "
                           f"re-train the model")
