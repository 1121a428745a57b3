"""One driver per platform for the parametrised acceptance tests (issue 14 item 4): it plays a
whole call through the platform's stand-in (``callvault simulate``'s FakeTwilio, FakeStringee
and FakePbx) and hands the call's recording over as that platform does.

- Twilio and Stringee keep the recording and announce it (a recording status callback, a
  record eventUrl); callvault fetches it from the test's media fake (tests/twilio_media.py,
  tests/stringee_fake.py). Twilio's copy is deleted once ours is safe; Stringee documents no
  delete, so its copy stays.
- A PBX uploads it (``PUT``, as FakePbx and the Asterisk recipe's upload script send it). On no
  answer or a 5xx the PBX keeps its file (deploy/pbx/asterisk/callvault_upload.py retries, then
  leaves the file for a later run); :meth:`Driver.retry` is that later run, with the recipe's
  own script. 201 and 409 are final: the file goes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from service import auth
from service.platforms.pbx.simulate import FakePbx
from service.platforms.stringee.simulate import FakeStringee
from service.platforms.twilio.simulate import Caller, CallTrace, FakeTwilio
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN
from tests.intake_helpers import send_recording
from tests.stringee_fake import FakeStringee as StringeeMedia
from tests.twilio_media import FakeTwilioMedia, new_recording_sid

PLATFORMS = ("twilio", "stringee", "pbx")
STRINGEE_SIGNING = "stringee-project-signing-secret"
STRINGEE_KEY_SID = "SKdrivers0123456789"
STRINGEE_KEY_SECRET = "drivers-api-key-secret-0123456789ab"
ASTERISK = Path(__file__).resolve().parent.parent / "deploy" / "pbx" / "asterisk"


@dataclass
class Handed:
    """What callvault answered when the platform handed a recording over (0: no answer)."""

    status: int
    answer: Any = None


@dataclass
class Driver:
    platform: str
    http: aiohttp.ClientSession
    base_url: str
    twilio_media: FakeTwilioMedia | None = None  # where Twilio keeps recordings
    stringee_media: StringeeMedia | None = None  # and Stringee (for tests that store them)
    token: str = ""
    folder: Path | None = None  # where a PBX keeps the recordings it could not upload yet
    recording_ids: dict[str, str] = field(default_factory=dict)  # call id -> platform's
    kept: dict[str, Path] = field(default_factory=dict)  # a PBX's files, by call id
    sent: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # call id -> where, what

    @property
    def pushes(self) -> bool:
        """The platform uploads the recording (a PBX) rather than callvault fetching it."""
        return self.platform == "pbx"

    @property
    def keeps_copy(self) -> bool:
        """The platform's copy stays once ours is stored (Stringee cannot be asked to delete)."""
        return self.platform == "stringee"

    @property
    def copy_event(self) -> str | None:
        """What the ledger says of the platform's copy once ours is stored."""
        return {"twilio": "platform_copy_deleted", "stringee": "platform_copy_retained"}.get(
            self.platform
        )

    async def call(self, caller: str, called: str, behaviour: str) -> CallTrace:
        """The call as the platform carries it, up to its end; the trace says what was heard."""
        said = Caller.parse(behaviour)
        if self.platform == "twilio":
            twilio = FakeTwilio(
                self.http, self.base_url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN
            )
            return await twilio.place_call(caller, called, said)
        if self.platform == "stringee":
            stringee = FakeStringee(self.http, self.base_url, signing_secret=STRINGEE_SIGNING)
            return await stringee.place_call(caller, called, said)
        return await FakePbx(self.http, self.base_url, token=self.token).place_call(
            caller, called, said
        )

    async def hand_over(self, trace: CallTrace, body: bytes) -> Handed:
        """The platform's recording of the call (made whatever callvault said: a replay, or a
        recording started outside callvault) is announced or uploaded."""
        cid = trace.call_sid
        if self.platform == "twilio":
            assert self.twilio_media is not None
            rec_sid = self.recording_ids[cid] = new_recording_sid()
            self.twilio_media.add(rec_sid, body)
            return await self.repeat(trace)
        if self.platform == "stringee":
            assert self.stringee_media is not None
            self.recording_ids[cid] = cid  # Stringee's recordId is the call's id
            self.stringee_media.add(cid, body, content_type="audio/wav")
            # the record eventUrl callvault gave, or (for a call it did not record) the one it
            # gives the deployment's project
            url = trace.recording_callback or (
                self.base_url + "/telephony/stringee/recording?tenant=default"
            )
            self.sent[cid] = (url, body)
            return await self.repeat(trace)
        assert self.folder is not None
        self.sent[cid] = ("", body)
        path = self.folder / f"{cid}.wav"
        path.write_bytes(body)
        handed = await self.repeat(trace)
        if handed.status in (201, 409):
            path.unlink()
        else:
            self.kept[cid] = path
        return handed

    async def repeat(self, trace: CallTrace) -> Handed:
        """The announcement or upload of :meth:`hand_over` sent (again: a duplicated webhook, a
        PBX uploading the same file twice)."""
        cid = trace.call_sid
        if self.platform == "twilio":
            twilio = FakeTwilio(
                self.http, self.base_url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN
            )
            return Handed((await send_recording(twilio, cid, self.recording_ids[cid]))[0])
        url, body = self.sent[cid]
        if self.platform == "stringee":
            assert self.stringee_media is not None
            status, _ = await self.stringee_media.post(
                self.http, url, {"call_id": cid, "recordId": cid}
            )
            return Handed(status)
        try:
            status, answer = await FakePbx(self.http, self.base_url, token=self.token).upload(
                cid, body
            )
        except aiohttp.ClientError:  # the server went away under the upload
            status, answer = 0, None
        return Handed(status, answer)

    async def retry(self, base_url: str) -> list[int]:
        """What the platform does again later: a PBX runs the recipe's upload script on each
        file it still keeps (to ``base_url``: the load balancer's replica); the exit codes.
        Twilio and Stringee send nothing again: callvault's own job retries."""
        codes = []
        for cid, path in list(self.kept.items()):
            code, err = await run_upload_script(base_url, self.token, path, cid)
            codes.append(code)
            if not path.exists():
                assert code == 0 and ("201" in err or "409" in err), err
                del self.kept[cid]
        return codes

    def fetched(self, trace: CallTrace) -> int:
        """How often callvault downloaded the call's recording from the platform."""
        if self.platform == "pbx":
            return 0
        rid = self.recording_ids[trace.call_sid]
        media = self.twilio_media if self.platform == "twilio" else self.stringee_media
        assert media is not None
        return media.gets[rid]

    def holds(self, trace: CallTrace) -> bool:
        """The platform (or the PBX's disk) still holds the call's recording."""
        if self.platform == "pbx":
            return trace.call_sid in self.kept
        rid = self.recording_ids[trace.call_sid]
        media = self.twilio_media if self.platform == "twilio" else self.stringee_media
        assert media is not None
        return rid in media.recordings


