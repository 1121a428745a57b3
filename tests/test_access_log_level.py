"""The access log costs nothing per request when its lines would be dropped anyway."""

from __future__ import annotations

import logging

from service.observability import logs


def test_the_access_log_is_skipped_below_info_and_kept_at_info() -> None:
    logger = logging.getLogger("callvault.test.access")
    access = logs.AccessLogger(logger, "")
    try:
        logger.setLevel(logging.WARNING)  # CALLVAULT_LOG_LEVEL=WARNING: aiohttp never calls log()
        assert not access.enabled
        logger.setLevel(logging.INFO)
        assert access.enabled
    finally:
        logger.setLevel(logging.NOTSET)
