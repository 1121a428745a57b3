"""A platform said a recording changed state: remember it once, and queue the work.

Answers in one short transaction: the (recording, status) pair is inserted once (retries and
duplicates stop there), a ``completed`` recording gets a ``recording`` job, and ``absent`` or
``failed`` ones are only written to the call's ledger: there is nothing to fetch or retry.
"""

from __future__ import annotations

from service import jobs, ledger
from service.db import Conn, queries
from service.ledger import NewEvent

Q = queries.load("service.intake")
JOB_KIND = "recording"


async def recording_callback(
    conn: Conn,
    *,
    platform: str,
    recording_sid: str,
    call_sid: str,
    status: str,
    duration_s: int | None,
    max_attempts: int,
    platform_account: str | None = None,
) -> bool:
    """Returns False for a duplicate (nothing done). ``platform_account``: the account the
    callback came through, whose credentials fetch and delete the media."""
    async with conn.transaction():
        fresh = await conn.fetchval(Q["insert_callback"], platform, recording_sid, status, call_sid)
        if fresh is None:
            return False
        if status == "completed":
            await jobs.enqueue(
                conn,
                JOB_KIND,
                {
                    "platform": platform,
                    "recording_sid": recording_sid,
                    "call_sid": call_sid,
                    "duration_s": duration_s,
                    "platform_account": platform_account,
                },
                dedupe_key=f"{JOB_KIND}:{platform}:{recording_sid}",
                max_attempts=max_attempts,
            )
            return True
        call = await conn.fetchrow(Q["call_by_external_id"], platform, call_sid)
        if call is not None:
            await ledger.append(
                conn,
                call["id"],
                [
                    NewEvent(
                        f"recording_{status.replace('-', '_')}",
                        {"recording_sid": recording_sid},
                        dedupe_key=f"recording:{recording_sid}:{status}",
                    )
                ],
            )
        return True
