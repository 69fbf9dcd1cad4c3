"""WhiteBoxProbe: its time overhead on the tutorial's training, and a bug x mode detection table.

Part 1, overhead (``--overhead-epochs``, default 2): the tutorial's script (examples/tutorial_private.py:
SimpleCNN, SGD lr 0.05, Poisson batches of 256, make_private_with_epsilon at ε = 8) on its 4,000 embedded
digits, trained with and without the probe at M = 1,000 canaries, ``--repeats`` times (default 3). The two
trainings advance in lock-step, one step of each in turn, every step timed on its own, so that the shared
cores' other load falls on both alike. Reported: the median time per optimizer step of each (the probe's
machinery: flagged-row detection, the canary vector's forward and per-example gradients, the loss
substitution, the step hooks) and their ratio (also of the fastest steps), and the ratio of whole
trainings (median step x steps), which also pays for the ~500 extra records the included canaries add
(about 12% more records, hence steps, per epoch).

Part 2, detection (``--seeds``, default 5): a small CNN on scikit-learn's digits in user-style loops, each
bug written into the loop (tests/test_probe.py has the same loops), in every grad-sample mode that applies,
over the seeds; a run counts as detected when the verdict is nonconformant. False alarms: correct loops in
hooks, functorch and ghost mode over ``--correct-seeds`` seeds each (default 7: 21 runs). The re-seeding bug
needs issue 22's repeated-epoch test; its row shows what the five tests here see by chance.

    python benchmarks/bench_probe.py                      # both parts (~10 min on 2 cores)
    python benchmarks/bench_probe.py --skip-detection     # overhead only
    python benchmarks/bench_probe.py --quick              # 1 repeat, 2 seeds, 3 correct seeds: a smoke run

Ends with ONE JSON line.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

from _common import git_commit, print_json_line, quiet, table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "examples"))


def beta_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy import stats

    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


# ------------------------------------------------------------------------------------------------ overhead

def tutorial_steps(probe_m: int | None, epochs: int, seed: int = 0):
    """The tutorial's training (no evaluation, no report) as a generator that yields after each step."""
    import torch
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader
    from tutorial_private import SimpleCNN, datasets

    import dpaudit

    torch.manual_seed(seed)
    train_data, _ = datasets(None, seed)
    loader = DataLoader(train_data, batch_size=256, shuffle=True)
    model = SimpleCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    criterion = torch.nn.CrossEntropyLoss()
    probe = None
    if probe_m is not None:
        probe = dpaudit.WhiteBoxProbe(canaries=probe_m, delta=1e-5, seed=seed)
        model, optimizer, criterion, loader = probe.wrap(model, optimizer, criterion, loader)
    engine = PrivacyEngine(accountant="prv")
    model, optimizer, loader = engine.make_private_with_epsilon(
        module=model, optimizer=optimizer, data_loader=loader, criterion=criterion, epochs=epochs,
        target_epsilon=8.0, target_delta=1e-5, max_grad_norm=1.0)
    if probe is not None:
        probe.attach(engine, optimizer, loader)
    yield len(loader.dataset)
    for _ in range(epochs):
        model.train()
        for data, target in loader:
            optimizer.zero_grad()
            loss = criterion(model(data), target)
            loss.backward()
            optimizer.step()
            yield None


