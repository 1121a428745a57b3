"""Signed, short-lived links to one stored object, and the ``/files/{token}`` route serving them."""
