"""The recording notices: catalogue, source speech, rendering to telephony formats, hashes.

This package never imports the aiohttp service; the service reads the manifest it writes.
"""
