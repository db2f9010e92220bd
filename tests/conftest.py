"""Shared pytest settings and fixtures: hypothesis profile, markers, the guide's hosts."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.helpers import HOSTS, GuideHost, cli

settings.register_profile("default", deadline=None, max_examples=100)
settings.load_profile("default")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long-running integration or simulation test")


@pytest.fixture
def guide_hosts(tmp_path: Path) -> Iterator[dict[str, GuideHost]]:
    """host-a.com to host-d.com, each with its own dirs; every node is stopped afterwards."""
    made = {name: GuideHost(tmp_path, name) for name in HOSTS}
    yield made
    for host in made.values():
        cli(host.env, "stop")
