"""A stand-in for Stringee's side of a call, for ``callvault simulate --platform stringee``: it
requests the answer_url as Stringee does (the Request-URI signed with the project's signing
secret), runs the SCCO it is answered (the notice is fetched and decoded as audio, ``talk`` is
shown, ``input`` posts the key the simulated caller presses or a timeout, ``record`` starts
recording, ``connect`` hands the call to the contact centre) and posts ``ended`` to the
event_url. The record eventUrl is not sent: no Stringee holds a file to fetch.

The test suite's fuller fake (tests/stringee_fake.py) also serves recordings and misbehaves on
purpose; this one only plays a call, for demos and smoke tests against a running server."""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
from typing import Any

import aiohttp
from yarl import URL

from service.personal.numbers import mask_phone
from service.platforms.stringee.signature import SIGNATURE_HEADER, sign
from service.platforms.twilio.simulate import Caller, CallTrace, fetch_audio

ANSWER_PATH = "/telephony/stringee/answer"
EVENT_PATH = "/telephony/stringee/event"


def _stringee_number(number: str) -> str:
    # Stringee writes numbers without the "+" (842473082686)
    return number[1:] if number.startswith("+") else number


class FakeStringee:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        public_url: str,
        *,
        signing_secret: str,
        project_id: int | None = None,
    ) -> None:
        self.session = session
        self.public_url = public_url.rstrip("/")
        self.secret = signing_secret
        self.project_id = project_id

    async def post(self, url: str, payload: dict[str, Any]) -> tuple[int, str]:
        """POST a JSON body signed over its bytes (event_url, input and record eventUrls)."""
        body = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body)}
        async with self.session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()

    async def place_call(
        self, caller: str, called: str, behaviour: Caller, *, max_steps: int = 20
    ) -> CallTrace:
        letters = secrets.token_hex(5).upper()
        call_id = f"call-vn-1-{letters}-{int(time.time() * 1000)}"
        trace = CallTrace(call_id, hang_up_on_notice=behaviour.hang_up_during_notice)
        trace.steps.append(f"call {call_id} from {mask_phone(caller)} to {called}")
        keys = list(behaviour.keys)
        params = {
            "from": _stringee_number(caller),
            "to": _stringee_number(called),
            "uuid": call_id,
            "fromInternal": "false",
        }
        uri = (
            URL(self.public_url).path.rstrip("/")
            + ANSWER_PATH
            + "?"
            + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
        )
        url = URL(str(URL(self.public_url).origin()) + uri, encoded=True)
        headers = {SIGNATURE_HEADER: sign(self.secret, uri.encode("utf-8"))}
        async with self.session.get(url, headers=headers) as resp:
            status, text = resp.status, await resp.text()
        trace.steps.append(f"-> GET {ANSWER_PATH}: HTTP {status}")
        actions: list[dict[str, Any]] = []
        if status == 200:
            actions = list(json.loads(text))
        else:
            trace.errors.append(f"answer_url: HTTP {status}: {text[:200]}")
        steps = 0
        while actions and steps < max_steps and not trace.hung_up:
            steps += 1
            action = actions.pop(0)
            kind = action.get("action")
            if kind in ("stream", "play") and not str(action.get("fileName")).startswith(
                self.public_url + "/"
            ):
                trace.steps.append(f"<- {kind} {action.get('fileName')} (a file at Stringee)")
            elif kind in ("stream", "play"):
                played = await fetch_audio(self.session, str(action.get("fileName")))
                trace.played.append(played)
                trace.steps.append(
                    f"<- {kind} {URL(played.url).path}: {played.duration_ms / 1000:.1f} s, "
                    f"sha256 {played.sha256[:12]}"
                )
            elif kind == "talk":
                trace.said.append(str(action.get("text")))
                trace.steps.append(f"<- talk ({action.get('voice') or 'default voice'})")
            elif kind == "input":
                trace.gathers += 1
                digit = keys.pop(0) if keys else None
                trace.steps.append(
                    f"   caller presses {digit}" if digit else "   caller presses nothing"
                )
                status, text = await self.post(
                    str(action["eventUrl"]),
                    {
                        "time": str(int(time.time() * 1000)),
                        "dtmf": digit or "",
                        "call_id": call_id,
                        "customField": "",
                        "timeout": digit is None,
                    },
                )
                trace.steps.append(f"-> POST input eventUrl: HTTP {status}")
                if status != 200:
                    trace.errors.append(f"input eventUrl: HTTP {status}: {text[:200]}")
                    break
                actions = list(json.loads(text))
                continue
            elif kind == "record":
                trace.recording_callback = str(action.get("eventUrl"))
                trace.steps.append("<- record: the call is being recorded")
            elif kind == "connect":
                to = action.get("to") or {}
                trace.continued_to = f"connect to {to.get('type', '?')} {to.get('number', '?')}"
                trace.steps.append(f"<- {trace.continued_to}: the contact centre takes the call")
                break
            else:
                trace.errors.append(f"unexpected SCCO action {kind!r}")
            if kind in ("stream", "play", "talk") and trace.hang_up_on_notice:
                trace.hung_up = True
                trace.steps.append("   caller hangs up during the notice")
        if not actions and not trace.hung_up and trace.continued_to is None:
            trace.steps.append("   end of SCCO: the call ends")
        ended: dict[str, Any] = {
            "call_status": "ended",
            "call_id": call_id,
            "timestamp_ms": int(time.time() * 1000),
            "from": {"number": _stringee_number(caller), "type": "external"},
            "to": {"number": _stringee_number(called), "type": "external"},
            "endCallCause": "USER_END_CALL",
            "duration": 15,
        }
        if self.project_id is not None:
            ended["project_id"] = self.project_id
        status, text = await self.post(self.public_url + EVENT_PATH, ended)
        trace.steps.append(f"-> POST {EVENT_PATH} (ended): HTTP {status}")
        if status >= 300:
            trace.errors.append(f"event_url: HTTP {status}: {text[:200]}")
        return trace
