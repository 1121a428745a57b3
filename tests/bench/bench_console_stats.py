"""The console's aggregates on a million calls (and half a million recordings) of one tenant,
beside 200,000 of another: each /api/stats query's time and its plan (EXPLAIN ANALYZE), run
as the service's role under row-level security, as the routes run them.

``python -m tests.bench.bench_console_stats``"""

from __future__ import annotations

import asyncio
import time

from retention import clock
from service.console.api import Q
from service.db import tenancy
from service.db.pool import create_pool
from tests.bench.harness import postgres

CALLS = 1_000_000
OTHER = 200_000
ZONE = "Asia/Ho_Chi_Minh"
SEED = """
WITH c AS (
  INSERT INTO calls (tenant_id, platform, external_id, policy, outcome, outcome_at, started_at)
  SELECT $2, 'twilio', $2 || '-' || g,
         jsonb_build_object('queue', 'q' || (g % 12)),
         (ARRAY['consented','refused','hung_up_during_notice','no_input','not_asked'])[1 + g % 5],
         now(), now() - make_interval(secs => g::float8 / $1 * 90 * 86400)
  FROM generate_series(1, $1) g RETURNING id, started_at)
INSERT INTO recordings (tenant_id, call_id, platform, external_id, state, object_key, sha256,
                        size_bytes, stored_at, retain_until, purged_at)
SELECT $2, id, 'twilio', 'RE' || id, CASE WHEN random() < 0.2 THEN 'purged' ELSE 'stored' END,
       'k', 'x', 1, started_at, started_at + interval '60 days',
       CASE WHEN random() < 0.2 THEN started_at + interval '60 days' END
FROM c WHERE random() < 0.5
"""


async def run(url: str) -> None:
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        with tenancy.as_tenant(tenancy.ALL):
            async with pool.acquire() as conn:
                await conn.execute("INSERT INTO tenants (id, name) VALUES ('beta', 'Beta')")
                t = time.perf_counter()
                await conn.execute(SEED, CALLS, "default")
                await conn.execute(SEED, OTHER, "beta")
                # purged rows are not 'stored' any more
                await conn.execute("UPDATE recordings SET state = 'stored' WHERE state = 'purged'"
                                   " AND purged_at IS NULL")  # fmt: skip
                print(f"seeded in {time.perf_counter() - t:.0f} s", flush=True)
                await conn.execute("VACUUM ANALYZE calls")
                await conn.execute("VACUUM ANALYZE recordings")
        with tenancy.as_tenant(tenancy.DEFAULT):
            async with pool.acquire() as conn:
                w = await conn.fetchrow(Q["window"], ZONE, 30)
                ahead = w["until"] + (w["until"] - w["since"])
                stopped = [s.value for s in clock.CLOCK_STOPPED]
                for name, args in [
                    ("consent_per_day", (w["since"], w["until"], ZONE)),
                    ("consent_per_queue", (w["since"], w["until"])),
                    ("stored_per_day", (w["since"], w["until"], ZONE)),
                    ("purged_per_day", (w["since"], w["until"], ZONE)),
                    ("due_per_day", (w["db_now"], ahead, ZONE)),
                    ("requests_by_status", (stopped,)),
                ]:
                    t = time.perf_counter()
                    rows = await conn.fetch(Q[name], *args)
                    took = time.perf_counter() - t
                    plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + Q[name], *args)
                    print(f"== {name}: {len(rows)} rows in {took * 1000:.0f} ms")
                    print("\n".join(r[0] for r in plan), flush=True)
    finally:
        await pool.close()


if __name__ == "__main__":
    with postgres() as database_url:
        asyncio.run(run(database_url))
