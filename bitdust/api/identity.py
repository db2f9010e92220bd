"""Identity routes: BitDust's ``identity/create``, ``identity/get``, ``identity/backup`` and
``identity/recover``.

The daemon may be unable to reach a path the caller names (the unit runs with ProtectHome); then
the answer says to use the CLI, which reads and writes such files itself and sends or receives
their content over this API.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bitdust import keysize
from bitdust.api.server import ApiError, Call, Param, Route, route
from bitdust.files import FileError, FileExists, atomic_write, read_bounded
from bitdust.identity.errors import IdentityError, KeyFileError
from bitdust.identity.keys import MAX_KEY_FILE_SIZE

if TYPE_CHECKING:
    from bitdust.identity.propagate_service import IdentityPropagateService


def _propagate(call: Call) -> IdentityPropagateService:
    return call.service("identity-propagate")


def _cli_hint(path: str, exc: Exception, command: str) -> ApiError:
    return ApiError(
        409, f"the node cannot use {path}: {exc}; use '{command}' (the CLI handles the file itself)"
    )


@route("POST", "identity/create", Param("username", str, required=True),
       Param("key_size", int, default=keysize.DEFAULT_KEY_BITS))  # fmt: skip
async def identity_create(call: Call) -> dict[str, Any]:
    try:
        keysize.check_key_size(call.args["key_size"])
    except keysize.KeyRefused as exc:
        raise ApiError(400, f"field 'key_size': {exc}") from None
    try:
        return await _propagate(call).create(call.args["username"], call.args["key_size"])
    except IdentityError as exc:
        raise ApiError(400, str(exc)) from None


@route("GET", "identity/get")
async def identity_get(call: Call) -> dict[str, Any]:
    return _propagate(call).view()


@route("POST", "identity/backup", Param("destination_path", str, default=None),
       Param("passphrase", str, default=None))  # fmt: skip
async def identity_backup(call: Call) -> dict[str, Any]:
    data = _propagate(call).backup_bytes(call.args["passphrase"])
    path = call.args["destination_path"]
    if path is None:
        return {"backup": data.decode("ascii")}
    if not path.startswith("/"):
        raise ApiError(400, "field 'destination_path': expected an absolute path")
    try:
        atomic_write(Path(path), data, mode=0o600, overwrite=False)
    except FileExists as exc:
        raise ApiError(409, str(exc)) from None
    except FileError as exc:
        raise _cli_hint(path, exc, f"bitdust identity backup {path}") from None
    return {"destination_path": path, "mode": "0600"}


@route("POST", "identity/recover", Param("private_key_source", str, default=None),
       Param("private_key_local_file", str, default=None), Param("passphrase", str, default=None),
       Param("known_idurl", str, default=None))  # fmt: skip
async def identity_recover(call: Call) -> dict[str, Any]:
    source, path = call.args["private_key_source"], call.args["private_key_local_file"]
    if (source is None) == (path is None):
        raise ApiError(400, "give either 'private_key_source' or 'private_key_local_file'")
    if path is not None:
        try:
            data = read_bounded(Path(path), MAX_KEY_FILE_SIZE,
                                what=f"key backup {path}", error=KeyFileError)  # fmt: skip
        except KeyFileError as exc:
            raise _cli_hint(path, exc, f"bitdust identity restore {path}") from None
    else:
        data = source.encode("utf-8")
    return await _propagate(call).recover(data, call.args["passphrase"], call.args["known_idurl"])


ROUTES: list[Route] = [identity_create, identity_get, identity_backup, identity_recover]
