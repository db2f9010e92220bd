"""Regenerate the identity test vectors (run once; the outputs are committed and must not change).

    .venv/bin/python tests/identity/vectors/make_vectors.py

Writes test_key.pem and other_key.pem (throwaway 2048-bit keys, for tests only), and
signed_pss.xml: the fixed document of ``vector_identity()`` signed once with test_key.pem.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from bitdust.identity.document import Identity, format_date
from bitdust.identity.keys import (
    generate_private_key,
    load_private_key,
    public_key_to_openssh,
    save_private_key,
)
from bitdust.identity.signing import sign

HERE = Path(__file__).parent


def vector_identity(publickey: str) -> Identity:
    return Identity(
        sources=("http://host-a.com/alice.xml", "http://host-b.com:8084/alice.xml"),
        contacts=("tcp://127.0.1.1:7771",),
        date=format_date(datetime.date(2026, 11, 25)),
        version="bitdust-py 0.1.0",
        revision=3,
        publickey=publickey,
    )


def main() -> None:
    for name in ("test_key.pem", "other_key.pem"):
        if not (HERE / name).exists():
            save_private_key(HERE / name, generate_private_key(2048))
    key = load_private_key(HERE / "test_key.pem")
    signed = sign(vector_identity(public_key_to_openssh(key)), key)
    (HERE / "signed_pss.xml").write_bytes(signed.to_xml())


if __name__ == "__main__":
    main()
