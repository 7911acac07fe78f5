"""Which Redis channel layer for room fan-out? A measurement, not a test (pytest skips it).

One process holds N channels in one group (the sockets of one room on one Daphne) and
sends to the group, against a private redis-server. For each layer it prints:

- latency: one group_send at a time; per delivery (send -> one channel got it), p50/p99,
  and "all" = until the last of the N channels got it (what the slowest reader waits);
- throughput: K group_sends back to back, until every channel got every message.

    .venv/bin/python e2e/measure_redis_layers.py            # N = 100 and 500
    .venv/bin/python e2e/measure_redis_layers.py 100 1000   # other group sizes

channels_redis.core.RedisChannelLayer runs a Lua script per group_send that pushes the
message onto one Redis list per member channel, and each process pops its channels'
messages with BLPOP; channels_redis.pubsub.RedisPubSubChannelLayer PUBLISHes once per
group and each subscribed process hands the message to its local member channels.
"""

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from e2e import servers

LAYERS = {
    "core (RedisChannelLayer)": RedisChannelLayer,
    "pubsub (RedisPubSubChannelLayer)": RedisPubSubChannelLayer,
}
ROUNDS = 30  # latency samples per layer and size
WARM_UP = 3  # rounds first, not counted (connections, subscriptions)
BURST = 50  # group_sends back to back (under the core layer's per-channel capacity, 100)
HTML = "<div id='chat-live' hx-swap-oob='beforeend'>" + "x" * 400 + "</div>"  # a message


class Receivers:
    """N channels in one group, each read by a task of its own, as consumers do."""

    def __init__(self, layer, size: int) -> None:
        self.layer = layer
        self.size = size
        self.latencies: list[float] = []
        self.counts: dict[int, int] = {}
        self.done: dict[int, asyncio.Event] = {}
        self.tasks: list[asyncio.Task] = []
        self.channels: list[str] = []

    async def start(self, group: str) -> None:
        for _ in range(self.size):
            channel = await self.layer.new_channel()
            await self.layer.group_add(group, channel)
            self.channels.append(channel)
            self.tasks.append(asyncio.create_task(self._read(channel)))
        await asyncio.sleep(0.2)  # let every reader (and subscription) settle

    def expect(self, seq: int) -> asyncio.Event:
        self.counts[seq] = 0
        self.done[seq] = asyncio.Event()
        return self.done[seq]

    async def _read(self, channel: str) -> None:
        while True:
            message = await self.layer.receive(channel)
            self.latencies.append(time.perf_counter() - message["sent"])
            seq = message["seq"]
            self.counts[seq] += 1
            if self.counts[seq] == self.size:
                self.done[seq].set()

    async def stop(self, group: str) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for channel in self.channels:
            await self.layer.group_discard(group, channel)


async def measure(layer_class, url: str, size: int) -> dict[str, float]:
    layer = layer_class(hosts=[url])
    group = f"room.bench{size}"
    receivers = Receivers(layer, size)
    await receivers.start(group)
    try:
        seq = 0
        all_received: list[float] = []
        for round_ in range(WARM_UP + ROUNDS):
            if round_ == WARM_UP:
                receivers.latencies.clear()
                all_received.clear()
            seq += 1
            done = receivers.expect(seq)
            sent = time.perf_counter()
            await layer.group_send(
                group, {"type": "hub.html", "html": HTML, "seq": seq, "sent": sent}
            )
            await asyncio.wait_for(done.wait(), 30)
            all_received.append(time.perf_counter() - sent)
        per_delivery = sorted(receivers.latencies)

        events = []
        started = time.perf_counter()
        for _ in range(BURST):
            seq += 1
            events.append(receivers.expect(seq))
            message = {"type": "hub.html", "html": HTML, "seq": seq, "sent": time.perf_counter()}
            await layer.group_send(group, message)
        sent_all = time.perf_counter() - started
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), 60)
        burst = time.perf_counter() - started
    finally:
        await receivers.stop(group)
        await layer.flush()
    return {
        "p50_ms": 1000 * statistics.median(per_delivery),
        "p99_ms": 1000 * per_delivery[int(0.99 * (len(per_delivery) - 1))],
        "all_ms": 1000 * statistics.median(all_received),
        "sends_per_s": BURST / sent_all,
        "deliveries_per_s": BURST * size / burst,
    }


async def main(sizes: list[int]) -> None:
    with servers.redis() as redis:
        print(f"redis-server on {redis.url}; {ROUNDS} latency rounds, bursts of {BURST}, ")
        print(f"{len(HTML)}-byte messages, all channels in one process (pid {os.getpid()})\n")
        header = f"{'layer':34} {'N':>5} {'p50 ms':>8} {'p99 ms':>8} {'all ms':>8}"
        print(header + f" {'sends/s':>9} {'deliveries/s':>13}")
        for size in sizes:
            for name, layer_class in LAYERS.items():
                r = await measure(layer_class, redis.url, size)
                print(
                    f"{name:34} {size:>5} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                    f"{r['all_ms']:>8.2f} {r['sends_per_s']:>9.0f} {r['deliveries_per_s']:>13.0f}"
                )


if __name__ == "__main__":
    asyncio.run(main([int(n) for n in sys.argv[1:]] or [100, 500]))
