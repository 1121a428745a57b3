"""``callvault prompts build``: render the recording notices."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from service.config import load_settings


def cmd_prompts_build(args: argparse.Namespace) -> int:
    from prompts.render import build

    settings = load_settings()
    out = Path(args.out) if args.out else settings.prompts_dir
    manifest = build(out)
    for entry in manifest["prompts"]:
        for fmt, info in entry["files"].items():
            print(
                f"{entry['id']}/{entry['version']}.{fmt}  {info['bytes']:>7} bytes  "
                f"{info['duration_ms'] / 1000:5.1f} s  sha256 {info['sha256']}"
            )
    print(f"wrote {out / 'manifest.json'}")
    return 0


def add_parser(sub: Any) -> None:
    prompts = sub.add_parser("prompts", help="recording notices")
    prompts_sub = prompts.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")
    p = prompts_sub.add_parser("build", help="render the notices to 8 kHz μ-law WAV and MP3")
    p.add_argument("--out", help="output folder (default $CALLVAULT_HOME/prompts)")
    p.set_defaults(func=cmd_prompts_build)
