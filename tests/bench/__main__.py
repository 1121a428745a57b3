"""``python -m tests.bench`` (``make bench``): every benchmark, one after another, each in its
own process; their last lines (the ratios) are repeated at the end, all figures are in
bench-results.json (the latest of each, and the history with date and commit) and the README's
table is rewritten from it. ``python -m tests.bench --readme`` only rewrites the table (after
running one bench on its own)."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.bench.harness import update_readme

BENCHMARKS = [
    "voice_webhook",
    "tenant_voice",
    "intake",
    "seal_intake",
    "seal_range",
    "memory",
    "isolation",
    "purge",
    "scale",
    "ledger_verify",
    "startup",
]


def main() -> int:
    if sys.argv[1:] == ["--readme"]:
        update_readme()
        return 0
    started = time.perf_counter()
    lines, failed = [], []
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        result = subprocess.run(
            [sys.executable, "-m", f"tests.bench.bench_{name}"],
            capture_output=True,
            text=True,
            check=False,
        )
        out = result.stdout.strip().splitlines()
        print(result.stdout, end="", flush=True)
        if result.returncode != 0 or not out:
            print(result.stderr[-3000:], file=sys.stderr)
            failed.append(name)
            continue
        lines.append(out[-1])
    print(
        f"== all benchmarks in {time.perf_counter() - started:.0f} s (results in "
        "bench-results.json)"
    )
    for line in lines:
        print(line)
    update_readme()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
