"""Shared pytest settings: hypothesis profiles and markers."""

from hypothesis import settings

settings.register_profile("default", deadline=None, max_examples=100)
settings.load_profile("default")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long-running integration or simulation test")
