"""decisions.jsonl: a person's verdicts on rows (`factory review`), honoured by every later command.

Each line is one decision on one row, keyed by the row's id (stable across builds: it comes from the
request that made the row): accept (keep it whatever a filter says), reject (drop it whatever the
filters say) or relabel (give it this label, and keep it), with an optional note, who and when. The
file is only ever appended to, under an exclusive lock, one fsync per append, so two browser tabs or
two processes cannot interleave a line, and a crash tears at most the last one (skipped on reading).
The latest decision on a row wins.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from factory.run.store import read_jsonl, set_aside_torn_tail

DECISIONS = "decisions.jsonl"
ACCEPT, REJECT, RELABEL = "accept", "reject", "relabel"
ACTIONS = (ACCEPT, REJECT, RELABEL)
REVIEW_STAGE = "review"  # the funnel stage and stages.json entry where the decisions apply
REJECTED_BY_REVIEWER = "rejected_by_reviewer"


@dataclass(frozen=True, slots=True)
class Decision:
    """One person's decision on one row."""

    id: str
    action: str
    label: str | None = None
    note: str = ""
    who: str = ""
    at: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"a decision's action is one of {', '.join(ACTIONS)}, not {self.action!r}")
        if (self.action == RELABEL) != (self.label is not None):
            raise ValueError("a relabel names the new label, and only a relabel does")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Where a row stands after every decision on it: kept or not, its label if a person changed it."""

    keep: bool
    label: str | None
    note: str
    decisions: int


def append(run_dir: Path, decisions: Iterable[Decision]) -> int:
    """Append decisions (stamped with the time when they carry none) under an exclusive lock; how many."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [json.dumps({**asdict(d), "at": d.at or stamp}, ensure_ascii=False) + "\n" for d in decisions]
    if not lines:
        return 0
    path = Path(run_dir) / DECISIONS
    with path.open("a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            set_aside_torn_tail(path)  # a crash's half line must not glue onto the first new one
            handle.seek(0, os.SEEK_END)
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return len(lines)


def decisions(run_dir: Path) -> list[Decision]:
    """Every decision, in the order it was made (unreadable lines skipped)."""
    out = []
    for row in read_jsonl(Path(run_dir) / DECISIONS):
        try:
            out.append(Decision(**{k: row.get(k) for k in ("id", "action", "label")},
                                **{k: str(row.get(k) or "") for k in ("note", "who", "at")}))
        except (TypeError, ValueError):
            continue  # a hand-edited line that is not a decision
    return out


def verdicts(run_dir: Path) -> dict[str, Verdict]:
    """Each decided row's verdict: the latest decision wins; a relabel also keeps the row."""
    state: dict[str, Verdict] = {}
    for d in decisions(run_dir):
        before = state.get(d.id)
        # A relabel sets the label, an accept keeps the one a person gave before, a reject drops the row (and it).
        label = d.label if d.action == RELABEL else (before.label if before and d.action == ACCEPT else None)
        state[d.id] = Verdict(keep=d.action != REJECT, label=label, note=d.note or (before.note if before else ""),
                              decisions=(before.decisions if before else 0) + 1)
    return state


def unapplied(run_dir: Path, applied: int) -> int:
    """Decisions made after the build that applied `applied` of them (its manifest's review.decisions)."""
    return max(0, len(decisions(run_dir)) - applied)
