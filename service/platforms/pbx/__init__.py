"""Any PBX (Asterisk, FreeSWITCH, any SIP server) through callvault's own JSON API.

The PBX drives the consent gate itself: it asks what to play at call start (``routes.start``),
reports the caller's answer (``consent``) and the call's end (``ended``), and uploads the
recording with a streamed ``PUT`` (``routes.recording``, ``receive``), which then goes through
the intake's store, verify and ledger steps like a fetched one. ``deploy/pbx/`` holds the
Asterisk and FreeSWITCH recipes that speak this API.
"""
