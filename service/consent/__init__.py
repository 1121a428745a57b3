"""The consent gate, independent of any telephony platform: a call starts, the caller is told,
the caller's answer (or hang-up) becomes the call's one outcome, and every step is written to the
ledger in the same transaction. Platform adapters (``service.platforms.*``) map their webhooks
onto :mod:`service.consent.gate` and its decisions onto their own response language."""
