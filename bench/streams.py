"""Commit-to-delivery latency of the event streams under write load.

100 subscribers follow one project while writers append 1,000 events a
second through `POST /api/v1/ingest/` (batches of 50, 20 a second, on
schedule). Each subscriber notes, for every event, the time it arrived
minus its `recorded_at` (set as the writing transaction ends). Two set-ups:

- one daphne process, in-memory channel layer;
- two daphne processes behind one project, a private redis-server, half
  of the subscribers and of the writes on each.

Each set-up runs twice: with one frame per event (the contract's default,
100,000 frames a second in all), then with `?batch=1` (one frame per read
of the log). Each run prints the write rate reached and p50/p99.

The clients share the 2 cores with the servers, so they are kept light:
aiohttp's compiled frame reader and a regular expression for the stamps.

PostgreSQL only (a database of its own, created next to the one
DATABASE_URL names and dropped afterwards):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/swarmsite_dev \\
        python -m bench.streams [--seconds 10] [--subscribers 100]

Goal, in both modes: p99 under 100 ms in-memory, under 250 ms with Redis
and two processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

RATE = 1000
BATCH = 50
CLIENT_PROCESSES = 4
WRITERS = 4
RECORDED_AT = re.compile(r'"recorded_at":"([^"]+)"')
WARMUP = 2.0
GOALS = {"in-memory, 1 process": 0.100, "Redis, 2 processes": 0.250}


def _subscribe(urls: list[str], key: str, seconds: float, out) -> None:
    """One client process: its share of the subscribers, round robin."""
    import aiohttp

    async def follow(
        session: aiohttp.ClientSession, url: str, start: float, stop: float
    ) -> tuple[list, int]:
        latencies, count = [], 0
        headers = {"Authorization": f"Bearer {key}"}
        last_stamp, recorded = "", 0.0
        async with session.ws_connect(url, headers=headers, max_msg_size=0) as ws:
            # One deadline for the loop, not a task per frame, and no
            # json.loads: see the module's docstring.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(stop - time.time()):
                    async for message in ws:
                        now = time.time()
                        assert message.type is aiohttp.WSMsgType.TEXT, message
                        stamps = RECORDED_AT.findall(message.data)
                        count += len(stamps)
                        for stamp in stamps:
                            if stamp != last_stamp:
                                # A transaction's events share one stamp.
                                last_stamp = stamp
                                recorded = datetime.fromisoformat(stamp).timestamp()
                            if recorded >= start:
                                latencies.append(now - recorded)
        return latencies, count

    async def main() -> None:
        start = time.time() + WARMUP
        stop = start + seconds
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(
                *(follow(session, url, start, stop) for url in urls)
            )
        out.put(
            (
                [lat for lats, _ in results for lat in lats],
                [count for _, count in results],
            )
        )

    asyncio.run(main())


def _write(ports: list[int], key: str, stop: threading.Event, sent: list) -> None:
    """Post a batch every BATCH / RATE seconds, on schedule.

    Several threads take the slots in turn, so a slow request delays no
    later slot: the rate asked is the rate written while the server keeps up.
    """
    from tests.e2e.stack import Http

    interval = BATCH / RATE
    began = time.monotonic()
    slots = itertools.count()
    lock = threading.Lock()

    def post(api) -> None:
        while not stop.is_set():
            with lock:
                slot = next(slots)
            time.sleep(max(0.0, began + slot * interval - time.monotonic()))
            items = [{"type": "event", "data": {"kind": "bench"}}] * BATCH
            status, body = api.request("POST", "/api/v1/ingest/", {"items": items})
            assert status == 200, (status, body)
            with lock:
                sent[0] += BATCH

    with ThreadPoolExecutor(WRITERS) as pool:
        posting = [
            pool.submit(post, Http(ports[i % len(ports)], key)) for i in range(WRITERS)
        ]
        try:
            for future in posting:
                future.result()
        finally:
            # One writer failing stops the others too.
            stop.set()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(
    name: str, servers, key: str, subscribers: int, seconds: float, batch: bool
) -> bool:
    # No `after`: subscribers start at the head of the log.
    query = "?kind=bench" + ("&batch=1" if batch else "")
    urls = [f"{servers[i % len(servers)].ws_url}{query}" for i in range(subscribers)]
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    clients = [
        context.Process(
            target=_subscribe,
            args=(urls[i::CLIENT_PROCESSES], key, seconds, out),
        )
        for i in range(CLIENT_PROCESSES)
    ]
    for client in clients:
        client.start()
    time.sleep(1.0)
    stop, sent = threading.Event(), [0]
    writer = ThreadPoolExecutor(1)
    writing = writer.submit(_write, [s.port for s in servers], key, stop, sent)
    began = time.monotonic()
    latencies, counts = [], []
    for _ in clients:
        lats, cnts = out.get(timeout=seconds + 120)
        latencies += lats
        counts += cnts
    stop.set()
    writing.result()
    writer.shutdown()
    rate = sent[0] / (time.monotonic() - began)
    for client in clients:
        client.join()
    mode = "batched frames" if batch else "one frame per event"
    goal = GOALS[name]
    if not latencies:
        print(f"{name}, {mode}: nothing delivered", flush=True)
        return False
    p50, p99 = _percentile(latencies, 0.50), _percentile(latencies, 0.99)
    verdict = "met" if p99 < goal else "missed"
    print(
        f"{name}, {mode}: {subscribers} subscribers, {rate:.0f} events/s "
        f"written of {RATE} asked ({sent[0]} in all), {len(latencies)} "
        f"deliveries measured; commit-to-delivery p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms (goal p99 < {goal * 1000:.0f} ms: {verdict}); "
        f"slowest subscriber got {min(counts)} events",
        flush=True,
    )
    return p99 < goal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--subscribers", type=int, default=100)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("bench.streams needs DATABASE_URL=postgres://...; skipped.")
        return 0
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "swarmsite.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    from tests.e2e.stack import Daphne, Redis, base_env, fresh_database, prepare

    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        tmp_path = Path(tmp)
        with fresh_database(tmp_path) as database_url:
            env = base_env(tmp_path, database_url)
            key = prepare(env)
            server = Daphne(env, tmp_path / "memory.log")
            try:
                for batch in (False, True):
                    run(
                        "in-memory, 1 process",
                        [server],
                        key,
                        args.subscribers,
                        args.seconds,
                        batch,
                    )
            finally:
                server.stop()
        redis = Redis(tmp_path)
        try:
            with fresh_database(tmp_path) as database_url:
                env = base_env(tmp_path, database_url, REDIS_URL=redis.url)
                key = prepare(env)
                servers = [Daphne(env, tmp_path / f"redis-{i}.log") for i in range(2)]
                try:
                    for batch in (False, True):
                        run(
                            "Redis, 2 processes",
                            servers,
                            key,
                            args.subscribers,
                            args.seconds,
                            batch,
                        )
                finally:
                    for server in servers:
                        server.stop()
        finally:
            redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
