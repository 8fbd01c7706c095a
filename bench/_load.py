"""Closed-loop HTTP load: ``--concurrency`` clients each send the same POST again and again for
``--seconds``, on kept-alive connections opened (and warmed) before the clock starts. Prints one
JSON line: ``{"done", "errors", "seconds", "latencies_ms"}``.

A separate process and aiohttp (cheaper per request than httpx), so that on a small machine the
load generator takes as little CPU as it can from the servers it measures.

    python bench/_load.py URL --body '{"model": ...}' [--header 'Authorization: Bearer k']
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


async def run(url: str, body: dict, headers: dict, concurrency: int, seconds: float) -> dict:
    done = errors = 0
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=60)
    ) as http:

        async def one() -> bool:
            start = time.perf_counter()
            try:
                async with http.post(url, json=body) as r:
                    await r.read()
                    ok = r.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append((time.perf_counter() - start) * 1e3)
            return ok

        await asyncio.gather(*(one() for _ in range(concurrency)))  # open and warm the connections
        latencies.clear()
        stop = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done, errors
            while time.perf_counter() < stop:
                if await one():
                    done += 1
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"done": done, "errors": errors, "seconds": wall, "latencies_ms": latencies}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--body", required=True, help="the JSON request body")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    print(json.dumps(asyncio.run(run(args.url, json.loads(args.body), headers, args.concurrency, args.seconds))))


if __name__ == "__main__":
    main()
