"""Prometheus exposition of every component's figures (`--prometheus-listen-on HOST:PORT`).

Names follow the official farmer's prefix: `subspace_farmer_<component>_<figure>`, labelled with the
component's instance id; numeric status figures become gauges, read at scrape time."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from autonomys_farmer.services.component import Component

_NAME = re.compile(r"[^a-zA-Z0-9_]")


class ComponentCollector(Collector):
    def __init__(self, components: Sequence[Component]) -> None:
        self.components = components

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for component in self.components:
            prefix = _NAME.sub("_", f"subspace_farmer_{component.kind}")
            for key, value in component.status().items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                name = f"{prefix}_{_NAME.sub('_', key)}"
                if name not in families:
                    families[name] = GaugeMetricFamily(name, f"{component.kind} {key}", labels=["instance"])
                families[name].add_metric([component.instance_id], float(value))
        yield from families.values()


def serve_metrics(listen: tuple[str, int], components: Sequence[Component]) -> None:
    REGISTRY.register(ComponentCollector(components))
    start_http_server(listen[1], addr=listen[0])
