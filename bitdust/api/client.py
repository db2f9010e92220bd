"""The CLI's side of the REST API: a small blocking client on the standard library.

It talks to ``api.sock`` when it can and to the loopback TCP port otherwise, sends the instance's
secret, and turns every failure (node not running, secret unreadable, an ERROR envelope) into
:class:`ClientError` with a message fit for a terminal.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from pathlib import Path
from typing import Any

from bitdust.config import Paths

TIMEOUT = 60.0
MAX_SECRET_BYTES = 1024  # the node writes 43 characters


class ClientError(Exception):
    """The request failed; the message is what the user should read."""


class NotRunning(ClientError):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def read_secret(path: Path) -> str | None:
    """The instance's API secret; None when the node is not running (no file)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise ClientError(
            f"cannot read the API secret {path}: permission denied; run the command as root "
            "(sudo) or as a member of the group 'bitdust'"
        ) from None
    except OSError as exc:
        raise ClientError(f"cannot read the API secret {path}: {exc.strerror}") from None
    secret = data.strip()
    if len(data) > MAX_SECRET_BYTES or not secret.isascii() or not secret.decode().isprintable():
        raise ClientError(f"{path} is not an API secret; restart the node to write a new one")
    return secret.decode()


class ApiClient:
    """``start_command`` is how the operator starts this instance (systemctl or `bitdust
    daemon`): the advice given when the node is not running."""

    def __init__(
        self, paths: Paths, host: str, port: int, start_command: str, timeout: float = TIMEOUT
    ) -> None:
        self.paths = paths
        self.host = host
        self.port = port
        self.start_command = start_command
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **query: Any) -> Any:
        """Call ``/{path}/v1``; returns ``result`` of an OK envelope, raises ClientError else."""
        secret = read_secret(self.paths.api_secret)
        headers = {"Accept": "application/json"}
        if secret:
            headers["api_secret"] = secret
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        query_text = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        url = f"/{urllib.parse.quote(path)}/v1" + (f"?{query_text}" if query_text else "")
        status, data = self._send(method, url, payload, headers)
        try:
            envelope = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ClientError(f"the node answered HTTP {status} without JSON") from None
        if not isinstance(envelope, dict) or envelope.get("status") != "OK":
            errors = envelope.get("errors") if isinstance(envelope, dict) else None
            raise ClientError("; ".join(map(str, errors or [f"HTTP {status}"])))
        return envelope.get("result")

    def _send(
        self, method: str, url: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        connections: list[http.client.HTTPConnection] = []
        if self.paths.api_socket.exists():
            connections.append(_UnixConnection(str(self.paths.api_socket), self.timeout))
        connections.append(http.client.HTTPConnection(self.host, self.port, timeout=self.timeout))
        last_error: OSError | None = None
        for connection in connections:
            try:
                connection.request(method, url, body=payload, headers=headers)
                response = connection.getresponse()
                return response.status, response.read()
            except (ConnectionRefusedError, FileNotFoundError, PermissionError) as exc:
                last_error = exc
            except OSError as exc:
                raise ClientError(f"the node did not answer: {exc}") from None
            except http.client.HTTPException as exc:  # something else listens there
                raise ClientError(
                    f"{connection.host}:{connection.port} did not answer as a bitdust node: "
                    f"{type(exc).__name__}"
                ) from None
            finally:
                connection.close()
        raise NotRunning(
            f"the node (instance {self.paths.instance}) is not running "
            f"({last_error}); start it with '{self.start_command}'"
        )
