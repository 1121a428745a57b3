"""Helpers for the intake tests: Twilio's recording callback, waiting for the queue, the bucket."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3

from service.platforms.twilio.simulate import FakeTwilio
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


def _get(endpoint: str, bucket: str, key: str) -> bytes:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


async def get_object(endpoint: str, bucket: str, key: str) -> bytes:
    """An object's bytes as stored (sealed, for a recording kept since issue 17)."""
    return await asyncio.to_thread(_get, endpoint, bucket, key)


async def open_sealed(db: Any, recording_id: Any, sealed_bytes: bytes) -> bytes:
    """Decrypt a sealed recording with what callvault holds: its wrapped key row, unwrapped
    with the tenant's key from the test secret. Raises if the key is gone or does not fit."""
    import tempfile
    from pathlib import Path

    from service.storage import recording_keys, sealed
    from tests.conftest import SECRET_KEY

    keyset = await recording_keys.open_key(db, recording_keys.vault_of(SECRET_KEY), recording_id)
    if keyset is None:
        raise LookupError(f"recording {recording_id} has no data key")
    with tempfile.TemporaryDirectory() as folder:
        src, dst = Path(folder) / "sealed", Path(folder) / "plain"
        src.write_bytes(sealed_bytes)
        sealed.decrypt_file(keyset, src, dst, sealed.associated_data(recording_id))
        return dst.read_bytes()
