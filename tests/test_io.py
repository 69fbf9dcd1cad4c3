"""Atomic writers: all or nothing, and readable by others as a plain write would be."""
import os
import stat

import pytest

from dpaudit.io import atomic_write_json, atomic_write_text
from dpaudit.report import write_outputs


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_outputs_get_the_umask_modes_not_tempfiles(tmp_path, umask_022):
    write_outputs(tmp_path / "out", {"report.json": b"{}", "scores/a.csv": b"x\n"})
    atomic_write_text(tmp_path / "check.md", "ok")
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "report.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "check.md").stat().st_mode) == 0o644


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "r.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError):
        write_outputs(tmp_path / "out", {"a.txt": b"ok", "b.txt": "not bytes"})
    assert list(tmp_path.iterdir()) == []
