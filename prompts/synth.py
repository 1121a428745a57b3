"""Regenerate the source speech (``prompts/source/*.wav``) with espeak-ng.

A developer tool, not a runtime step: the WAVs are committed so that machines without espeak-ng
still build the prompts. Run ``python -m prompts.synth`` after adding a prompt version.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from prompts.catalogue import catalogue


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        print("espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 1
    for prompt in catalogue():
        target = prompt.source_path()
        if target.exists() and "--force" not in args:
            continue
        # -s: words per minute, a little slower than the default for telephone listeners
        subprocess.run(
            [espeak, "-v", prompt.voice, "-s", "150", "-w", str(target), prompt.text], check=True
        )
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
