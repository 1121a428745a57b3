"""Purge of 20,000 expired recordings (rows, objects, ledger events, audit) beside the floor:
plain ``delete_objects`` of 20,000 keys of the same size in the same S3 server."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import boto3

from retention.purge import purge_once
from service.db import tenancy
from service.db.pool import create_pool
from service.storage.s3 import S3Store
from tests.bench.harness import make_bucket, moto, postgres, report

N = 20_000
BODY = b"RIFF" + bytes(1020)


def put_many(endpoint: str, bucket: str, keys: list[str]) -> None:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=BODY), keys))


def delete_plain(endpoint: str, bucket: str, keys: list[str]) -> None:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for i in range(0, len(keys), 1000):
        client.delete_objects(
            Bucket=bucket,
            Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
        )


async def run(url: str, endpoint: str) -> None:
    ours_bucket, base_bucket = make_bucket(endpoint), make_bucket(endpoint)
    pool = await create_pool(url, min_size=1, max_size=4)
    try:
        with tenancy.as_tenant(tenancy.DEFAULT):
            conn = await pool.acquire()
            try:
                rows = await conn.fetch(
                    "WITH c AS (INSERT INTO calls"
                    " (platform, external_id, policy, outcome, outcome_at)"
                    " SELECT 'twilio', 'CA' || g, '{}', 'consented', now()"
                    " FROM generate_series(1, $1) g RETURNING id)"
                    " INSERT INTO recordings (call_id, platform, external_id, state, object_key,"
                    " sha256, size_bytes, stored_at, retain_until)"
                    " SELECT id, 'twilio', 'RE' || id, 'stored',"
                    " 'recordings/' || id || '.wav', 'x',"
                    " $2, now(), now() - interval '1 second' FROM c RETURNING object_key",
                    N,
                    len(BODY),
                )
            finally:
                await pool.release(conn)
        keys = [r["object_key"] for r in rows]
        base_keys = [f"baseline/{i}.wav" for i in range(N)]
        await asyncio.to_thread(put_many, endpoint, ours_bucket, keys)
        await asyncio.to_thread(put_many, endpoint, base_bucket, base_keys)
        store = S3Store(ours_bucket, endpoint_url=endpoint, region="us-east-1")
        t = time.perf_counter()
        result = await purge_once(pool, store)
        ours_s = time.perf_counter() - t
        await store.close()
        assert result.purged == N and not result.failed, result
        t = time.perf_counter()
        await asyncio.to_thread(delete_plain, endpoint, base_bucket, base_keys)
        base_s = time.perf_counter() - t
        left = (
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            .list_objects_v2(Bucket=ours_bucket)
            .get("KeyCount")
        )
        assert left == 0, left
    finally:
        await pool.close()
    ratio = base_s / ours_s
    report(
        "purge",
        f"purge: {N:,} recordings in {ours_s:.1f} s ({N / ours_s:,.0f}/s) vs plain "
        f"delete_objects {base_s:.1f} s ({N / base_s:,.0f}/s) = {ratio:.2f} (goal >= 0.7)",
        seconds=ours_s,
        baseline_seconds=base_s,
        ratio=ratio,
    )


if __name__ == "__main__":
    with postgres() as database_url, moto() as s3:
        asyncio.run(run(database_url, s3))
