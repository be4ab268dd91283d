"""Shared fixtures: one local Ray instance for the whole session, small signals on disk.

Plain helpers (paths, signal makers, ``launch_fit``, ``free_port``) are in ``tests/helpers.py``.
A test that asks for ``ray_session`` is marked ``slow`` here; ``pytest -m "not slow"`` runs the
tests that need no Ray at all."""

import os
from pathlib import Path

import pytest

from tests.helpers import make_tiny_signal


def pytest_collection_modifyitems(config, items):
    """Every test that uses the shared Ray instance, directly or through another fixture, is slow."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def ray_only_in_slow_tests(request, monkeypatch):
    """A test not marked slow that starts Ray in this process fails at once: `-m "not slow"` must
    stay free of Ray (a test that starts it in a subprocess carries an explicit ``slow`` mark)."""
    if request.node.get_closest_marker("slow") is None:

        def refuse(*args, **kwargs):
            raise AssertionError(f"{request.node.nodeid} starts Ray: mark it @pytest.mark.slow")

        monkeypatch.setattr("ray.init", refuse)


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by every test that needs one; shut down at the end."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny_signal(tmp_path) -> Path:
    return make_tiny_signal(tmp_path)


@pytest.fixture(scope="module")
def tiny_signal_module(tmp_path_factory) -> Path:
    return make_tiny_signal(tmp_path_factory.mktemp("signal"))
