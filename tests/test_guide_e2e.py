"""The guide "Your own BitDust network from scratch" end to end (issue 14), with real processes
on host-a.com … host-e.com (run under the shared test lock): the scenario `make demo` shows a
person (tests/demo.py), as one test, from the source tree or, with BITDUST_BIN, the frozen
binary. The customer runs as its systemd unit runs it: `bitdust --instance default run` under a
NOTIFY_SOCKET the test reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo import GuideNetwork, walk_through

pytestmark = pytest.mark.slow


@pytest.fixture
def network(tmp_path: Path) -> Iterator[GuideNetwork]:
    """The guide's hosts and the customer's machine, all stopped afterwards, and nginx too."""
    made = GuideNetwork(tmp_path)
    yield made
    made.stop()


@pytest.mark.timeout(360)
def test_the_guide_from_an_empty_network_to_a_customer_recovered_from_its_key_backup(
    network: GuideNetwork, tmp_path: Path
) -> None:
    """Parts 2 to 7, then a supplier lost and the customer's machine lost: each step checks
    what the guide says the user sees (tests/demo.py prints each check as it passes)."""
    walk_through(network, tmp_path / "documents")
