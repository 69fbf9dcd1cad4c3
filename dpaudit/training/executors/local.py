"""``--executor local``: worker processes on this machine (``spawn``), or this process for ``--jobs 1``."""
from __future__ import annotations

import os

from dpaudit.training.executors.base import (
    THREADS_PER_MODEL,
    longest_first,
    progress_bar,
    register_executor,
    sigterm_as_interrupt,
)


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
                        results[i] = train_job(jobs[i])
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

        from dpaudit.training.jobs import init_worker, train_job

        ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=init_worker,
                                 initargs=(images, labels, THREADS_PER_MODEL))
        futures = {ex.submit(train_job, jobs[i]): i for i in order}
        try:
            with sigterm_as_interrupt():
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for fut in done:
                        results[futures[fut]] = fut.result()
                        bar.update()
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
