"""Outputs never replace an input: the checks every command runs on its output paths before reading anything.

``dpaudit check R.json --junit-xml R.json`` used to replace the report with XML, and ``--out X --force`` replaces
the folder X as a whole, so an input inside it (the report an `attack` reads, the signals of `--from-signals`, the
model cache) would be deleted with it. Stdlib only: the CLI calls these before importing numpy or torch.
"""
from __future__ import annotations

import os
from pathlib import Path

from dpaudit.errors import DPAuditError

__all__ = ["check_out_paths", "inside", "refuse_out_over_inputs", "refuse_overwriting_inputs", "same_file"]


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (also through links or another spelling); a path that does not exist
    yet is compared by its resolved name.

    >>> same_file("a/../b.json", "b.json")
    True
    """
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (resolved: links and ``..`` followed).

    >>> inside("out/cache", "out"), inside("out", "out"), inside("other", "out")
    (True, True, False)
    """
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


def refuse_overwriting_inputs(outputs: list[tuple[str, Path | None]], inputs: list[tuple[str, Path | None]]) -> None:
    """An output file that names an input (check R.json --junit-xml R.json) or another output is refused before
    anything is read or written."""
    outs = [(o, p) for o, p in outputs if p is not None]
    for i, (opt, p) in enumerate(outs):
        for what, q in [(w, x) for w, x in inputs if x is not None] + outs[:i]:
            if same_file(p, q):
                raise DPAuditError(f"{opt} {p} is also the {what}; choose another path (an output never replaces "
                                   f"an input or another output)")


def refuse_out_over_inputs(out: str | Path, inputs: list[tuple[str, str | Path | None]], option: str = "--out") -> None:
    """An output folder that is, or holds, one of the command's inputs is refused up front: ``--force`` replaces
    the folder as a whole, which would delete the input (and without it the folder is not empty anyway)."""
    for what, p in inputs:
        if p is not None and str(p) and inside(p, out):
            raise DPAuditError(f"{option} {out} holds the {what} {p} this command reads; choose another folder (an "
                               f"output never replaces an input)")


def check_out_paths(out: str | Path, inputs: list[tuple[str, str | Path | None]] = (), *,
                    cache_dir: str | Path | None = None, force: bool = False) -> None:
    """Every check on an output folder, before any work: it is not (and does not hold) the folder dpaudit runs in,
    it holds none of the command's ``inputs`` (``refuse_out_over_inputs``), and it shares no folder with the
    model cache, which it could neither hold nor sit in (``--force`` replaces it as a whole)."""
    cwd = Path.cwd().resolve()
    o = Path(out).resolve()
    if o == cwd or o in cwd.parents:
        raise DPAuditError(f"--out {out} is the folder you run dpaudit in (or holds it); a report folder is replaced "
                           f"as a whole, so choose a new subfolder such as --out reports/audit")
    refuse_out_over_inputs(out, list(inputs))
    if cache_dir is not None and (inside(cache_dir, out) or inside(out, cache_dir)):
        raise DPAuditError(f"--out {out} and --cache-dir {cache_dir} overlap; the report folder is replaced as a "
                           f"whole{' (--force)' if force else ''}, so keep the model cache in a folder of its own")


def dataset_path(spec: str) -> str | None:
    """The file or folder a dataset spec reads (npz:PATH, imagefolder:DIR), or None for a built-in name."""
    for prefix in ("npz:", "imagefolder:"):
        if isinstance(spec, str) and spec.startswith(prefix):
            return spec[len(prefix):]
    return None
