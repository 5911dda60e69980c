"""One local Ray for every Ray test of the session: it takes seconds to start, so it starts once.

The Ray tests share the federated tests' helpers: ``federated_helpers`` (in tests/test_federated) is importable here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_FEDERATED_TESTS = str(Path(__file__).resolve().parents[1] / "test_federated")
if _FEDERATED_TESTS not in sys.path:
    sys.path.insert(0, _FEDERATED_TESTS)

_READY_S = 120.0  # how long the local Ray may take to run its first task


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray with 2 CPUs on 127.0.0.1, shut down after the session's last Ray test."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        ray.get(ray.remote(lambda: None).remote(), timeout=_READY_S)
        yield
    finally:
        ray.shutdown()
