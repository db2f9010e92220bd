"""Supplier routes, BitDust's paths: ``space/donated`` (the space donated, used and free, and
each customer), ``customer/list`` and ``customer/reject`` (end a customer's contract from this
side, deleting its fragments). Sizes are bytes, ``since`` is Unix time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bitdust.api.server import ApiError, Call, Param, Route, route
from bitdust.storage.fragment_store import NotACustomer

if TYPE_CHECKING:
    from bitdust.storage.supplier import SupplierService


def _supplier(call: Call) -> SupplierService:
    return call.service("supplier")


@route("GET", "space/donated")
async def space_donated(call: Call) -> dict[str, Any]:
    """``free`` is the space not promised to any customer: what new customers can hire."""
    return _supplier(call).supplier.space()


@route("GET", "customer/list")
async def customer_list(call: Call) -> list[dict[str, Any]]:
    return [customer.to_dict() for customer in _supplier(call).supplier.customers()]


@route("DELETE", "customer/reject", Param("idurl", str, required=True))
async def customer_reject(call: Call) -> dict[str, Any]:
    idurl = call.args["idurl"]
    try:
        freed = await _supplier(call).supplier.reject(idurl)
    except NotACustomer:
        raise ApiError(404, f"{idurl}: not a customer of this supplier") from None
    return {"idurl": idurl, "freed": freed}


ROUTES: list[Route] = [space_donated, customer_list, customer_reject]
