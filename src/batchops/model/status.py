"""Amazon's job statuses and the transitions allowed between them, as one table.

No I/O here: the coordinator, the job queue and job control ask `check_transition`
before they write a status, so a status can only move along an edge of this table.

What a stop (kill -9, Ctrl-C, a crash) can leave, and what picks it up:

- Preparing, Active, Pausing, Completing, Failing, Cancelling (RUNNING): a process died
  in the middle. `resume` (or `runner`) carries on from there (Preparing prepares again;
  Completing, Failing and Cancelling publish the report); `cancel` ends any of them but
  Completing and Failing, whose tasks have all run. describe-job reports a RUNNING
  status only while a live process holds the job's lock, and Paused otherwise.
- Suspended, Ready, Paused: waiting, by design; `resume` (or `runner`) runs them.
- Complete, Failed, Cancelled: terminal, as at Amazon: nothing moves them again
  (`resume` of a Failed job is refused; retry its failed tasks in a new job).
"""

from __future__ import annotations

from types import MappingProxyType

# Amazon's job statuses (the s3control model's JobStatus enum).
NEW, PREPARING, SUSPENDED, READY = "New", "Preparing", "Suspended", "Ready"
ACTIVE, PAUSING, PAUSED = "Active", "Pausing", "Paused"
COMPLETING, COMPLETE = "Completing", "Complete"
FAILING, FAILED = "Failing", "Failed"
CANCELLING, CANCELLED = "Cancelling", "Cancelled"

#: status -> the statuses it may move to. A status may always be written again (a
#: resumed job that was Active is Active again).
TRANSITIONS: MappingProxyType[str, frozenset[str]] = MappingProxyType({
    NEW: frozenset({PREPARING, FAILED, CANCELLED}),
    PREPARING: frozenset({SUSPENDED, READY, FAILED, CANCELLED}),
    SUSPENDED: frozenset({READY, CANCELLED}),
    READY: frozenset({ACTIVE, CANCELLING, CANCELLED}),
    ACTIVE: frozenset({PAUSING, PAUSED, COMPLETING, FAILING, CANCELLING}),
    PAUSING: frozenset({PAUSED, CANCELLING}),
    PAUSED: frozenset({ACTIVE, CANCELLING, CANCELLED}),
    COMPLETING: frozenset({COMPLETE, PAUSED}),
    FAILING: frozenset({FAILED, PAUSED}),
    CANCELLING: frozenset({CANCELLED, PAUSED}),
    COMPLETE: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
})

STATUSES = tuple(TRANSITIONS)
TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
#: Statuses a stopped process can leave behind, which `resume` continues.
RESUMABLE = frozenset({PREPARING, READY, ACTIVE, PAUSING, PAUSED, COMPLETING, FAILING,
                       CANCELLING})
#: Statuses in which a process is (or was, if it died) working on the job.
RUNNING = frozenset({PREPARING, ACTIVE, PAUSING, COMPLETING, FAILING, CANCELLING})


class TransitionError(ValueError):
    """A status change the table does not allow (a bug in batchops, or a stale read)."""


def can_move(current: str, new: str) -> bool:
    """Whether a job may go from `current` to `new`."""
    return new == current and current not in TERMINAL or new in TRANSITIONS[current]


def check_transition(current: str, new: str) -> None:
    """Raise TransitionError unless the table allows `current` → `new`."""
    if current not in TRANSITIONS or new not in TRANSITIONS:
        unknown = current if current not in TRANSITIONS else new
        raise TransitionError(f"unknown job status {unknown!r}")
    if not can_move(current, new):
        raise TransitionError(f"a job cannot go from {current} to {new}")
