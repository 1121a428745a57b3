"""Named crash points for the fault tests: with ``CALLVAULT_FAILPOINTS=intake.after_upload``
the process kills itself with SIGKILL when it reaches that point, exactly as a crash or an
OOM kill would, so tests can prove that a rerun converges. Never set in production."""

from __future__ import annotations

import logging
import os
import signal

from service.config import Settings

log = logging.getLogger(__name__)


def hit(settings: Settings, name: str) -> None:
    if name in settings.failpoints:
        log.critical("failpoint reached: killing this process", extra={"failpoint": name})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
