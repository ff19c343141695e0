"""Prometheus metrics of every component (`--prometheus-listen-on HOST:PORT`).

The instruments below carry the official farmer's names (node-and-cluster.md §7.2: registry prefix
`subspace_farmer`, sub-prefixes `farm_`, `plotter_`, `disk_piece_cache_`, the same labels; the client
library adds `_total` to counters). Besides them, every numeric status figure a component reports in
its heartbeat is exposed as a gauge `subspace_farmer_<component>_<figure>{instance}`, and its text
figures (a plot server's backend and GPU) as labels of `subspace_farmer_<component>_info{instance,...} 1`."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from autonomys_farmer.cluster.messages import CacheStatus, ComponentStatus, PlotClientStatus, status_figures
from autonomys_farmer.services.components.component import Component

_NAME = re.compile(r"[^a-zA-Z0-9_]")
_PREFIX = "subspace_farmer"
_SECTOR_TIME_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)

# --- farm (plot client), labelled farm_id ---------------------------------------------------------
FARM_AUDITING_TIME = Histogram(
    f"{_PREFIX}_farm_auditing_time_seconds", "Time to audit every sector of a farm for one slot",
    ["farm_id"], buckets=[0.0002 * 2**i for i in range(15)],
)  # fmt: skip
FARM_PROVING_TIME = Histogram(
    f"{_PREFIX}_farm_proving_time_seconds", "Time from a win to a submitted solution",
    ["farm_id", "result"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16),
)  # fmt: skip
FARM_SKIPPED_SLOTS = Counter(f"{_PREFIX}_farm_skipped_slots", "Slots not audited (previous still busy)", ["farm_id"])
# --- the plot client's whole slot (its farms audit side by side) -----------------------------------
SLOT_AUDITING_TIME = Histogram(
    f"{_PREFIX}_slot_auditing_time_seconds", "Time to audit every farm of a plot client for one slot",
    buckets=[0.0002 * 2**i for i in range(15)],
)  # fmt: skip
SKIPPED_SLOTS = Counter(f"{_PREFIX}_slots_skipped", "Slots a plot client did not audit, by reason", ["reason"])
FARM_SECTOR_PLOTTING_TIME = Histogram(
    f"{_PREFIX}_farm_sector_plotting_time_seconds", "Time from plot job to sector on disk",
    ["farm_id"], buckets=_SECTOR_TIME_BUCKETS,
)  # fmt: skip
FARM_SECTOR_PLOTTED = Counter(f"{_PREFIX}_farm_sector_plotted_counter", "Sectors plotted", ["farm_id"])

# --- plotter (plot server), labelled kind: the backend (cpu, cuda) --------------------------------
PLOTTER_DOWNLOADING_TIME = Histogram(
    f"{_PREFIX}_plotter_sector_downloading_time_seconds", "Time to fetch and verify a sector's pieces",
    ["kind"], buckets=_SECTOR_TIME_BUCKETS,
)  # fmt: skip
PLOTTER_ENCODING_TIME = Histogram(
    f"{_PREFIX}_plotter_sector_encoding_time_seconds", "Time to encode a sector",
    ["kind"], buckets=_SECTOR_TIME_BUCKETS,
)  # fmt: skip
PLOTTER_PLOTTING_TIME = Histogram(
    f"{_PREFIX}_plotter_sector_plotting_time_seconds", "Time from job to buffered sector",
    ["kind"], buckets=_SECTOR_TIME_BUCKETS,
)  # fmt: skip
PLOTTER_PLOTTED = Counter(f"{_PREFIX}_plotter_sector_plotted_counter", "Sectors plotted", ["kind"])
PLOTTER_ERRORS = Counter(f"{_PREFIX}_plotter_sector_plotting_error_counter", "Sectors that failed", ["kind"])

# --- disk piece caches, labelled cache_id ---------------------------------------------------------
CACHE_READ_PIECE = Counter(f"{_PREFIX}_disk_piece_cache_read_piece", "Items read", ["cache_id"])
CACHE_WRITE_PIECE = Counter(f"{_PREFIX}_disk_piece_cache_write_piece", "Items written", ["cache_id"])


class ComponentCollector(Collector):
    def __init__(self, components: Sequence[Component]) -> None:
        self.components = components

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for component in self.components:
            status = component.status()
            prefix = _NAME.sub("_", f"subspace_farmer_{component.kind}")
            texts = {}
            for key, value in status_figures(status).items():
                if isinstance(value, str):
                    texts[_NAME.sub("_", key)] = value
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                name = f"{prefix}_{_NAME.sub('_', key)}"
                _family(families, name, f"{component.kind} {key}", ["instance"]).add_metric(
                    [component.instance_id], float(value)
                )
            if texts:
                labels = ["instance", *texts]
                info = _family(families, f"{prefix}_info", f"{component.kind} text figures", labels)
                info.add_metric([component.instance_id, *texts.values()], 1.0)
            _official_gauges(component.instance_id, status, families)
        yield from families.values()


def _family(
    families: dict[str, GaugeMetricFamily], name: str, documentation: str, labels: list[str]
) -> GaugeMetricFamily:
    if name not in families:
        families[name] = GaugeMetricFamily(name, documentation, labels=labels)
    return families[name]


def _official_gauges(instance_id: str, status: ComponentStatus | None, families: dict[str, GaugeMetricFamily]) -> None:
    """The official farmer's gauges that a status carries (sectors by state, cache capacity)."""
    if isinstance(status, PlotClientStatus):
        sectors = _family(families, f"{_PREFIX}_farm_sectors_total", "Sectors by state", ["farm_id", "state"])
        for farm in status.farms:
            sectors.add_metric([farm.farm_id, "Plotted"], farm.plotted - farm.expiring)
            sectors.add_metric([farm.farm_id, "AboutToExpire"], farm.expiring)
            sectors.add_metric([farm.farm_id, "NotPlotted"], farm.sectors - farm.plotted)
    elif isinstance(status, CacheStatus):
        used = _family(families, f"{_PREFIX}_disk_piece_cache_capacity_used", "Items held", ["cache_id"])
        used.add_metric([instance_id], status.items)
        if status.capacity is not None:
            total = _family(families, f"{_PREFIX}_disk_piece_cache_capacity_total", "Item slots", ["cache_id"])
            total.add_metric([instance_id], status.capacity)


def serve_metrics(listen: tuple[str, int], components: Sequence[Component]) -> None:
    REGISTRY.register(ComponentCollector(components))
    start_http_server(listen[1], addr=listen[0])
