"""``/console``: the compliance officer's page and its assets (served as ``/qa`` is, and
sharing its ``/qa/common.js``). The page holds no authority of its own: everything it shows or
does is an ``/api`` call with the token the officer pasted."""

from __future__ import annotations

from service.qa.page import page_routes

routes = page_routes(
    "service.console", "/console", {"app.js": "text/javascript", "app.css": "text/css"}
)
