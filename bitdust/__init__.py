"""BitDust node: a private, decentralised, end-to-end encrypted backup network."""

__version__ = "0.1.0"
