"""A 3-server NATS cluster with JetStream replicated 3 ways: losing one server loses no plot job, no
shard map and no request/reply path (the cluster's control plane keeps working)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats.errors

from autonomys_farmer.cluster import messages as m
from autonomys_farmer.cluster import wire
from autonomys_farmer.services.dev import DevLayout
from autonomys_farmer.services.nats_bus import Bus, retry_forever
from autonomys_farmer.services.supervisor import Supervisor


async def eventually(action: Callable[[], Awaitable[object]], timeout: float = 30.0) -> None:
    """Retry while the new cluster elects JetStream leaders (meta, then each stream's)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await action()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_jetstream_state_survives_losing_one_of_three_servers(tmp_path: Path) -> None:
    layout = DevLayout(tmp_path, nats_servers=3)
    urls = layout.nats_urls

    async def run() -> None:
        supervisor = Supervisor(tmp_path / "logs")
        for program in layout.nats_programs():
            program.restart = False
            await supervisor.add(program)
        producer = await Bus.connect([urls[0]], "producer")
        consumer = await Bus.connect(urls, "consumer")
        try:
            assert await producer.replicas_for_new_state() == 3  # discovered the other two from the first
            await eventually(lambda: producer.ensure_work_queue(m.PLOT_JOBS_STREAM, m.PLOT_JOBS))
            assert (await producer.js.stream_info(m.PLOT_JOBS_STREAM)).config.num_replicas == 3
            shard_map = m.ShardMap("sharded-cache.piece", (m.ShardMember("a", "127.0.0.1:1"),))

            async def put_map() -> None:
                await (await producer.kv(m.SHARDS_BUCKET)).put(shard_map.group, wire.encode(shard_map))

            await eventually(put_map)
            jobs = [m.PlotJob(f"job-{i}", "farm", bytes(32), i, 8, {}) for i in range(3)]
            for job in jobs:
                await eventually(lambda job=job: producer.js.publish(m.PLOT_JOBS, wire.encode(job)))

            async def answer(data: bytes) -> bytes:
                return b"pong:" + data

            await consumer.serve("test.ping", answer, queue="q")
            await producer.nc.flush()

            supervisor.kill("nats-server-0")  # the producer's own server
            await asyncio.sleep(1.0)

            after = await Bus.connect(urls[1:], "after")
            assert await after.request("test.ping", b"1", timeout=2, deadline=20) == b"pong:1"
            raw = await asyncio.wait_for(
                retry_forever("shard map", lambda: after.kv_get(m.SHARDS_BUCKET, shard_map.group)), 60
            )
            assert raw is not None and wire.decode(m.ShardMap, raw) == shard_map
            # The stream may be electing a new leader (its old one died with the server): retry as the
            # plot server does.
            subscription = await asyncio.wait_for(
                retry_forever(
                    "pull consumer",
                    lambda: after.js.pull_subscribe(m.PLOT_JOBS, durable="test", stream=m.PLOT_JOBS_STREAM),
                ),
                60,
            )
            received = []
            deadline = time.monotonic() + 60
            while len(received) < len(jobs) and time.monotonic() < deadline:
                try:
                    for msg in await subscription.fetch(len(jobs) - len(received), timeout=5):
                        received.append(wire.decode(m.PlotJob, msg.data))
                        await msg.ack()
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
            assert sorted(j.job_id for j in received) == [j.job_id for j in jobs]
            await after.close()
        finally:
            for bus in (producer, consumer):
                try:
                    await asyncio.wait_for(bus.nc.close(), 5)
                except Exception:
                    pass
            await supervisor.stop_all()

    asyncio.run(run())
