"""``GET /metrics``: the node's figures (:mod:`bitdust.metrics`) and the process' own, in
Prometheus' text format written by prometheus-client.

Served on the API, behind its secret, and — when ``interface/metrics/port`` is set — on a
listener of its own for a Prometheus server: that one serves nothing else, only GET, no secret
(the figures are counts, never keys or names), bound to the API's loopback host, and refuses
what a web page sends and a Host that is not local (DNS rebinding), as the API does without its
secret. prometheus-client is imported at the first scrape, so
a node nobody scrapes does not load it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web

from bitdust.api.meta import METRICS_URL
from bitdust.api.server import cross_site_refusal, envelope_error, is_loopback_host
from bitdust.metrics import Family, Kind

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Exporter:
    """Renders ``source()`` (read at each scrape) with prometheus-client's process and platform
    figures, from a registry of its own (never the library's global one)."""

    def __init__(self, source: Callable[[], list[Family]]) -> None:
        self.source = source
        self._registry: Any = None

    def render(self) -> tuple[bytes, str]:
        """The exposition and its content type."""
        import prometheus_client

        if self._registry is None:
            registry = prometheus_client.CollectorRegistry(auto_describe=False)
            prometheus_client.ProcessCollector(registry=registry)
            prometheus_client.PlatformCollector(registry=registry)
            registry.register(_Collector(self.source))
            self._registry = registry
        return prometheus_client.generate_latest(
            self._registry
        ), prometheus_client.CONTENT_TYPE_LATEST

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body, content_type = self.render()
        except ImportError:
            return envelope_error(
                500, "metrics need the prometheus-client package, which is not installed"
            )
        return web.Response(body=body, headers={"Content-Type": content_type})


class _Collector:
    """prometheus-client's side of :class:`Exporter`: our families as its metric families."""

    def __init__(self, source: Callable[[], list[Family]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for family in self.source():
            kind = GaugeMetricFamily if family.kind is Kind.GAUGE else CounterMetricFamily
            metric = kind(family.name, family.help, labels=family.label_names)
            for labels, value in family.samples:
                metric.add_metric([value_ for _, value_ in labels], value)
            yield metric


def metrics_app(exporter: Exporter, allowed_hosts: set[str]) -> web.Application:
    """The separate listener's application: ``GET /metrics`` and nothing else."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = cross_site_refusal(request, allowed_hosts)
        if refusal is not None:
            return envelope_error(403, refusal)
        if not is_loopback_host(request.host or "", allowed_hosts):  # DNS rebinding
            return envelope_error(403, f"access denied: Host {request.host!r} is not local")
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return envelope_error(404, f"only GET {METRICS_URL} is served here")
        except web.HTTPMethodNotAllowed:
            return envelope_error(405, f"only GET {METRICS_URL} is served here")

    app = web.Application(middlewares=[guard])
    app.router.add_route("GET", METRICS_URL, exporter.handle)
    return app
