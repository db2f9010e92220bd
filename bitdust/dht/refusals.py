"""Why a DHT node refuses a record: one enum for every refusal, so code compares members.

The value is the text a peer sees in a STORED reply and a user sees in an error; code never
matches on that text.
"""

from __future__ import annotations

from enum import Enum


class Refusal(Enum):
    # The record itself (``records.RecordChecker``).
    BAD_KEY = "bad key"
    VALUE_TOO_LARGE = "value too large"
    CREATED_IN_FUTURE = "created in the future"
    EXPIRED = "expired"
    LIFETIME_TOO_LONG = "lifetime exceeds max age"
    NO_LIFETIME = "lifetime must be at least one second"
    INVALID_SIGNATURE = "invalid signature"
    NOT_OWNER = "the key belongs to another signer"
    # The storing node's policy (``store.RecordStore``).
    OLDER = "older than the stored record"
    CONFLICT = "conflicts with the stored record"
    KEY_FULL = "too many records under this key"
    KEY_NETWORK_FULL = "too many records under this key from this network"
    STORE_FULL = "store is full"
    SIGNER_RECORDS = "too many records from this signer"
    SIGNER_BYTES = "too many bytes from this signer"
    NETWORK_RECORDS = "too many records from this network"
    NETWORK_BYTES = "too many bytes from this network"
    # The storing node's CPU budget for signature checks (``protocol.DHTNode``).
    BUSY = "busy: too many signatures to check from this network, try again later"


class RecordRefused(ValueError):
    """A record this node was asked to publish breaks a rule; ``refusal`` says which."""

    def __init__(self, refusal: Refusal, detail: str = "") -> None:
        super().__init__(f"record refused: {refusal.value}" + (f" ({detail})" if detail else ""))
        self.refusal = refusal
