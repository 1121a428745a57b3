"""Retention, legal holds and data-subject requests: every recording leaves on time, unless the
law says keep it.

``purge`` deletes expired, unheld recordings (any number of replicas may run it at once);
``holds`` places and releases legal holds; ``requests`` carries out access, erasure and
withdrawal requests; ``scheduler`` runs the purge with APScheduler inside ``callvault serve``.
Every decision about time uses the database's clock. This package never imports the aiohttp
application.
"""
