"""Telephony platforms, one folder each, behind one port (:mod:`service.platforms.port`).

Nothing is imported here on purpose: the core (consent gate, intake, ledger, storage,
retention) may import :mod:`service.platforms.port` without pulling in any platform.
"""
