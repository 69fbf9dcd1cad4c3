"""Examples as tests. Every example in the README and in docstrings runs (sybil): the README's ```python blocks,
and every `>>>` example in dpaudit/'s docstrings. The README's block trains models, so it is in the slow tier."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Hermetic: the model cache's HMAC key (dpaudit.training.cache_auth) lives under XDG_CONFIG_HOME; tests never
# write into the developer's home.
if "XDG_CONFIG_HOME" not in os.environ:
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


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).endswith("README.md"):
            item.add_marker(pytest.mark.slow)
