"""``--executor local``: worker processes on this machine (``spawn``), or this process for ``--jobs 1``."""
from __future__ import annotations

import os
import signal

from dpaudit.errors import DPAuditError
from dpaudit.training.executors.base import (
    THREADS_PER_MODEL,
    job_error,
    longest_first,
    progress_bar,
    register_executor,
    sigterm_as_interrupt,
)


def _main_is_rerunnable() -> bool:
    """Whether spawned workers can start: they re-run the main program from its file, which a program read
    from standard input (``python - < script.py``) does not have."""
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None:
        return True  # interactive (nothing re-run) or `python -m` (re-imported by name)
    return os.path.isfile(path)


def _died(procs, running: list[str], code=None) -> DPAuditError:
    # The pool marks its futures broken *before* it terminates and reaps the other workers, so an exit code read
    # at once can still be None (or lost to the pool's own waitpid): wait for each process to be reaped first.
    for p in procs:
        p.join(timeout=5)
    codes = sorted({p.exitcode for p in procs if p.exitcode not in (None, 0)}) or ([code] if code is not None else [])
    # The pool sends SIGTERM to the survivors of a broken pool; the cause is any other code.
    causes = [c for c in codes if c != -signal.SIGTERM] or codes
    codes = causes + [c for c in codes if c not in causes]
    killed = any(c is not None and c < 0 for c in codes)
    sig = ""
    if killed:
        try:
            sig = f", killed by {signal.Signals(-codes[0]).name}"
        except ValueError:
            sig = ", killed by a signal"
    why = ("likely the out-of-memory killer: lower --jobs or --members" if killed else
           "it could not start or crashed: run with --jobs 1 to see why")
    names = ", ".join(running[:4]) + (" ..." if len(running) > 4 else "")
    return DPAuditError(f"a worker process died while training {names or 'a model'} (exit code "
                        f"{', '.join(map(str, codes)) or 'unknown'}{sig}; {why}); a re-run with --cache-dir resumes "
                        f"from the models that finished")


@register_executor("local", _builtin=True)
class LocalExecutor:
    """Worker processes on this machine (``spawn``: no state inherited from the caller), one pool for the
    whole audit so workers start once; ``workers=1`` trains in this process."""

    def __init__(self, workers: int = 0, device: str = "cpu"):
        n = workers or (os.cpu_count() or 1)
        # One GPU: processes would only contend for it.
        self.workers = 1 if device != "cpu" else max(1, n)

    def run(self, jobs, images, labels, *, progress, desc):
        from dpaudit.training.jobs import init_worker, train_job

        order = longest_first(jobs)
        results: dict[int, dict] = {}
        workers = min(self.workers, len(jobs)) or 1
        bar = progress_bar(len(jobs), progress, desc)
        try:
            if workers <= 1:
                import torch

                threads = torch.get_num_threads()
                init_worker(images, labels, THREADS_PER_MODEL)
                try:
                    for i in order:
                        try:
                            results[i] = train_job(jobs[i])
                        except Exception as exc:
                            err = job_error(exc, jobs[i].desc)
                            if err is None:
                                raise
                            raise err from None
                        bar.update()
                finally:
                    torch.set_num_threads(threads)  # the caller's setting, as it was
            else:
                self._run_pool(jobs, order, images, labels, workers, results, bar)
        finally:
            bar.close()
        return [results[i] for i in range(len(jobs))]

    @staticmethod
    def _run_pool(jobs, order, images, labels, workers, results, bar):
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        from dpaudit.training.jobs import init_worker, train_job

        if not _main_is_rerunnable():
            raise DPAuditError("worker processes cannot start: this program was read from standard input, which "
                               "spawned workers cannot re-run; save it as a file, or train in this process with "
                               "--jobs 1 (jobs=1)")
        ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=init_worker,
                                 initargs=(images, labels, THREADS_PER_MODEL))
        futures = {ex.submit(train_job, jobs[i]): i for i in order}
        try:
            with sigterm_as_interrupt():
                pending = set(futures)
                while pending:
                    running = [jobs[futures[f]].desc for f in pending if f.running()]
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for fut in done:
                        try:
                            results[futures[fut]] = fut.result()
                        except BrokenProcessPool:
                            raise _died(list(getattr(ex, "_processes", {}).values()), running) from None
                        except Exception as exc:
                            err = job_error(exc, jobs[futures[fut]].desc)
                            if err is None:
                                raise
                            raise err from None
                        bar.update()
                    # A worker that dies before the pool notices (at start-up, say) would leave this loop
                    # waiting for ever: a dead process with an error exit is a failure now.
                    procs = list(getattr(ex, "_processes", {}).values())
                    if any(p.exitcode not in (None, 0) for p in procs):
                        raise _died(procs, running)
        except BaseException:
            # Ctrl-C, SIGTERM or a failed job: stop every worker now rather than letting queued models
            # train to completion (or leaving idle 800 MB processes behind).
            for fut in futures:
                fut.cancel()
            procs = list(getattr(ex, "_processes", {}).values())
            for p in procs:
                p.terminate()
            ex.shutdown(wait=True, cancel_futures=True)
            for p in procs:
                p.join(timeout=5)
            raise
        ex.shutdown(wait=True)
