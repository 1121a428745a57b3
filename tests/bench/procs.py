"""Where a benchmark's CPU goes, and where its processes may run (Linux ``/proc``).

:func:`cpu_seconds` is a process's user + system time (all its threads, those ended included);
:func:`place` sets a process's niceness and CPU affinity thread by thread, as ``renice`` and
``taskset -a`` do (Linux keeps both per thread; threads started later inherit them from the
thread that starts them)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """``/proc/PID/stat``'s fields from the third (state) on: the command name, in parentheses,
    may hold spaces."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far; 0 for a process that has gone."""
    try:
        fields = _stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15)


def machine_cpu_seconds() -> float:
    """CPU time spent by everything on this machine so far (all cores, idle and I/O wait
    aside), from ``/proc/stat``."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def postgres_cpu_seconds(postmaster: int) -> float:
    """The postmaster's CPU and that of each living child (backends, background processes)."""
    return cpu_seconds(postmaster) + sum(cpu_seconds(pid) for pid, _ in children(postmaster))


@dataclass
class CpuSplit:
    """The CPU seconds named processes and the whole machine spent over measured stretches,
    and what they bound: run on every core all the time, that CPU would take ``fastest_s``."""

    readers: dict[str, Callable[[], float]]  # name -> its process(es)' CPU seconds so far
    spent: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def _now(self) -> dict[str, float]:
        return {k: read() for k, read in self.readers.items()} | {"machine": machine_cpu_seconds()}

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        before, started = self._now(), time.perf_counter()
        try:
            yield
        finally:
            self.wall_s += time.perf_counter() - started
            for who, value in self._now().items():
                self.spent[who] = self.spent.get(who, 0.0) + value - before[who]

    @property
    def fastest_s(self) -> float:
        return self.spent["machine"] / (os.cpu_count() or 1)

    def text(self, stretches: int = 1) -> str:
        """``moto 0.75  postgres 0.50  machine 1.84 (74% busy)``, per stretch."""
        who = "  ".join(f"{k} {v / stretches:.2f}" for k, v in self.spent.items())
        return f"{who} ({100 * self.fastest_s / self.wall_s:.0f}% busy)"


def children(pid: int) -> Iterator[tuple[int, str]]:
    """(pid, command line) of each living child of ``pid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError):
            if int(_stat(int(entry.name))[1]) == pid:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                yield int(entry.name), cmdline.strip()


def child_running(pid: int, needle: str) -> int:
    """The pid of the child of ``pid`` whose command line holds ``needle``."""
    found = [child for child, cmdline in children(pid) if needle in cmdline]
    if len(found) != 1:
        raise RuntimeError(f"{len(found)} children of {pid} run {needle!r}")
    return found[0]


def place(pids: Iterable[int], *, nice: int | None = None, cpus: set[int] | None = None) -> None:
    """Every thread of each process in ``pids`` at niceness ``nice`` and on ``cpus``."""
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                tid = int(task.name)
                with contextlib.suppress(ProcessLookupError):
                    if nice is not None:
                        os.setpriority(os.PRIO_PROCESS, tid, nice)
                    if cpus is not None:
                        os.sched_setaffinity(tid, cpus)


def parent(pid: int) -> int:
    return int(_stat(pid)[1])
