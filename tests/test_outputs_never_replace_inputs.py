"""Outputs never replace an input (issue 25): every command refuses, before any work, an output path that is or holds
one of its inputs, with --force or without (--force replaces an --out folder as a whole, inputs included)."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dpaudit.cli import main

REFERENCE = Path(__file__).resolve().parent.parent / "reports" / "reference" / "report.json"


def _setup(d: Path) -> Path:
    x = d / "x"
    (x / "cache").mkdir(parents=True)
    for name in ("s.npz", "m.pt", "members.txt", "d.npz", "cache/entry.pt"):
        (x / name).write_bytes(b"input")
    (x / "report.json").write_text(REFERENCE.read_text())
    return x


CASES = [
    ("from-signals inside --out", lambda x: ["audit", "--from-signals", x / "s.npz", "--target-epsilon", "4",
                                             "--out", x, "--force"], "holds the --from-signals"),
    ("cache is --out", lambda x: ["audit", "--cache-dir", x / "cache", "--out", x / "cache"], "holds the --cache-dir"),
    ("cache inside --out", lambda x: ["audit", "--cache-dir", x / "cache", "--out", x, "--force"],
     "holds the --cache-dir"),
    ("target inside --out", lambda x: ["audit", "--target", x / "m.pt", "--target-members", x / "members.txt",
                                       "--out", x, "--force"], "holds the --target"),
    ("dataset inside --out", lambda x: ["audit", "--dataset", f"npz:{x / 'd.npz'}", "--out", x, "--force"],
     "holds the --dataset"),
    ("train over its dataset", lambda x: ["train", "--dataset", f"npz:{x / 'd.npz'}", "--epsilon", "inf",
                                          "--out", x, "--force"], "holds the --dataset"),
    ("attack over its report", lambda x: ["attack", x / "report.json", "--cache-dir", x / "cache", "--out", x,
                                          "--force"], "holds the report"),
    ("attack over its cache", lambda x: ["attack", x / "report.json", "--cache-dir", x / "cache",
                                         "--out", x / "cache", "--force"], "holds the --cache-dir"),
    ("check junit over its report", lambda x: ["check", x / "report.json", "--junit-xml", x / "report.json"],
     "is also the report"),
    ("check markdown over its report via a link", lambda x: ["check", x / "link.json", "--markdown",
                                                              x / "report.json"], "is also the report"),
]


@pytest.mark.parametrize("name,args,expect", CASES, ids=[c[0] for c in CASES])
def test_refused_before_any_work(tmp_path, name, args, expect):
    x = _setup(tmp_path)
    (x / "link.json").symlink_to(x / "report.json")
    before = {p: p.read_bytes() for p in x.rglob("*") if p.is_file()}
    res = CliRunner().invoke(main, [str(a) for a in args(x)])
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and expect in res.stderr, res.stderr
    assert {p: p.read_bytes() for p in x.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # nothing staged beside it
