"""Helpers shared by the benchmark scripts: peak memory, the commit measured, one-line JSON output."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python benchmarks/bench_x.py` from anywhere
    sys.path.insert(0, str(REPO))


def _maxrss_mb(who: int) -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    raw = resource.getrusage(who).ru_maxrss
    return raw / (1024 * 1024) if sys.platform == "darwin" else raw / 1024


def peak_rss() -> dict:
    """Peak resident set size in MB of this process and of its largest waited-for child.

    RUSAGE_CHILDREN covers child processes that have terminated and been reaped (dpaudit's training
    worker pool is, once the executor shuts down); it is the largest single child, not a sum.
    """
    self_mb = _maxrss_mb(resource.RUSAGE_SELF)
    children_mb = _maxrss_mb(resource.RUSAGE_CHILDREN)
    return {"self_mb": round(self_mb, 1), "children_mb": round(children_mb, 1),
            "max_mb": round(max(self_mb, children_mb), 1)}


def git_commit() -> str:
    """Short commit hash of the repository, with "-dirty" when the working tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return head + ("-dirty" if dirty else "")


def print_json_line(obj: dict) -> None:
    """The machine-readable result: one line of JSON on stdout, flushed (inf as "inf", NaN as null,
    the rule of every dpaudit report)."""
    from dpaudit.io import jsonable

    print(json.dumps(jsonable(obj), sort_keys=False, separators=(", ", ": ")), flush=True)


def set_threads(n: int | None) -> int:
    import torch

    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def quiet() -> None:
    """Silence the warnings dpaudit itself silences in an audit (secure RNG off, hook notices)."""
    from dpaudit.training.jobs import quiet_library_warnings

    quiet_library_warnings()


@contextmanager
def timed(store: dict, key: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        store[key] = store.get(key, 0.0) + time.perf_counter() - t


def table(headers: list[str], rows: list[list]) -> str:
    """Plain aligned columns (they read in a terminal and in a log file)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = lambda cs: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cs, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def fmt_s(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def fmt_duration(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def fashion_mnist_official():
    """Fashion-MNIST's official parts: (train_images, train_labels, test_images, test_labels, provenance).

    dpaudit's loader returns the union (70,000 records) with each record's origin; the first 60,000
    are the official training part.
    """
    import numpy as np

    from dpaudit.training.data import load_dataset

    ds = load_dataset("fashion-mnist")
    if ds.origin is not None:
        tr, te = ds.origin == "train", ds.origin == "test"
    else:  # IDX order: train part first
        tr = np.arange(len(ds)) < 60000
        te = ~tr
    return ds.images[tr], ds.labels[tr], ds.images[te], ds.labels[te], ds.provenance


class TreeRSS:
    """Samples the resident memory of this process plus all its descendants (the audit's worker pool),
    summed at each instant, in a background thread: getrusage only knows the largest single child."""

    def __init__(self, interval_s: float = 0.25):
        import threading

        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree_rss_mb(root: int) -> float:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
        total, todo = 0, [root]
        page = os.sysconf("SC_PAGE_SIZE")
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * page
            except (OSError, IndexError, ValueError):
                pass
        return total / 2**20

    def _run(self):
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._tree_rss_mb(os.getpid()))
            self._stop.wait(self.interval_s)

    def __enter__(self):
        if os.path.isdir("/proc"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return False
