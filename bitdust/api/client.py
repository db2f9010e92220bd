"""The CLI's side of the REST API: a small blocking client on the standard library.

It talks to ``api.sock`` when it can and to the loopback TCP port otherwise, sends the instance's
secret, and turns every failure (node not running, secret unreadable, an ERROR envelope) into
:class:`ClientError` with a message fit for a terminal. File content is streamed both ways a piece
at a time (:meth:`ApiClient.upload`, :meth:`ApiClient.download`): never a whole file in memory.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from bitdust.config import Paths

TIMEOUT = 60.0
MAX_SECRET_BYTES = 1024  # the node writes 43 characters
PIECE = 1024 * 1024  # file content is sent and received this much at a time
MAX_ANSWER = 1024 * 1024  # an envelope where a file was expected is read this far at most
OCTET_TYPE = "application/octet-stream"


class ClientError(Exception):
    """The request failed; the message is what the user should read, ``status`` the HTTP
    status when the node answered (409: a service that is not running)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotRunning(ClientError):
    pass


class LocalFileError(ClientError):
    """Reading the upload's source or writing the download's sink failed: the caller's file, not
    the node, is at fault. The message is the system's reason; the caller names the file."""


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

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, /, **query: Any
    ) -> Any:
        """Call ``/{path}/v1``; returns ``result`` of an OK envelope, raises ClientError else."""
        headers = self._headers()
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        with self._connection() as connection:
            connection.request(method, _url(path, query), body=payload, headers=headers)
            response = connection.getresponse()
            return _result(response.status, response.read())

    def upload(
        self,
        path: str,
        query: dict[str, Any],
        source: BinaryIO,
        size: int,
        on_progress: Callable[[int], None],
        before_last: Callable[[], None] | None = None,
    ) -> Any:
        """POST ``size`` bytes of ``source`` as the body of ``/{path}/v1``, a piece at a time.

        ``before_last()`` runs before the last piece is sent and may raise to abort: the
        connection is then closed short of ``size``, so the node records nothing. A node that
        answers before the body is all sent (a refusal) is heard at once, not after the upload.
        """
        headers = self._headers()
        headers.update({"Content-Type": OCTET_TYPE, "Content-Length": str(size)})
        with self._connection() as connection:
            connection.putrequest("POST", _url(path, query), skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            sent = 0
            try:
                while sent < size and not _answered(connection):
                    piece = _local(source.read, min(PIECE, size - sent))
                    if not piece:
                        raise LocalFileError(f"it ended after {sent} of {size} bytes")
                    if sent + len(piece) == size and before_last is not None:
                        before_last()
                    connection.send(piece)
                    sent += len(piece)
                    on_progress(sent)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the node stopped reading: its answer says why
            response = connection.getresponse()
            return _result(response.status, response.read())

    def download(
        self, path: str, query: dict[str, Any], sink: BinaryIO, on_progress: Callable[[int], None]
    ) -> dict[str, str]:
        """GET ``/{path}/v1`` and copy the file it sends to ``sink`` a piece at a time; returns
        the response's headers (names in lower case). An envelope instead of the file, or a body
        shorter than announced, is a ClientError."""
        with self._connection() as connection:
            connection.request("GET", _url(path, query), headers=self._headers())
            response = connection.getresponse()
            content_type = response.getheader("Content-Type", "").split(";")[0].strip()
            if response.status != 200 or content_type != OCTET_TYPE:
                _result(response.status, response.read(MAX_ANSWER))
                raise ClientError(f"the node answered {path} without the file's content")
            received = 0
            try:
                while piece := response.read(PIECE):
                    _local(sink.write, piece)
                    received += len(piece)
                    on_progress(received)
            except (http.client.IncompleteRead, ConnectionError) as exc:
                raise ClientError(f"the node ended the download early ({exc})") from None
            expected = response.getheader("Content-Length")
            if expected is not None and received != int(expected):
                raise ClientError(
                    f"the node ended the download early ({received} of {expected} bytes)"
                )
            return {name.lower(): value for name, value in response.getheaders()}

    def _headers(self) -> dict[str, str]:
        secret = read_secret(self.paths.api_secret)
        headers = {"Accept": "application/json"}
        if secret:
            headers["api_secret"] = secret
        return headers

    @contextlib.contextmanager
    def _connection(self) -> Iterator[http.client.HTTPConnection]:
        """A connection to the node, over ``api.sock`` when it can, else the TCP port; failures
        of the exchange made on it become ClientError. The timeout applies to each read and
        write, so an upload of any size has it for every piece."""
        candidates: list[http.client.HTTPConnection] = []
        if self.paths.api_socket.exists():
            candidates.append(_UnixConnection(str(self.paths.api_socket), self.timeout))
        candidates.append(http.client.HTTPConnection(self.host, self.port, timeout=self.timeout))
        last_error: OSError | None = None
        for connection in candidates:
            try:
                connection.connect()
            except (ConnectionRefusedError, FileNotFoundError, PermissionError) as exc:
                last_error = exc
                continue
            except OSError as exc:
                raise ClientError(f"the node did not answer: {exc}") from None
            try:
                yield connection
            except OSError as exc:
                raise ClientError(f"the node did not answer: {exc}") from None
            except http.client.HTTPException as exc:  # something else listens there
                raise ClientError(
                    f"{connection.host}:{connection.port} did not answer as a bitdust node: "
                    f"{type(exc).__name__}"
                ) from None
            finally:
                connection.close()
            return
        raise NotRunning(
            f"the node (instance {self.paths.instance}) is not running "
            f"({last_error}); start it with '{self.start_command}'"
        )


def _url(path: str, query: dict[str, Any]) -> str:
    query_text = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    return f"/{urllib.parse.quote(path)}/v1" + (f"?{query_text}" if query_text else "")


def _result(status: int, data: bytes) -> Any:
    """``result`` of an OK envelope; ClientError with the node's reasons otherwise."""
    try:
        envelope = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ClientError(f"the node answered HTTP {status} without JSON") from None
    if not isinstance(envelope, dict) or envelope.get("status") != "OK":
        errors = envelope.get("errors") if isinstance(envelope, dict) else None
        raise ClientError("; ".join(map(str, errors or [f"HTTP {status}"])), status)
    return envelope.get("result")


def _answered(connection: http.client.HTTPConnection) -> bool:
    """Whether the node has answered while the body is still being sent (it refused the call)."""
    readable, _, _ = select.select([connection.sock], [], [], 0)
    return bool(readable)


ArgumentT = TypeVar("ArgumentT")
ResultT = TypeVar("ResultT")


def _local(operation: Callable[[ArgumentT], ResultT], argument: ArgumentT) -> ResultT:
    """A read of the upload's source or a write of the download's sink: its failure is the local
    file's (LocalFileError), not a connection's."""
    try:
        return operation(argument)
    except OSError as exc:
        raise LocalFileError(exc.strerror or str(exc)) from None