async def run_upload_script(
    base_url: str, token: str, path: Path, call_id: str, retries: int = 2
) -> tuple[int, str]:
    """deploy/pbx/asterisk/callvault_upload.py as MixMonitor runs it; exit code and stderr."""
    token_file = path.with_name(path.name + ".token")
    token_file.write_text(token + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env.update(
        CALLVAULT_AGI_CONFIG=str(path.with_name("absent.ini")),
        CALLVAULT_URL=base_url,
        CALLVAULT_TOKEN_FILE=str(token_file),
        CALLVAULT_RETRIES=str(retries),
        CALLVAULT_BACKOFF_S="0.05",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ASTERISK / "callvault_upload.py"),
        call_id,
        str(path),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    return await proc.wait(), err.decode()


@asynccontextmanager
async def stringee_media() -> AsyncIterator[StringeeMedia]:
    """The Stringee project's REST API (recordings), on loopback."""
    media = StringeeMedia(STRINGEE_KEY_SID, STRINGEE_KEY_SECRET, STRINGEE_SIGNING)
    await media.start()
    try:
        yield media
    finally:
        await media.close()
    assert media.cdn_credentials == 0


def stringee_env(media: StringeeMedia) -> dict[str, str]:
    """The deployment's Stringee project, as an operator configures ``callvault serve``."""
    return {
        "CALLVAULT_STRINGEE_SIGNING_SECRET": STRINGEE_SIGNING,
        "CALLVAULT_STRINGEE_API_KEY_SID": STRINGEE_KEY_SID,
        "CALLVAULT_STRINGEE_API_KEY_SECRET": STRINGEE_KEY_SECRET,
        "CALLVAULT_STRINGEE_API_URLS": media.base_url,
    }


async def driver(
    platform: str,
    http: aiohttp.ClientSession,
    base_url: str,
    db: asyncpg.Connection[Any],
    folder: Path,
    twilio_media: FakeTwilioMedia | None = None,
    stringee: StringeeMedia | None = None,
) -> Driver:
    """The platform's driver, calling ``base_url``; a PBX gets a ``telephony`` token of the
    tenant default (``db`` is the superuser's connection, tenant default)."""
    token = ""
    if platform == "pbx":
        token, _ = await auth.create_token(db, "asterisk-1", "telephony", "test")
    folder.mkdir(parents=True, exist_ok=True)
    return Driver(platform, http, base_url, twilio_media, stringee, token, folder)
