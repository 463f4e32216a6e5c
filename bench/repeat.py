"""One GET asked again and again at rising concurrency: latency of a single request kind without a mix.

    .venv/bin/python -m bench.repeat PORT PATH [N]
    .venv/bin/python -m bench.repeat 8080 "/api/catalogue/offerings?q=kurssi" 400   # against `make run`

Prints requests/s and p50/p99 at c = 1, 2, 4, 8 (after 50 warm-up requests), using the bench's raw
keep-alive client (`bench.latency.fetch_all`).
"""

from __future__ import annotations

import asyncio
import sys

from bench.latency import Ask, fetch_all


async def main(port: int, path: str, n: int) -> None:
    asks = [Ask("repeat", path)] * n
    await fetch_all(port, asks[:50], 1)
    for concurrency in (1, 2, 4, 8):
        answers, wall_s = await fetch_all(port, asks, concurrency)
        latencies = sorted(answer.latency_ms for answer in answers)
        print(
            f"c={concurrency} requests/s={n / wall_s:.0f} p50={latencies[n // 2]:.2f} ms "
            f"p99={latencies[min(n - 1, int(n * 0.99))]:.2f} ms status={answers[0].status} bytes={len(answers[0].body)}"
        )


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 400))