def overhead(epochs: int, repeats: int, m: int) -> dict:
    """The two trainings advance in lock-step, one step of each in turn, each step timed on its own (data
    loading included): the machine's other load then falls on both alike, which timing whole runs one after
    the other on shared cores does not give. Medians over all steps of all repeats."""
    per = {"without": [], "with": []}
    records = {}
    for rep in range(repeats):
        gens = {"without": tutorial_steps(None, epochs, seed=rep), "with": tutorial_steps(m, epochs, seed=rep)}
        for k, g in gens.items():
            records[k] = next(g)
        live = dict(gens)
        while live:
            for k in list(live):
                t = time.perf_counter()
                try:
                    next(live[k])
                except StopIteration:
                    del live[k]
                    continue
                per[k].append(time.perf_counter() - t)
    steps = {k: len(v) // repeats for k, v in per.items()}
    med = {k: statistics.median(v) for k, v in per.items()}
    fast = {k: min(v) for k, v in per.items()}
    total = {k: med[k] * steps[k] for k in per}
    return {"epochs": epochs, "repeats": repeats, "m": m,
            "s_per_step_without": med["without"], "s_per_step_with": med["with"],
            "per_step_overhead": med["with"] / med["without"] - 1.0,
            "fastest_step_overhead": fast["with"] / fast["without"] - 1.0,
            "wall_without_s": total["without"], "wall_with_s": total["with"],
            "total_overhead": total["with"] / total["without"] - 1.0,
            "records_without": records["without"], "records_with": records["with"],
            "steps_without": steps["without"], "steps_with": steps["with"]}


# ------------------------------------------------------------------------------------------------ detection

def scenarios():
    """{name: (modes, run(mode, seed) -> probe)}: the user-style loops of tests/test_probe.py."""
    import torch
    from opacus.data_loader import DPDataLoader
    from opacus.grad_sample import GradSampleModuleFastGradientClipping as GSM
    from opacus.schedulers import ExponentialGradClip
    from opacus.utils.batch_memory_manager import BatchMemoryManager
    from sklearn.datasets import load_digits
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    import dpaudit

    x, y = load_digits(return_X_y=True)
    data = TensorDataset(torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0, torch.tensor(y))

    class TinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))

        def forward(self, x):
            return self.net(x)

    def setup(mode, seed, batch=64, sigma=1.0, poisson=True):
        from opacus import PrivacyEngine

        torch.manual_seed(seed)
        loader = DataLoader(data, batch_size=batch, shuffle=True)
        model = TinyCNN()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
        crit = nn.CrossEntropyLoss()
        pr = dpaudit.WhiteBoxProbe(canaries=400, seed=seed, delta=1e-5)
        model, opt, crit, loader = pr.wrap(model, opt, crit, loader)
        engine = PrivacyEngine(accountant="prv")
        out = engine.make_private(module=model, optimizer=opt, data_loader=loader, criterion=crit,
                                  noise_multiplier=sigma, max_grad_norm=1.0, grad_sample_mode=mode,
                                  poisson_sampling=poisson)
        model, opt, crit, loader = out if mode == "ghost" else (out[0], out[1], crit, out[2])
        pr.attach(engine, opt, loader)
        return pr, model, opt, crit, loader

    def loop(model, opt, crit, batches):
        for xb, yb in batches:
            opt.zero_grad()
            crit(model(xb), yb).backward()
            opt.step()

    def correct(mode, seed):
        pr, model, opt, crit, loader = setup(mode, seed)
        for _ in range(4):
            loop(model, opt, crit, loader)
        return pr

    def clip_ignored(mode, seed):
        pr, model, opt, crit, loader = setup(mode, seed)
        sched = ExponentialGradClip(opt, gamma=0.5)
        for e in range(3):
            if e:
                sched.step()
            loop(model, opt, crit, loader)
        return pr

    def wrong_norm(mode, seed):
        original = GSM.NORM_SAMPLERS[nn.Linear]

        def bias_only(layer, activations, backprops):
            return {p: (v if p is layer.bias else torch.zeros_like(v))
                    for p, v in original(layer, activations, backprops).items()}

        GSM.NORM_SAMPLERS[nn.Linear] = bias_only
        try:
            pr, model, opt, crit, loader = setup(mode, seed)
            for _ in range(2):
                loop(model, opt, crit, loader)
        finally:
            GSM.NORM_SAMPLERS[nn.Linear] = original
        return pr

    def reseed(mode, seed):
        pr, model, opt, crit, loader = setup(mode, seed)
        for _ in range(4):
            torch.manual_seed(seed)
            loop(model, opt, crit, loader)
        return pr

    def accumulation_noise(mode, seed):
        pr, model, opt, crit, loader = setup(mode, seed)
        for _ in range(3):
            for xb, yb in loader:
                loop(model, opt, crit, zip(xb.split(16), yb.split(16)))
        return pr

    def physical_rate(mode, seed):
        pr, model, opt, crit, loader = setup(mode, seed, batch=16, sigma=0.7)
        logical = DPDataLoader.from_data_loader(DataLoader(loader.dataset, batch_size=64))
        for _ in range(4):
            with BatchMemoryManager(data_loader=logical, max_physical_batch_size=16, optimizer=opt) as b:
                loop(model, opt, crit, b)
        return pr

    def not_poisson(mode, seed):
        pr, model, opt, crit, loader = setup(mode, seed, poisson=False)
        for _ in range(4):
            loop(model, opt, crit, loader)
        return pr

    all_modes = ("hooks", "functorch", "ghost")
    bugs = {"max_grad_norm ignored by ghost clipping (clip schedule)": (("ghost",), clip_ignored),
            "wrong per-example norm in ghost mode": (("ghost",), wrong_norm),
            "re-seeding the global RNG every epoch (needs issue 22)": (all_modes, reseed),
            "gradient accumulation: noise per micro-batch": (all_modes, accumulation_noise),
            "accountant told the physical batch's rate": (all_modes, physical_rate),
            "poisson_sampling=False": (all_modes, not_poisson)}
    return correct, all_modes, bugs


