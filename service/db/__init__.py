"""PostgreSQL: where the server is (embedded or a URL), the pool, migrations, named queries."""
