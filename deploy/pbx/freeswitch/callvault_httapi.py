#!/usr/bin/env python3
"""A small bridge between FreeSWITCH's mod_httapi and callvault's PBX API (standard library only).

mod_httapi asks a web server, step by step, what a call should do next, and expects
``xml/freeswitch-httapi`` documents; callvault's PBX API speaks JSON with a bearer token. This
bridge runs beside FreeSWITCH (``127.0.0.1:8089`` by default), keeps the token out of the
dialplan, and translates:

1. first request (``session_id`` = the channel's uuid, ``Caller-Caller-ID-Number``,
   ``Caller-Destination-Number``, and the ``queue`` given in the httapi data): ``POST
   /telephony/pbx/calls``. ``skip`` → set ``callvault_record`` and ``<break/>``. ``notice`` → the
   notice is downloaded once, verified against its SHA-256 and cached, then ``<playback>`` of the
   local file (with a ``<bind>`` for a key in explicit mode). ``callvault_step`` rides along in
   ``<params>``, which mod_httapi sends back on the next request.
2. after the playback: ``POST .../consent`` (``{"stayed": true}``, or the key pressed, or no key
   → null); callvault may ask again (explicit mode, retries); then ``callvault_record`` is set
   to ``1`` or ``0`` and ``<break/>`` returns to the dialplan, which starts ``record_session``
   when it is ``1`` (see ``dialplan.xml``).
3. the request mod_httapi makes when the channel hangs up (``exiting=true``): ``POST
   .../ended`` with ``during_notice`` true if the notice was still playing or waiting for a key.

4. card payments (PCI DSS: no card security code in a recording): the dialplan masks the
   recording first (``record_session_mask``; see ``dialplan.xml``), then runs httapi with
   ``{callvault_action=pause,callvault_reason=...}``: ``POST .../pause`` (``resume`` likewise,
   after ``record_session_unmask``), and ``callvault_paused`` is set to ``1`` or ``0`` once
   callvault has it in the call's ledger (left unset if callvault could not be told: the mask
   holds all the same). An agent desktop that masks over the event socket (``uuid_record UUID
   mask FILE``) reports with ``callvault_httapi.py pause UUID [REASON]`` on the FreeSWITCH host
   (the same configuration and token; exit 0 once callvault has it, 1 otherwise).

Any failure answers ``callvault_record=0`` and ``<break/>``: the call goes on unrecorded.
Configuration: as for the Asterisk scripts (``CALLVAULT_URL``, ``CALLVAULT_TOKEN_FILE``,
``CALLVAULT_SOUNDS_DIR`` (default ``/var/lib/freeswitch/sounds/callvault``),
``CALLVAULT_TIMEOUT_S``; or ``/etc/freeswitch/callvault.ini``), plus ``CALLVAULT_LISTEN``
(``127.0.0.1:8089``).
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

SECTION = "callvault"
DEFAULTS = {
    "url": "",
    "token_file": "/etc/freeswitch/callvault.token",
    "sounds_dir": "/var/lib/freeswitch/sounds/callvault",
    "timeout_s": "4",
    "listen": "127.0.0.1:8089",
}
MAX_FORM_BYTES = 256 * 1024
ASKING = ("notice", "ask")  # steps during which a hang-up is a hang-up during the notice
PAUSE_ACTIONS = {"pause": "card payment", "resume": "resumed"}  # and their default reasons


def config() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(os.environ.get("CALLVAULT_HTTAPI_CONFIG", "/etc/freeswitch/callvault.ini"))
    found = dict(DEFAULTS)
    if parser.has_section(SECTION):
        found.update({k: v for k, v in parser[SECTION].items() if k in DEFAULTS})
    for key in DEFAULTS:
        found[key] = os.environ.get(f"CALLVAULT_{key.upper()}", found[key])
    return found


def document(
    work: str,
    params: dict[str, str] | None = None,
    record: bool | None = None,
    paused: bool | None = None,
) -> str:
    parts = ['<document type="xml/freeswitch-httapi">']
    if params:
        parts.append(
            "<params>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in params.items()) + "</params>"
        )
    if record is not None:
        parts.append(f"<variables><callvault_record>{int(record)}</callvault_record></variables>")
    if paused is not None:
        parts.append(f"<variables><callvault_paused>{int(paused)}</callvault_paused></variables>")
    parts.append(f"<work>{work}</work></document>")
    return "".join(parts)


def done(record: bool) -> str:
    """Back to the dialplan, with the decision; the hang-up report will say the notice is over."""
    return document("<break/>", {"callvault_step": "done"}, record)


class Bridge:
    def __init__(self, cfg: dict[str, str]) -> None:
        self.cfg = cfg
        self.base = cfg["url"].rstrip("/")
        if not self.base.startswith(("https://", "http://")):
            raise ValueError("url must be callvault's http(s) base URL")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        token = Path(self.cfg["token_file"]).read_text(encoding="utf-8").strip()
        request = urllib.request.Request(  # noqa: S310 - the base URL is checked to be http(s)
            self.base + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        timeout = float(self.cfg["timeout_s"])
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            answer: dict[str, Any] = json.load(response)
            return answer

    def notice_file(self, notice: dict[str, Any]) -> str:
        """The notice as a local WAV, verified against the SHA-256 callvault gave (the ledger
        says the caller heard exactly those bytes); cached by that hash."""
        digest = notice.get("sha256") or ""
        url = notice.get("url") or ""
        if not re.fullmatch(r"[0-9a-f]{64}", digest) or not url.startswith(self.base + "/"):
            raise ValueError("no playable notice")
        folder = Path(self.cfg["sounds_dir"])
        target = folder / f"{digest}.wav"
        if not target.exists():
            timeout = float(self.cfg["timeout_s"])
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                body = response.read(10 * 1024 * 1024)
            if hashlib.sha256(body).hexdigest() != digest:
                raise ValueError("the notice does not match its SHA-256: not played")
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f".{digest}.{os.getpid()}"
            partial.write_bytes(body)
            partial.replace(target)
        return str(target)

    def ask(self, sound: str, answer: dict[str, Any], attempt: int) -> str:
        if answer["mode"] == "implied":
            return document(f"<playback file={quoteattr(sound)}/>", {"callvault_step": "notice"})
        digits = answer["digits"]
        wait_ms = int(digits["timeout_s"]) * 1000
        return document(
            f'<playback file={quoteattr(sound)} name="callvault_digit" '
            f'input-timeout="{wait_ms}" digit-timeout="{wait_ms}"><bind>~\\d</bind></playback>',
            {
                "callvault_step": "ask",
                "callvault_attempt": str(attempt),
                "callvault_mode": "explicit",
                "callvault_sound": sound,
                "callvault_wait_s": str(digits["timeout_s"]),
            },
        )

    def log(self, line: str) -> None:
        sys.stderr.write(f"callvault_httapi: {line}\n")

    def paused(self, call_id: str, action: str, reason: str) -> bool:
        """Tell callvault the PBX paused (masked) or resumed the call's recording; whether it
        is now paused in callvault's record. Raises (HTTPError 409: callvault's record
        disagrees, e.g. already paused) for the caller to log; the PBX's state stands."""
        if action not in PAUSE_ACTIONS:
            raise ValueError("pause or resume")
        path = f"/telephony/pbx/calls/{urllib.parse.quote(call_id, safe='')}/{action}"
        said = self.post(path, {"reason": reason.strip() or PAUSE_ACTIONS[action]})
        return bool(said.get("paused"))

    def step(self, form: dict[str, str]) -> str:
        call_id = form.get("session_id", "")
        path = f"/telephony/pbx/calls/{urllib.parse.quote(call_id, safe='')}"
        step = form.get("callvault_step", "")
        if form.get("exiting") == "true":
            self.post(path + "/ended", {"during_notice": step in ASKING})
            return document("<break/>")
        action = form.get("callvault_action", "")
        if action:
            try:
                paused = self.paused(call_id, action, form.get("callvault_reason", ""))
            except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
                code = getattr(exc, "code", None)
                self.log(f"callvault was not told of the {action} ({type(exc).__name__} {code})")
                return document("<break/>")  # callvault_paused stays unset
            return document("<break/>", paused=paused)
        if step == "":
            body = {
                "call_id": call_id,
                "from": form.get("Caller-Caller-ID-Number") or "unknown",
                "to": form.get("Caller-Destination-Number") or "unknown",
            }
            if form.get("queue"):
                body["queue"] = form["queue"]
            answer = self.post("/telephony/pbx/calls", body)
            if answer["action"] != "notice":
                return done(bool(answer.get("record")))
            return self.ask(self.notice_file(answer["notice"]), answer, 1)
        if step == "notice":
            return done(bool(self.post(path + "/consent", {"stayed": True})["record"]))
        if step == "ask":
            attempt = int(form.get("callvault_attempt", "1"))
            said = self.post(
                path + "/consent",
                {"digit": form.get("callvault_digit") or None, "attempt": attempt},
            )
            if said.get("ask_again"):
                again = {
                    "mode": "explicit",
                    "digits": {"timeout_s": int(form.get("callvault_wait_s", "8"))},
                }
                return self.ask(form["callvault_sound"], again, int(said["attempt"]))
            return done(bool(said["record"]))
        return done(False)


