"""Voice webhook with 100 tenants and 10,000 numbers against the same webhook in a deployment
without tenants (issue 13, Performance: goal >= 0.9). Two ``callvault serve`` processes on two
databases of one PostgreSQL server, loaded alternately (A B A B ...) at 32 connections: the
single-tenant one takes the configured account's calls, the other spreads its calls over the
100 tenants' own Twilio accounts (each with its own auth token) and their numbers, so every
request goes through the tenant lookup, the tenant's policy and row-level security."""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
from twilio.request_validator import RequestValidator

from service.db.migrations import migrate
from service.db.pool import connect
from service.db.roles import ensure_service_role
from tests.bench.bench_voice_webhook import CONNECTIONS, ROUNDS, SECONDS, signed_requests
from tests.bench.harness import SEEDING_TENANT, Load, load, postgres, report, serve, serve_env

TENANTS = 100
NUMBERS = 10_000
GOAL = 0.9


def _database(url: str, name: str) -> str:
    head, _, query = url.partition("?")
    return head.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


def _tenant(i: int) -> str:
    return f"client-{i:03d}"


def _account(i: int) -> str:
    return "AC" + f"{i:032x}"


def _number(i: int) -> str:
    return f"+84287{i:07d}"  # 10,000 numbers: +842870000000 ...


async def seed(url: str) -> dict[str, str]:
    """A migrated database holding 100 tenants (one queue each), their 100 Twilio accounts and
    10,000 numbers, written with COPY; returns the tokens' environment variables."""
    admin = await asyncpg.connect(url.replace("&" + SEEDING_TENANT, ""))
    try:
        await admin.execute("CREATE DATABASE bench_tenants")
    finally:
        await admin.close()
    tenants_url = _database(url.replace("&" + SEEDING_TENANT, ""), "bench_tenants")
    conn = await connect(tenants_url)
    try:
        await migrate(conn)
        await ensure_service_role(conn)
    finally:
        await conn.close()
    env: dict[str, str] = {}
    conn = await asyncpg.connect(tenants_url)  # no jsonb codec: COPY takes the JSON text
    try:
        policy = json.dumps({"consent_mode": "implied", "retention": 180 * 86400})
        await conn.copy_records_to_table(
            "tenants",
            records=[(_tenant(i), f"Client {i}", policy) for i in range(TENANTS)],
            columns=["id", "name", "policy"],
        )
        queue = json.dumps({"language": "en-US"})
        await conn.copy_records_to_table(
            "tenant_queues",
            records=[(_tenant(i), "sales", queue) for i in range(TENANTS)],
            columns=["tenant_id", "name", "policy"],
        )
        accounts = []
        for i in range(TENANTS):
            name = f"BENCH_TENANT_TOKEN_{i:03d}"
            env[name] = secrets.token_hex(16)
            accounts.append(
                ("twilio", _account(i), _tenant(i), json.dumps({"auth_token_env": name}))
            )
        await conn.copy_records_to_table(
            "tenant_accounts",
            records=accounts,
            columns=["platform", "account_id", "tenant_id", "secrets"],
        )
        await conn.copy_records_to_table(
            "tenant_numbers",
            records=[
                (_number(n), _tenant(n % TENANTS), "sales" if n % 2 else None, "{}")
                for n in range(NUMBERS)
            ],
            columns=["number", "tenant_id", "queue", "policy"],
        )
    finally:
        await conn.close()
    return {"url": tenants_url, **env}


def tenant_requests(base: str, tokens: dict[str, str], n: int) -> list[tuple[dict[str, str], str]]:
    url = base + "/telephony/twilio/voice"
    validators = [RequestValidator(tokens[f"BENCH_TENANT_TOKEN_{i:03d}"]) for i in range(TENANTS)]
    out = []
    for k in range(n):
        number = (k * 7919) % NUMBERS  # every number in turn, tenants interleaved
        tenant = number % TENANTS
        params = {
            "AccountSid": _account(tenant),
            "CallSid": "CA" + secrets.token_hex(16),
            "From": f"+8490{k % 10_000_000:07d}",
            "To": _number(number),
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        out.append((params, validators[tenant].compute_signature(url, params)))
    return out


def _poster(
    base_url: str, pool: list[tuple[dict[str, str], str]]
) -> Callable[[aiohttp.ClientSession, int], Awaitable[int]]:
    cursor = iter(range(10**9))

    async def post(session: aiohttp.ClientSession, _: int) -> int:
        params, sig = pool[next(cursor) % len(pool)]
        async with session.post(
            base_url + "/telephony/twilio/voice", data=params, headers={"X-Twilio-Signature": sig}
        ) as resp:
            await resp.read()
            return resp.status

    return post


async def run(url: str) -> None:
    seeded = await seed(url)
    tenants_url = seeded.pop("url")
    single_env = serve_env(
        Path(tempfile.mkdtemp(prefix="bench-single-")), url, CALLVAULT_WORKERS="0"
    )
    multi_env = serve_env(
        Path(tempfile.mkdtemp(prefix="bench-tenants-")),
        tenants_url,
        CALLVAULT_WORKERS="0",
        **seeded,
    )
    async with serve(single_env) as (single_url, _), serve(multi_env) as (multi_url, _):
        single = _poster(single_url, signed_requests(single_env["CALLVAULT_PUBLIC_URL"], 60_000))
        multi = _poster(
            multi_url, tenant_requests(multi_env["CALLVAULT_PUBLIC_URL"], seeded, 60_000)
        )
        await load(single, connections=CONNECTIONS, seconds=1)  # warm up both
        await load(multi, connections=CONNECTIONS, seconds=1)
        ones: list[Load] = []
        manys: list[Load] = []
        for _ in range(ROUNDS):  # A B A B ...
            ones.append(await load(single, connections=CONNECTIONS, seconds=SECONDS))
            manys.append(await load(multi, connections=CONNECTIONS, seconds=SECONDS))
    rps = sum(r.requests for r in manys) / sum(r.seconds for r in manys)
    single_rps = sum(r.requests for r in ones) / sum(r.seconds for r in ones)
    p99, single_p99 = max(r.p99_ms for r in manys), max(r.p99_ms for r in ones)
    errors = sum(r.errors for r in manys) + sum(r.errors for r in ones)
    ratio = rps / single_rps
    report(
        "tenant_voice_webhook",
        f"voice webhook, {TENANTS} tenants / {NUMBERS} numbers: {rps:.0f} req/s vs single "
        f"tenant {single_rps:.0f} req/s = {ratio:.2f} (goal >= {GOAL}); p99 {p99:.1f} ms vs "
        f"{single_p99:.1f} ms at {CONNECTIONS} connections; errors {errors}",
        rps=rps,
        single_tenant_rps=single_rps,
        ratio=ratio,
        p99_ms=p99,
        single_tenant_p99_ms=single_p99,
        errors=errors,
        goal_ratio=GOAL,
    )


if __name__ == "__main__":
    with postgres() as database_url:
        asyncio.run(run(database_url))