def detection(seeds: int, correct_seeds: int) -> dict:
    correct, modes, bugs = scenarios()
    rows, out = [], {"bugs": {}, "false_alarms": {}}
    t0 = time.perf_counter()
    for name, (bug_modes, run) in bugs.items():
        for mode in bug_modes:
            hits, why = 0, {}
            for s in range(seeds):
                doc = run(mode, s).report()
                hits += doc["models"][0]["verdict"]["status"] == "nonconformant"
                for t in doc["models"][0]["whitebox"]["failed"]:
                    why[t] = why.get(t, 0) + 1
            lo, hi = beta_ci(hits, seeds)
            out["bugs"][f"{name} [{mode}]"] = {"detected": hits, "runs": seeds, "ci95": [lo, hi], "rejected_by": why}
            rows.append([name, mode, f"{hits}/{seeds}", f"[{lo:.2f}, {hi:.2f}]",
                         ", ".join(f"{k} {v}" for k, v in sorted(why.items()))])
            print(f"  {name} [{mode}]: {hits}/{seeds}", file=sys.stderr, flush=True)
    alarms, total = 0, 0
    for mode in modes:
        k = 0
        for s in range(100, 100 + correct_seeds):
            doc = correct(mode, s).report()
            k += doc["models"][0]["verdict"]["status"] == "nonconformant"
        alarms, total = alarms + k, total + correct_seeds
        out["false_alarms"][mode] = {"alarms": k, "runs": correct_seeds}
        rows.append(["correct loop (false alarms)", mode, f"{k}/{correct_seeds}", "", ""])
    lo, hi = beta_ci(alarms, total)
    out["false_alarm_rate"] = {"alarms": alarms, "runs": total, "ci95": [lo, hi]}
    rows.append(["correct loops, all modes", "all", f"{alarms}/{total}", f"[{lo:.2f}, {hi:.2f}]", ""])
    out["wall_s"] = time.perf_counter() - t0
    print(table(["case", "mode", "nonconformant", "95% CI (Clopper-Pearson)", "rejected by (runs)"], rows),
          file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--overhead-epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--canaries", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--correct-seeds", type=int, default=7)
    ap.add_argument("--skip-detection", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.repeats, a.seeds, a.correct_seeds, a.overhead_epochs = 1, 2, 1, 1
    warnings.filterwarnings("ignore")
    quiet()
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    import torch

    result = {"benchmark": "bench_probe", "commit": git_commit(), "threads": torch.get_num_threads()}
    if not a.skip_overhead:
        ov = overhead(a.overhead_epochs, a.repeats, a.canaries)
        print(table(["", "without probe", f"with probe (M={a.canaries})", "overhead"],
                    [["s per step (median)", f"{ov['s_per_step_without']:.4f}", f"{ov['s_per_step_with']:.4f}",
                      f"{ov['per_step_overhead']:+.1%}"],
                     ["fastest step", "", "", f"{ov['fastest_step_overhead']:+.1%}"],
                     ["training s (median step x steps)", f"{ov['wall_without_s']:.2f}", f"{ov['wall_with_s']:.2f}",
                      f"{ov['total_overhead']:+.1%}"],
                     ["records / steps", f"{ov['records_without']} / {ov['steps_without']}",
                      f"{ov['records_with']} / {ov['steps_with']}", ""]]), file=sys.stderr)
        result["overhead"] = ov
    if not a.skip_detection:
        result["detection"] = detection(a.seeds, a.correct_seeds)
    print_json_line(result)


if __name__ == "__main__":
    main()
