"""``callvault simulate`` and ``callvault demo``: calls played against a running server."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from service.cli.common import settings_for
from service.errors import CallvaultError


def cmd_simulate(args: argparse.Namespace) -> int:
    import aiohttp

    from service.platforms.twilio.simulate import Caller, CallTrace, FakeTwilio, summary

    settings = settings_for(database=False)
    try:
        behaviour = Caller.parse(args.behaviour)
    except ValueError as exc:
        raise CallvaultError(f"--behaviour: {exc}") from None
    public_url = (args.url or settings.public_url).rstrip("/")

    async def twilio(session: aiohttp.ClientSession) -> CallTrace:
        voice_path = "/telephony/twilio/voice" + (f"?queue={args.queue}" if args.queue else "")
        fake = FakeTwilio(
            session,
            public_url,
            account_sid=settings.twilio_account_sid or "",
            auth_token=settings.twilio_auth_token or "",
        )
        return await fake.place_call(args.caller, args.called, behaviour, voice_path=voice_path)

    async def stringee(session: aiohttp.ClientSession) -> CallTrace:
        from service.platforms.stringee.simulate import FakeStringee

        if not settings.stringee_signing_secret:
            raise CallvaultError(
                "CALLVAULT_STRINGEE_SIGNING_SECRET is not set: nothing to sign with"
            )
        fake = FakeStringee(session, public_url, signing_secret=settings.stringee_signing_secret)
        return await fake.place_call(args.caller, args.called, behaviour)

    token = ""
    if args.platform == "pbx":
        if not args.token_file:
            raise CallvaultError(
                "--token-file is required with --platform pbx: a file holding a telephony token "
                "(`callvault token create --name pbx --role telephony`)"
            )
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise CallvaultError(f"--token-file: {exc.strerror}: {args.token_file}") from None

    async def pbx(session: aiohttp.ClientSession) -> CallTrace:
        from service.platforms.pbx.simulate import FakePbx

        fake = FakePbx(session, public_url, token=token)
        return await fake.place_call(args.caller, args.called, behaviour, queue=args.queue)

    platforms = {"twilio": twilio, "stringee": stringee, "pbx": pbx}

    async def run() -> int:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                trace = await platforms[args.platform](session)
            except aiohttp.ClientError as exc:
                raise CallvaultError(f"cannot reach callvault at {public_url}: {exc}") from None
        for step in trace.steps:
            print(step)
        print(f"result: {summary(trace)}")
        return 1 if trace.errors else 0

    return asyncio.run(run())


def cmd_demo(args: argparse.Namespace) -> int:
    from service.demo import laptop as demo

    return demo.main(settings_for(database=False), timeout_s=args.timeout, platform=args.platform)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="play a whole call against a running server, as Twilio, Stringee or a PBX would",
    )
    p.add_argument(
        "--platform",
        choices=("twilio", "stringee", "pbx"),
        default="twilio",
        help="whose webhooks to send (Stringee: signed with CALLVAULT_STRINGEE_SIGNING_SECRET; "
        "pbx: the PBX API with the telephony token in --token-file)",
    )
    p.add_argument("--token-file", help="--platform pbx: a file holding a tenant's telephony token")
    p.add_argument("--url", help="callvault's public URL (default CALLVAULT_PUBLIC_URL)")
    p.add_argument("--from", dest="caller", default="+84901234567", help="caller number")
    p.add_argument("--to", dest="called", default="+842873001234", help="called number")
    p.add_argument(
        "--queue", help="queue name (Twilio: on the voice webhook URL; pbx: in the call start)"
    )
    p.add_argument(
        "--behaviour",
        default="stay",
        help="stay (default), hang-up, silent, press-1, press-2, press-9,1 ...",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "demo",
        help="against `make serve` (embedded, no Twilio account): play calls through to stored "
        "recordings, print a QA token, the /qa URL and when each recording goes",
    )
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for intake")
    p.add_argument(
        "--platform",
        choices=("twilio", "stringee", "pbx"),
        default="twilio",
        help="whose calls to play",
    )
    p.set_defaults(func=cmd_demo)
