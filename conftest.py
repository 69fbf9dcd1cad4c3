"""Examples as tests. Every example in the README and in docstrings runs (sybil): the README's ```python blocks,
and every `>>>` example in dpaudit/'s docstrings. The README's block trains models, so it is in the slow tier."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Under pytest-xdist (pyproject's addopts) each worker is a process of its own that runs beside the others: one
# thread each, whatever the caller's setting, so that the workers never oversubscribe the cores. The variable is
# read when torch and the BLAS libraries load, which is after this file.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
# Hermetic: the model cache's HMAC key (dpaudit.training.cache_auth) lives under XDG_CONFIG_HOME; tests never
# write into the developer's home. Each pytest-xdist worker gets its own: workers never race to create one key.
if "XDG_CONFIG_HOME" not in os.environ or "PYTEST_XDIST_WORKER" in os.environ:
    import tempfile

    os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="dpaudit-test-config-")

try:
    from sybil import Sybil
    from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
    from sybil.parsers.rest import DocTestParser
except ImportError:  # pragma: no cover - sybil is in the test extra
    Sybil = None

if Sybil is not None:
    def _readme_setup(namespace):
        import tempfile
        namespace["_tmp"] = tempfile.TemporaryDirectory()
        namespace["_cwd"] = os.getcwd()
        os.chdir(namespace["_tmp"].name)  # the README writes reports/mine: never into the checkout

    def _readme_teardown(namespace):
        os.chdir(namespace["_cwd"])
        namespace["_tmp"].cleanup()

    pytest_collect_file = (
        Sybil(parsers=[PythonCodeBlockParser(), SkipParser()], patterns=["README.md"], path=".", setup=_readme_setup,
              teardown=_readme_teardown, name="readme")
        + Sybil(parsers=[DocTestParser()], patterns=["*.py"], path="dpaudit", name="docstrings",
                excludes=["attacks/*"])
    ).pytest()


# pytest-xdist (pyproject's addopts: `-n 2 --dist loadfile`): one file's tests run on one worker, so that a
# module's fixtures (a trained model, a Ray cluster) are built once and a document's examples run in order in one
# namespace. Each worker is its own process with its own session fixtures, so the files below run together too:
# those sharing tests/conftest.py's trained `small_audit` (trained once, not once per worker), and those starting
# a local Ray cluster (one at a time: test_ray kills the training tasks it finds running on the machine).
# (`--dist loadgroup` with xdist_group marks would say this per test, but pytest-xdist 3.8 ignores the marks on
# pytest >= 9.2: pytest-xdist issue 1386.) pytest_collection_modifyitems checks the table against the tests.
TOGETHER = {
    "tests/test_browser.py": "small_audit", "tests/test_check.py": "small_audit", "tests/test_html.py": "small_audit",
    "tests/test_ray.py": "ray", "tests/test_executors.py": "ray",
}


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, called only when it is installed and runs
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadfile":
        return None  # another --dist asked for on the command line: pytest-xdist's own scheduler
    from xdist.scheduler import LoadFileScheduling

    class Together(LoadFileScheduling):
        def _split_scope(self, nodeid):
            path = super()._split_scope(nodeid)
            return TOGETHER.get(path, path)

    return Together(config, log)


def _shares_across_files(item) -> str | None:
    """What, if anything, the test shares with tests in other files: a session fixture of tests/conftest.py, or
    a Ray cluster."""
    if item.get_closest_marker("ray"):
        return "ray"
    info = getattr(item, "_fixtureinfo", None)  # pytest's record of the test's fixtures
    for defs in getattr(info, "name2fixturedefs", {}).values():
        # baseid "": pytest's and plugins' own session fixtures (tmp_path_factory, ...), nothing trained
        if any(d.scope == "session" and d.baseid for d in defs):
            return "small_audit"
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).endswith("README.md"):
            item.add_marker(pytest.mark.slow)
        shared = _shares_across_files(item)
        path = item.nodeid.split("::")[0]
        if shared is not None and TOGETHER.get(path) != shared:
            raise pytest.UsageError(f"{item.nodeid} shares {shared!r} with other files: add {path!r}: {shared!r} "
                                    f"to TOGETHER in conftest.py, so that pytest-xdist runs them on one worker")
