#!/usr/bin/env python3
"""callvault's consent gate for Asterisk, as an AGI script (Python 3 standard library only).

    AGI(callvault_agi.py,start[,queue[,direction]])   ; at call start: notice, consent
    AGI(callvault_agi.py,ended)                       ; in the hangup handler
    AGI(callvault_agi.py,pause,card payment)          ; the recording was just muted
    AGI(callvault_agi.py,resume,card taken)           ; ... and unmuted

``start`` asks callvault what to play (``POST /telephony/pbx/calls``), downloads the notice once
(cached by its SHA-256, verified before it is ever played), plays it, asks for a digit in
explicit mode, reports the answer (``POST .../consent``) and sets the channel variable
``CALLVAULT_RECORD`` to ``1`` (record) or ``0``. If the caller hangs up during the notice it
reports ``POST .../ended {"during_notice": true}``. Anything that goes wrong (callvault
unreachable, a notice that does not verify) leaves ``CALLVAULT_RECORD=0``: no consent can be
proven, so the call goes on unrecorded. ``ended`` reports the end of the call (a repeat is
harmless). ``pause`` and ``resume`` report that the recording of the call was muted (a card
payment) or unmuted, with a reason, and set ``CALLVAULT_PAUSED`` to ``1`` or ``0`` once callvault
has it in the call's ledger (left unset if it could not be told: the dialplan may log that).

Configuration (environment first, then ``/etc/asterisk/callvault.ini`` section ``[callvault]``,
or the file named by ``CALLVAULT_AGI_CONFIG``): ``url`` (callvault's base URL), ``token_file``
(a file holding the tenant's ``telephony`` token), ``sounds_dir`` (where notices are cached,
default ``/var/lib/asterisk/sounds/callvault``), ``timeout_s`` (HTTP timeout, default 4).
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import signal
import struct
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SECTION = "callvault"
DEFAULTS = {
    "url": "",
    "token_file": "/etc/asterisk/callvault.token",
    "sounds_dir": "/var/lib/asterisk/sounds/callvault",
    "timeout_s": "4",
}
_RESULT = re.compile(r"^200 result=(-?\d+)")
hung_up = False


def _on_hangup(signum: int, frame: Any) -> None:
    # Asterisk sends SIGHUP to a local AGI when the caller hangs up: note it, keep running so
    # that the hang-up can still be reported
    global hung_up
    hung_up = True


def config() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(os.environ.get("CALLVAULT_AGI_CONFIG", "/etc/asterisk/callvault.ini"))
    found = dict(DEFAULTS)
    if parser.has_section(SECTION):
        found.update(parser[SECTION])
    for key in DEFAULTS:
        found[key] = os.environ.get(f"CALLVAULT_{key.upper()}", found[key])
    return found


class Agi:
    """The AGI dialogue on stdin/stdout: the variables, then one command and one answer."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}
        for line in sys.stdin:
            line = line.rstrip("\n")
            if not line:
                break
            key, _, value = line.partition(":")
            self.env[key.strip()] = value.strip()

    def command(self, text: str) -> int:
        """Send one command; its ``result``, or -1 when the channel is gone."""
        if hung_up:
            return -1
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            line = sys.stdin.readline()
        except (BrokenPipeError, OSError):
            return -1
        while line.startswith("HANGUP"):  # a FastAGI-style hang-up notice
            line = sys.stdin.readline()
        match = _RESULT.match(line)
        return int(match.group(1)) if match else -1

    def verbose(self, message: str) -> None:
        self.command(f'VERBOSE "callvault: {message}" 3')


class Api:
    def __init__(self, cfg: dict[str, str]) -> None:
        self.base = cfg["url"].rstrip("/")
        if not self.base.startswith(("https://", "http://")):
            raise ValueError("url must be callvault's http(s) base URL")
        self.token = Path(cfg["token_file"]).read_text(encoding="utf-8").strip()
        self.timeout = float(cfg["timeout_s"])

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - the base URL is checked to be http(s)
            self.base + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            answer: dict[str, Any] = json.load(response)
            return answer

    def get(self, url: str) -> bytes:
        if not url.startswith(self.base + "/"):
            raise ValueError("the notice URL is not callvault's")
        with urllib.request.urlopen(url, timeout=self.timeout) as response:  # noqa: S310
            body: bytes = response.read(10 * 1024 * 1024)
            return body


