"""The local REST API (BitDust routes and envelope) and the client the CLI uses."""
