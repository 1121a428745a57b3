"""Helpers for the intake tests: Twilio's recording callback, waiting for the queue, the bucket."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3

from service.simulate import FakeTwilio
from tests.waiting import eventually


def recording_params(
    twilio: FakeTwilio,
    call_sid: str,
    recording_sid: str,
    status: str = "completed",
    recording_url: str | None = None,
) -> dict[str, str]:
    """The parameters Twilio documents for a recording status callback."""
    return {
        "AccountSid": twilio.account_sid,
        "CallSid": call_sid,
        "RecordingSid": recording_sid,
        "RecordingUrl": recording_url
        or f"https://api.twilio.com/2010-04-01/Accounts/{twilio.account_sid}"
        f"/Recordings/{recording_sid}",
        "RecordingStatus": status,
        "RecordingDuration": "2",
        "RecordingChannels": "1",
        "RecordingStartTime": "Mon, 23 Nov 2026 04:00:00 +0000",
        "RecordingSource": "StartCallRecordingTwiML",
        "RecordingTrack": "both",
        "ErrorCode": "0",
    }


async def send_recording(
    twilio: FakeTwilio, call_sid: str, recording_sid: str, **kwargs: Any
) -> tuple[int, str]:
    return await twilio.post(
        twilio.url("/telephony/twilio/recording"),
        recording_params(twilio, call_sid, recording_sid, **kwargs),
    )


async def settle(db: Any, timeout_s: float = 60.0) -> dict[str, int]:
    """Wait until no job is queued or running; returns the count of jobs by state."""
    states: dict[str, int] = {}

    async def settled() -> bool:
        rows = await db.fetch("SELECT state, count(*) AS n FROM jobs GROUP BY state")
        states.clear()
        states.update({r["state"]: r["n"] for r in rows})
        return not states.get("queued") and not states.get("running")

    try:
        await eventually(settled, what="jobs settle", timeout_s=timeout_s)
    except AssertionError:
        raise AssertionError(f"jobs did not settle: {states}") from None
    return states


def _objects(endpoint: str, bucket: str) -> list[dict[str, Any]]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    versions = client.list_object_versions(Bucket=bucket).get("Versions", [])
    found = []
    for v in versions:
        version = {} if v["VersionId"] in (None, "null") else {"VersionId": v["VersionId"]}
        head = client.head_object(Bucket=bucket, Key=v["Key"], **version)
        found.append({"key": v["Key"], "size": v["Size"], "head": head})
    return found


async def objects(endpoint: str, bucket: str) -> list[dict[str, Any]]:
    """Every object version in the bucket, with its HEAD."""
    return await asyncio.to_thread(_objects, endpoint, bucket)