def ulaw_from_wav(wav: bytes) -> bytes:
    """The mu-law samples of callvault's notice (RIFF/WAVE, format 7, 8 kHz mono), which
    Asterisk plays as a headerless ``.ulaw`` file."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(wav):
        chunk, size = wav[pos : pos + 4], struct.unpack("<I", wav[pos + 4 : pos + 8])[0]
        body = wav[pos + 8 : pos + 8 + size]
        if chunk == b"fmt ":
            fmt = struct.unpack("<HHI", body[:8])
        elif chunk == b"data":
            if fmt != (7, 1, 8000):
                raise ValueError(f"not 8 kHz mono mu-law: {fmt}")
            return body
        pos += 8 + size + (size & 1)
    raise ValueError("no data chunk")


def notice_file(api: Api, notice: dict[str, Any], sounds_dir: str) -> str:
    """The notice as a sound name for STREAM FILE, verified against the SHA-256 callvault gave:
    the ledger says the caller heard exactly those bytes."""
    digest = notice["sha256"]
    if not re.fullmatch(r"[0-9a-f]{64}", digest or ""):
        raise ValueError("no notice hash")
    folder = Path(sounds_dir)
    target = folder / f"{digest}.ulaw"
    if not target.exists():
        wav = api.get(notice["url"])
        if hashlib.sha256(wav).hexdigest() != digest:
            raise ValueError("the notice does not match its SHA-256: not played")
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{digest}.{os.getpid()}"
        partial.write_bytes(ulaw_from_wav(wav))
        partial.replace(target)  # atomic: another call never plays half a file
    return str(folder / digest)


def ask(agi: Agi, api: Api, call_id: str, answer: dict[str, Any], sound: str) -> bool | None:
    """Play the notice (and ask); the consent answer, or None if the caller hung up."""
    path = f"/telephony/pbx/calls/{call_id}"
    if answer["mode"] == "implied":
        if agi.command(f'STREAM FILE {sound} ""') < 0 or hung_up:
            return None
        return bool(api.post(path + "/consent", {"stayed": True})["record"])
    digits = answer["digits"]
    allowed = digits["allow"] + digits["refuse"]
    attempt = 1
    while True:
        result = agi.command(f'STREAM FILE {sound} "{allowed}"')
        if result == 0:
            result = agi.command(f"WAIT FOR DIGIT {int(digits['timeout_s']) * 1000}")
        if result < 0 or hung_up:
            return None
        digit = chr(result) if result > 0 else None
        said = api.post(path + "/consent", {"digit": digit, "attempt": attempt})
        if not said.get("ask_again"):
            return bool(said["record"])
        attempt = int(said["attempt"])


def start(agi: Agi, api: Api, cfg: dict[str, str], args: list[str]) -> bool:
    call_id = agi.env["agi_uniqueid"]
    body: dict[str, Any] = {
        "call_id": call_id,
        "from": agi.env.get("agi_callerid") or "unknown",
        "to": agi.env.get("agi_dnid") or agi.env.get("agi_extension") or "unknown",
    }
    if args[:1] and args[0]:
        body["queue"] = args[0]
    if args[1:2] and args[1]:
        body["direction"] = args[1]
    answer = api.post("/telephony/pbx/calls", body)
    if answer["action"] != "notice":
        return bool(answer.get("record"))
    sound = notice_file(api, answer["notice"], cfg["sounds_dir"])
    record = ask(agi, api, call_id, answer, sound)
    if record is None:
        api.post(f"/telephony/pbx/calls/{call_id}/ended", {"during_notice": True})
        return False
    return record


def main() -> int:
    signal.signal(signal.SIGHUP, _on_hangup)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    agi = Agi()
    args = [agi.env.get(f"agi_arg_{i}", "") for i in range(1, 4)]
    cfg = config()
    record = False
    try:
        api = Api(cfg)
        if args[0] == "ended":
            api.post(
                f"/telephony/pbx/calls/{agi.env['agi_uniqueid']}/ended", {"during_notice": False}
            )
            return 0
        if args[0] in ("pause", "resume"):
            reason = args[1] or ("card payment" if args[0] == "pause" else "resumed")
            said = api.post(
                f"/telephony/pbx/calls/{agi.env['agi_uniqueid']}/{args[0]}", {"reason": reason}
            )
            agi.command(f"SET VARIABLE CALLVAULT_PAUSED {1 if said.get('paused') else 0}")
            return 0
        record = start(agi, api, cfg, args[1:])
    except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
        # never a phone number or the token in the log: the error's kind and the call id only
        if args[0] in ("pause", "resume"):
            # e.g. 409 already_paused: callvault's record disagrees; the PBX's state stands
            code = getattr(exc, "code", None)
            agi.verbose(f"callvault was not told of the {args[0]} ({type(exc).__name__} {code})")
            return 0
        agi.verbose(f"continuing unrecorded ({type(exc).__name__})")
    agi.command(f"SET VARIABLE CALLVAULT_RECORD {1 if record else 0}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
