"""DHT settings: the operator's tunables have one default, the option registry's."""

from __future__ import annotations

import pytest

from bitdust.config import OPTIONS
from bitdust.dht.service import settings_from_config
from bitdust.dht.settings import DHTSettings
from bitdust.node.service import ServiceError


def test_dht_defaults_are_the_option_registry_defaults() -> None:
    defaults = {key: option.default for key, option in OPTIONS.items()}
    assert settings_from_config(defaults) == DHTSettings()
    assert DHTSettings().rpc_timeout == OPTIONS["services/entangled-dht/rpc-timeout"].default


def test_configured_values_reach_the_core_and_bad_ones_name_the_service() -> None:
    config = {key: option.default for key, option in OPTIONS.items()}
    config["services/entangled-dht/rpc-timeout"] = 2.5
    config["services/entangled-dht/bucket-size"] = 4
    settings = settings_from_config(config)
    assert (settings.rpc_timeout, settings.k) == (2.5, 4)
    config["services/entangled-dht/bucket-size"] = 40
    with pytest.raises(ServiceError, match=r"services/entangled-dht/\*: k=40: expected 1..20"):
        settings_from_config(config)
