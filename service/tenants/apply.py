"""``tenant apply``: validate every tenant a file (or an API body) names, compare it with what is
stored, print the plan, and write it in one transaction, or write nothing.

Declarative: for each named tenant the file is the whole truth (its queues, numbers, accounts
and storage not in the file are removed); tenants the file does not name are untouched.
Idempotent: a second apply of the same file finds no difference and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.db import Conn
from service.observability import audit
from service.tenants import store
from service.tenants.model import (
    DEFAULT,
    TenantSpec,
    TenantSpecError,
    check_numbers_unique,
    key_path,
    show_value,
)


@dataclass
class Plan:
    # tenant id -> lines like "+ tenants.acme.queues.sales", "~ tenants.acme.retention: 90d -> 180d"
    changes: dict[str, list[str]] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not any(self.changes.values())

    def lines(self) -> list[str]:
        return [line for tid in sorted(self.changes) for line in self.changes[tid]]


def diff(before: TenantSpec | None, after: TenantSpec) -> list[str]:
    old = before.flat() if before is not None else {}
    new = after.flat()
    lines = []
    for path in sorted(old.keys() | new.keys()):
        if path not in new:
            lines.append(f"- {path}")
        elif path not in old:
            value = new[path]
            lines.append(f"+ {path}" + ("" if value is None else f" = {show_value(path, value)}"))
        elif old[path] != new[path]:
            lines.append(
                f"~ {path}: {show_value(path, old[path])} -> {show_value(path, new[path])}"
            )
    return lines


async def plan_and_apply(
    conn: Conn,
    specs: list[TenantSpec],
    actor: str,
    *,
    dry_run: bool,
    reserved_numbers: Mapping[str, Any] | None = None,
) -> Plan:
    """Run inside the caller's transaction; raises :class:`TenantSpecError` before any write."""
    check_numbers_unique(specs)
    await store.lock(conn)
    named = {s.id for s in specs}
    all_numbers = [n for s in specs for n in s.numbers]
    for number, owner in (await store.number_owners(conn, all_numbers)).items():
        if owner not in named:
            claimant = next(s.id for s in specs if number in s.numbers)
            raise TenantSpecError(
                f"{key_path('tenants', claimant, 'numbers', number)}: the number belongs to "
                f"tenant {owner!r} (a number belongs to one tenant; remove it there first)"
            )
    for spec in specs:
        for number in spec.numbers:
            if reserved_numbers and number in reserved_numbers:
                raise TenantSpecError(
                    f"{key_path('tenants', spec.id, 'numbers', number)}: the number belongs to "
                    f"tenant {DEFAULT!r} ([numbers] in CALLVAULT_CONFIG)"
                )
    stored = await store.load(conn, sorted(named))
    plan = Plan()
    for spec in specs:
        before = stored.get(spec.id)
        if before is None:
            plan.created.add(spec.id)
        plan.changes[spec.id] = diff(before, spec)
    if dry_run or plan.empty:
        return plan
    await store.write(conn, [s for s in specs if plan.changes[s.id]])
    for spec in specs:
        if plan.changes[spec.id]:
            await audit.record(
                conn,
                actor,
                "tenant_created" if spec.id in plan.created else "tenant_applied",
                "tenant",
                spec.id,
                {"changes": plan.changes[spec.id]},
            )
    return plan