class Handler(BaseHTTPRequestHandler):
    bridge: Bridge

    def _form(self) -> dict[str, str]:
        query = urllib.parse.urlsplit(self.path).query
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_FORM_BYTES)).decode("utf-8", "replace")
        form = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        if "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            form.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
        return form

    def _answer(self) -> None:
        form = self._form()
        try:
            text = self.bridge.step(form)
        except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
            # never a number or the token in the log: the kind of failure only
            self.log_message("continuing unrecorded (%s)", type(exc).__name__)
            text = done(False)
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")  # anything else makes mod_httapi retry
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        # the request line carries the caller's number for GET-style profiles: not logged
        if format.startswith('"%s"'):
            return
        sys.stderr.write("callvault_httapi: " + (format % args) + "\n")


def report(args: list[str]) -> int:
    """``callvault_httapi.py pause|resume UUID [REASON]``: for an agent desktop that masked the
    recording over the event socket. Prints ``paused=1`` or ``paused=0``; exit 1 if callvault
    could not be told (the kind of failure on stderr, never the token or a number)."""
    action, call_id, reason = args[0], args[1], " ".join(args[2:])
    try:
        paused = Bridge(config()).paused(call_id, action, reason)
    except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
        code = getattr(exc, "code", None)
        sys.stderr.write(
            f"callvault_httapi: callvault was not told ({type(exc).__name__} {code})\n"
        )
        return 1
    print(f"paused={int(paused)}")
    return 0


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] in PAUSE_ACTIONS:
        return report(sys.argv[1:])
    cfg = config()
    host, _, port = cfg["listen"].rpartition(":")
    Handler.bridge = Bridge(cfg)
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    print(f"callvault_httapi: listening on {host}:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
