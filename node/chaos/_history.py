"""A Jepsen-style history: every operation's invocation and its completion.

Each client operation is an ``invoke`` event followed by exactly one of
``ok`` (the node acknowledged it), ``fail`` (it certainly did not happen: the
connection was refused, or the node answered with a refusal) or ``info``
(unknown: a timeout or a reset after the request was sent — it may or may
not have taken effect). This is the vocabulary of Jepsen's histories
(Kingsbury, jepsen.history): an ``info`` operation must be treated as
concurrent with everything after its invocation, and a checker has to
accept either outcome — but never both, and never twice.

A write records the context token it carried (what its client had read),
so a checker can tell from the history alone which writes were concurrent:
``a`` and ``b`` are concurrent iff neither's dot is in the other's context.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["COMPLETIONS", "OP_FUNCTIONS", "Event", "History", "HistoryError", "Op"]

COMPLETIONS = ("ok", "fail", "info")
#: write: a shared register write; resolve: a reviewer's resolution;
#: increment: a counter; append: a log entry; read: a shared field read.
OP_FUNCTIONS = ("write", "resolve", "increment", "append", "read")


class HistoryError(ValueError):
    """A history that does not follow invoke-then-one-completion."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    op: int  # operation id: an invoke and its completion share it
    type: str  # invoke | ok | fail | info
    f: str  # one of OP_FUNCTIONS
    process: str  # the client that issued it
    node: str  # the node it was sent to
    entity: str
    field: str
    time: float  # seconds since the run started (monotonic)
    value: Any = None  # written value, increment amount, log id, or the value read
    context: str | None = None  # write/resolve: the context token it carried
    dot: str | None = None  # ok write/resolve: the dot the node gave it
    covers: tuple[str, ...] = ()  # resolve: the sibling dots it settled
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v not in (None, ())}
        out["covers"] = list(self.covers) if self.covers else None
        return {k: v for k, v in out.items() if v is not None}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Event:
        data = dict(data)
        data["covers"] = tuple(data.get("covers") or ())
        return Event(**data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """An invocation paired with its completion."""

    invoke: Event
    done: Event

    @property
    def status(self) -> str:
        return self.done.type

    @property
    def key(self) -> tuple[str, str]:
        return (self.invoke.entity, self.invoke.field)


class History:
    """An append-only list of events (kept in memory, saved as JSON lines)."""

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self.events: list[Event] = list(events)
        self._next = max((e.op for e in self.events), default=0) + 1

    def new_op(self) -> int:
        op = self._next
        self._next += 1
        return op

    def add(self, event: Event) -> None:
        self.events.append(event)

    def ops(self) -> list[Op]:
        """Pairs in invocation order; raises HistoryError on a malformed history.

        An invocation with no completion (the run was cut short) counts as
        ``info``: it may have happened.
        """
        invokes: dict[int, Event] = {}
        done: dict[int, Event] = {}
        order: list[int] = []
        for e in self.events:
            if e.f not in OP_FUNCTIONS:
                raise HistoryError(f"op {e.op}: unknown function {e.f!r}")
            if e.type == "invoke":
                if e.op in invokes:
                    raise HistoryError(f"op {e.op} is invoked twice")
                invokes[e.op] = e
                order.append(e.op)
            elif e.type in COMPLETIONS:
                if e.op not in invokes:
                    raise HistoryError(f"op {e.op} completes ({e.type}) before it is invoked")
                if e.op in done:
                    raise HistoryError(f"op {e.op} completes twice")
                done[e.op] = e
            else:
                raise HistoryError(f"op {e.op}: unknown event type {e.type!r}")
        out = []
        for op in order:
            inv = invokes[op]
            fin = done.get(op)
            if fin is None:
                fin = Event(
                    op=op,
                    type="info",
                    f=inv.f,
                    process=inv.process,
                    node=inv.node,
                    entity=inv.entity,
                    field=inv.field,
                    time=inv.time,
                    error="no completion recorded",
                )
            out.append(Op(invoke=inv, done=fin))
        return out

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def save(self, path: Path) -> None:
        with path.open("w") as f:
            for e in self.events:
                f.write(json.dumps(e.to_json(), sort_keys=True) + "\n")

    @staticmethod
    def load(path: Path) -> History:
        events = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(Event.from_json(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise HistoryError(f"{path}:{n}: not a history event ({exc})") from None
        return History(events)
