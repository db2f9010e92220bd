"""Markers for the DHT tests."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sim1000: 1,000-node simulator scenarios (about 20 s together on 2 cores)"
    )
