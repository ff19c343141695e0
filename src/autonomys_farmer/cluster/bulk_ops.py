"""The bulk TCP operations: one request frame, then answer frames, each a typed header plus a payload.

Caches and the controller answer `GetItems` (one `Item` per key, the item as payload), caches also
`ListContents` and `RepairItem` (the whole verified piece as the request's payload: the cache checks it);
plot servers answer `FetchSector` (`SectorPart`s streaming the sector) and `ReleaseSector`. The transport
is services/transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from autonomys_farmer.cluster.messages import check_job_id


@dataclass(frozen=True)
class GetItems:
    TAG: ClassVar[str] = "get"
    keys: tuple[int, ...]


@dataclass(frozen=True)
class Item:
    key: int
    found: bool


@dataclass(frozen=True)
class ListContents:
    TAG: ClassVar[str] = "contents"


@dataclass(frozen=True)
class Contents:
    keys: tuple[int, ...]


@dataclass(frozen=True)
class RepairItem:
    TAG: ClassVar[str] = "repair"
    key: int


@dataclass(frozen=True)
class Repaired:
    key: int


@dataclass(frozen=True)
class FetchSector:
    TAG: ClassVar[str] = "sector"
    job_id: str  # names the plot server's buffer files: validated like PlotJob.job_id

    def __post_init__(self) -> None:
        check_job_id(self.job_id)


@dataclass(frozen=True)
class SectorPart:
    offset: int


@dataclass(frozen=True)
class ReleaseSector:
    TAG: ClassVar[str] = "release"
    job_id: str

    def __post_init__(self) -> None:
        check_job_id(self.job_id)


@dataclass(frozen=True)
class Released:
    job_id: str


BulkRequest = GetItems | ListContents | RepairItem | FetchSector | ReleaseSector
