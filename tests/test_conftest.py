"""The suite's own rules (tests/conftest.py): which tests a ``pytest -m`` expression selects."""
import pytest

from conftest import IN_JUPYTERLAB, ROOT, wants_colab

COLAB_FILE = "tests/test_browser_colab.py"     # three tests, all marked colab (and browser)


def collect(path: str, *args: str) -> list[str]:
    """The node ids ``pytest --collect-only path args`` selects (in this process: torch and the conftest are loaded
    already; pytest-timeout off, so the inner session leaves this test's alarm alone)."""
    class Seen:
        def pytest_collection_finish(self, session):
            self.ids = [item.nodeid for item in session.items]
    seen, chosen = Seen(), dict(IN_JUPYTERLAB)      # the inner session's hooks are this session's conftest's
    try:
        code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:timeout", "-p", "no:xdist",
                            str(ROOT / path), *args], plugins=[seen])
    finally:
        IN_JUPYTERLAB.clear()
        IN_JUPYTERLAB.update(chosen)
    assert code in (0, 5), code                 # 5: none selected
    return seen.ids


def collected(*args: str) -> int:
    """How many tests of COLAB_FILE ``pytest --collect-only`` selects with ``args``."""
    return len(collect(COLAB_FILE, *args))


@pytest.mark.parametrize("markexpr, wanted", [
    ("", False), ("not notebook and not browser and not multiprocess", False), ("notebook", False),
    ("colab", True), ("colab and browser", True), ("not colab", True),      # "not colab": -m itself leaves them out
    ("colabs", False), ("not_colab_env", False)])
def test_colab_tests_are_wanted_only_when_the_expression_names_the_marker(markexpr, wanted):
    assert wants_colab(markexpr) is wanted


def test_the_inner_loops_marker_expression_leaves_the_colab_tests_out():
    assert collected() == 0                                                          # plain pytest
    assert collected("-m", "not notebook and not browser and not multiprocess") == 0  # the README's inner loop
    assert collected("-m", "browser") == 0
    assert collected("-m", "colab") == 3                                             # their own CI step


def test_each_notebook_run_in_jupyterlab_names_a_browser_test_that_exists():
    """conftest.BROWSER_RUNS: a renamed browser test would silently send its notebook back to papermill."""
    import test_browser
    from conftest import BROWSER_RUNS
    ids = collect("tests/test_browser.py")
    for name, (nodeid, runner) in BROWSER_RUNS.items():
        assert nodeid in ids and callable(getattr(test_browser, runner)), (name, nodeid, runner)
