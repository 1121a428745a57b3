"""A stand-in for a PBX's side of a call, for ``callvault simulate --platform pbx`` and ``callvault
demo --platform pbx``: it speaks callvault's PBX API as the recipes in ``deploy/pbx/`` do, with a
tenant's ``telephony`` token. ``POST /telephony/pbx/calls`` at call start; the notice it is
answered is fetched, checked against its SHA-256 (a notice that does not match is not played, so
nothing is recorded) and decoded as audio; the caller stays (implied mode) or presses the keys of
the simulated behaviour (explicit mode, ``null`` for silence, asked again as callvault says);
``record: true`` is where the PBX would start its recorder; ``/ended`` closes the call. The
recording itself is uploaded only by :func:`upload` (the demo has audio to send; ``simulate``
has none, as for Twilio and Stringee).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any

import aiohttp
from yarl import URL

from service.personal.numbers import mask_phone
from service.platforms.twilio.simulate import Caller, CallTrace, fetch_audio

CALLS_PATH = "/telephony/pbx/calls"


class FakePbx:
    def __init__(self, session: aiohttp.ClientSession, public_url: str, *, token: str) -> None:
        self.session = session
        self.public_url = public_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}

    def url(self, call_id: str, step: str = "") -> str:
        return f"{self.public_url}{CALLS_PATH}" + (f"/{call_id}/{step}" if step else "")

    async def post(self, url: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with self.session.post(url, json=body, headers=self.headers) as resp:
            text = await resp.text()
            return resp.status, (await resp.json() if resp.content_type.endswith("json") else text)

    async def place_call(
        self,
        caller: str,
        called: str,
        behaviour: Caller,
        *,
        queue: str | None = None,
        max_steps: int = 10,
    ) -> CallTrace:
        # an Asterisk UNIQUEID: the epoch seconds and a sequence number
        call_id = f"{int(time.time())}.{secrets.randbelow(10**6)}"
        trace = CallTrace(call_id, hang_up_on_notice=behaviour.hang_up_during_notice)
        trace.steps.append(f"call {call_id} from {mask_phone(caller)} to {called}")
        body: dict[str, Any] = {"call_id": call_id, "from": caller, "to": called}
        if queue:
            body["queue"] = queue
        status, answer = await self.post(self.url(call_id), body)
        trace.steps.append(f"-> POST {CALLS_PATH}: HTTP {status}")
        if status != 200:
            trace.errors.append(f"call start: HTTP {status}: {str(answer)[:200]}")
            return trace
        during_notice = False
        if answer["action"] == "notice":
            during_notice = await self._consent(call_id, answer, behaviour, trace, max_steps)
        else:
            trace.steps.append("<- skip: the call goes on unrecorded, nothing is asked")
        ended = {"during_notice": during_notice, "duration_s": 15}
        status, said = await self.post(self.url(call_id, "ended"), ended)
        trace.steps.append(f"-> POST {CALLS_PATH}/{call_id}/ended: HTTP {status}")
        if status != 200:
            trace.errors.append(f"call end: HTTP {status}: {str(said)[:200]}")
        return trace

    async def _consent(
        self,
        call_id: str,
        answer: dict[str, Any],
        behaviour: Caller,
        trace: CallTrace,
        max_steps: int,
    ) -> bool:
        """Play the notice and ask; True if the caller hung up during the notice."""
        notice = answer["notice"]
        if not notice.get("url"):
            trace.errors.append("the notice has no audio: the PBX cannot play it")
            return False
        played = await fetch_audio(self.session, notice["url"])
        if played.sha256 != notice["sha256"]:
            trace.errors.append("the notice does not match its SHA-256: not played")
            return False
        trace.played.append(played)
        trace.steps.append(
            f"<- notice {URL(played.url).path}: {played.duration_ms / 1000:.1f} s, "
            f"sha256 {played.sha256[:12]} (as callvault said)"
        )
        if behaviour.hang_up_during_notice:
            trace.hung_up = True
            trace.steps.append("   caller hangs up during the notice")
            return True
        keys = list(behaviour.keys)
        said: dict[str, Any] = {"stayed": True}
        attempt = 1
        for _ in range(max_steps):
            if answer["mode"] == "explicit":
                trace.gathers += 1
                digit = keys.pop(0) if keys else None
                trace.steps.append(
                    f"   caller presses {digit}" if digit else "   caller presses nothing"
                )
                said = {"digit": digit, "attempt": attempt}
            else:
                trace.steps.append("   caller stays on the line")
            status, reply = await self.post(self.url(call_id, "consent"), said)
            trace.steps.append(f"-> POST {CALLS_PATH}/{call_id}/consent: HTTP {status}")
            if status != 200:
                trace.errors.append(f"consent: HTTP {status}: {str(reply)[:200]}")
                return False
            if not reply.get("ask_again"):
                if reply["record"]:
                    trace.recording_callback = self.url(call_id, "recording")
                    trace.steps.append("<- record: the PBX starts its recorder")
                else:
                    trace.steps.append(f"<- {reply['outcome']}: the call goes on unrecorded")
                return False
            attempt = int(reply["attempt"])
            trace.steps.append("<- ask again: the notice plays once more")
        trace.errors.append(f"still asked after {max_steps} answers")
        return False

    async def upload(self, call_id: str, audio: bytes) -> tuple[int, Any]:
        """The recording as a MixMonitor post-command uploads it: a ``PUT`` of the WAV, with its
        ``Digest`` so that callvault checks what arrived."""
        digest = base64.b64encode(hashlib.sha256(audio).digest()).decode()
        headers = {**self.headers, "Content-Type": "audio/wav", "Digest": f"sha-256={digest}"}
        async with self.session.put(
            self.url(call_id, "recording"), data=audio, headers=headers
        ) as resp:
            text = await resp.text()
            return resp.status, (await resp.json() if resp.content_type.endswith("json") else text)
