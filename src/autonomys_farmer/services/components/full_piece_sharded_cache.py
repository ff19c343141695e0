"""Full-piece sharded cache: together its instances hold the whole archived history (no size limit),
each the pieces rendezvous hashing gives it. It is the plotters' main source of pieces. A directory
written by `export-piece` (same `piece_cache.bin` format) can be used as is: its pieces are served
immediately and the instance fetches only what its share still lacks."""

from __future__ import annotations

import shutil
from pathlib import Path

from autonomys_farmer.cluster.messages import CacheItemType, ComponentKind
from autonomys_farmer.services.components.sharded_cache import ShardedCache


class FullPieceShardedCache(ShardedCache):
    kind = ComponentKind.FULL_PIECE_CACHE

    def __init__(
        self, nats_servers: list[str], directory: Path, temporary: bool = False, kzg_parameters: Path | None = None
    ) -> None:
        super().__init__(
            nats_servers, directory, size=None, item_type=CacheItemType.PIECE, kzg_parameters=kzg_parameters
        )
        self.temporary = temporary

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self.temporary:  # --tmp: the directory was made for this run only
                self.store.close()
                shutil.rmtree(self.store.directory, ignore_errors=True)
