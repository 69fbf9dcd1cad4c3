"""No command imports code named in a file (issue 25): a model factory comes from the command line or the API only.

A report, a model record and a cache entry can all name a factory (``config.model``: ``evil.py:make``). Importing it
would run whatever the file's author wrote, so every command that reads such a file must refuse (or ignore) the
name. Each test plants a factory whose *import* creates a marker file and asserts the marker never appears.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dpaudit.cli import main

REFERENCE = Path(__file__).resolve().parent.parent / "reports" / "reference" / "report.json"


@pytest.fixture()
def evil(tmp_path):
    """(spec, marker): a factory file whose import writes the marker."""
    marker = tmp_path / "IMPORTED"
    src = tmp_path / "evil.py"
    src.write_text(f"open({str(marker)!r}, 'w').write('ran')\n\n"
                   "def make(input_shape, n_classes):\n"
                   "    import torch.nn as nn\n"
                   "    return nn.Sequential(nn.Flatten(), nn.Linear(784, n_classes))\n")
    return f"{src}:make", marker


@pytest.fixture()
def evil_report(tmp_path, evil):
    spec, _ = evil
    doc = json.loads(REFERENCE.read_text())
    doc["config"]["model"] = spec
    for m in doc["models"]:
        m["training"]["model"] = spec
    path = tmp_path / "audit" / "report.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    return path


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_attack_requires_model_on_the_command_line(evil_report, evil, tmp_path):
    """`dpaudit attack REPORT --cache-dir C` used to import the report's factory before the cache lookup."""
    _, marker = evil
    (tmp_path / "cache").mkdir()
    res = _run("attack", evil_report, "--cache-dir", tmp_path / "cache", "--out", tmp_path / "new", "--quiet")
    assert res.exit_code == 2, res.output
    assert "pass --model" in res.stderr and res.stderr.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "new").exists()


@pytest.mark.slow  # over a second on 2 cores: the fast tier stays under a minute
def test_report_check_inspect_import_nothing(evil_report, evil, tmp_path):
    _, marker = evil
    res = _run("report", evil_report, "--format", "md", "--out", tmp_path / "md")
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    res = _run("check", evil_report)
    assert res.exit_code in (0, 1, 2) and "Traceback" not in res.output
    assert not marker.exists()


def test_inspect_imports_no_factory_named_in_a_record(evil, tmp_path):
    """A real checkpoint of a built-in architecture whose record names a user factory: refused, not imported."""
    import torch

    from dpaudit.training.models import build_model

    spec, marker = evil
    weights = tmp_path / "model.pt"
    torch.save(build_model("simple-cnn", (1, 28, 28), 10).state_dict(), weights)
    (tmp_path / "model.pt.json").write_text(json.dumps({"format": "dpaudit.model/1", "config": {"model": spec},
                                                        "record": {}}))
    res = _run("inspect", weights)
    assert res.exit_code == 2 and "pass --model" in res.stderr, res.output
    assert not marker.exists()


def test_attack_refuses_out_holding_its_report(evil_report, tmp_path):
    res = _run("attack", evil_report, "--cache-dir", tmp_path, "--out", evil_report.parent, "--force",
               "--model", "simple-cnn")
    assert res.exit_code == 2 and "an output never replaces an input" in res.stderr, res.output
    assert json.loads(evil_report.read_text())["schema"] == "dpaudit.report/2"
