#!/usr/bin/env python3
"""Upload a finished MixMonitor recording to callvault (Python 3 standard library only).

    MixMonitor(${CALLVAULT_DIR}/${UNIQUEID}.wav,,/usr/bin/python3
        /var/lib/asterisk/agi-bin/callvault_upload.py ${UNIQUEID} ^{MIXMONITOR_FILENAME})
    (one line in extensions.conf)

MixMonitor runs its command once the recording is over (the call hung up or StopMixMonitor).
The file is streamed (never read whole into memory) as ``PUT
/telephony/pbx/calls/{call_id}/recording`` with ``Content-Length`` and ``Digest: sha-256=``, so
callvault can prove it stored exactly these bytes. Answers:

- 201: stored and verified (also for a repeat of the same bytes): the local file is deleted.
- 409: callvault may not keep it (no consent, or the caller's data was erased): deleted too.
- network errors, 429 and 5xx: retried with backoff (``retries``, default 5); then the file is
  left where it is and the exit status is 1, for a later run (``callvault_upload.py CALL_ID
  FILE`` again; a repeat is harmless).
- any other 4xx: the file is kept, exit status 2 (look at the message in the PBX's log).

Configuration as for ``callvault_agi.py`` (``url``, ``token_file``, ``upload_timeout_s``;
environment ``CALLVAULT_*`` first, then ``/etc/asterisk/callvault.ini`` or
``/etc/freeswitch/callvault.ini``) plus ``retries`` and ``keep_files`` (``yes``: never delete
the local recording). FreeSWITCH's ``record_post_process_exec_api`` runs it the same way.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path

SECTION = "callvault"
DEFAULTS = {
    "url": "",
    "token_file": "/etc/asterisk/callvault.token",
    "upload_timeout_s": "120",
    "retries": "5",
    "keep_files": "no",
    "backoff_s": "2",
}
CONTENT_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg"}
BLOCK = 1 << 20


def config() -> dict[str, str]:
    parser = configparser.ConfigParser()
    # the Asterisk recipe's file, else the FreeSWITCH one's (the script serves both)
    default = ["/etc/asterisk/callvault.ini", "/etc/freeswitch/callvault.ini"]
    parser.read(os.environ.get("CALLVAULT_AGI_CONFIG") or default)
    found = dict(DEFAULTS)
    if parser.has_section(SECTION):
        found.update({k: v for k, v in parser[SECTION].items() if k in DEFAULTS})
    for key in DEFAULTS:
        found[key] = os.environ.get(f"CALLVAULT_{key.upper()}", found[key])
    return found


def log(message: str) -> None:
    # stderr reaches Asterisk's log; never the token, never a number
    print(f"callvault_upload: {message}", file=sys.stderr, flush=True)


def sha256_b64(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode()


def put(cfg: dict[str, str], call_id: str, path: Path, digest: str) -> tuple[int, str]:
    url = urllib.parse.urlsplit(cfg["url"].rstrip("/"))
    conn_class = (
        http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_class(url.hostname or "", url.port, timeout=float(cfg["upload_timeout_s"]))
    token = Path(cfg["token_file"]).read_text(encoding="utf-8").strip()
    target = f"{url.path}/telephony/pbx/calls/{urllib.parse.quote(call_id, safe='')}/recording"
    try:
        with path.open("rb") as body:
            # a file object is sent in blocks by http.client: never held in memory
            conn.request(
                "PUT",
                target,
                body=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": CONTENT_TYPES.get(path.suffix.lower(), "audio/wav"),
                    "Content-Length": str(path.stat().st_size),
                    "Digest": f"sha-256={digest}",
                },
            )
        response = conn.getresponse()
        text = response.read(64 * 1024).decode("utf-8", "replace")
        return response.status, text
    finally:
        conn.close()


def upload(call_id: str, path: Path, cfg: dict[str, str]) -> int:
    digest = sha256_b64(path)
    attempts = int(cfg["retries"]) + 1
    for attempt in range(1, attempts + 1):
        try:
            status, text = put(cfg, call_id, path, digest)
        except OSError as exc:  # refused, reset, timed out, TLS
            status, text = 0, type(exc).__name__
        if status in (201, 409):
            try:
                code = json.loads(text).get("error", {}).get("code", "stored")
            except ValueError:
                code = "?"
            log(f"call {call_id}: {status} {code}")
            if cfg["keep_files"].lower() not in ("yes", "true", "1"):
                path.unlink(missing_ok=True)
            return 0
        if status and status < 500 and status != 429:
            log(f"call {call_id}: refused with {status}: {text[:300]}")
            return 2
        if attempt < attempts:
            time.sleep(float(cfg["backoff_s"]) * 2 ** (attempt - 1))
    log(f"call {call_id}: not uploaded after {attempts} attempts ({status or text}); file kept")
    return 1


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        log("usage: callvault_upload.py CALL_ID FILE")
        return 2
    path = Path(argv[2])
    if not path.is_file():
        log(f"call {argv[1]}: no recording file")
        return 2
    return upload(argv[1], path, config())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
