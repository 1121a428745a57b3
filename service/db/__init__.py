"""PostgreSQL: where the server is (embedded or a URL), the pool, migrations, named queries."""

from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A connection as the features take it: a plain one (CLI, tests) or one lent by the pool.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
