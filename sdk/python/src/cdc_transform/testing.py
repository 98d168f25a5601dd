"""Run a transform natively, through the same batch loop the component runs, for unit tests.

    from cdc_transform.testing import event, run
    results = run(MyTransform(), [event("create", email="a@b.c", lifetime_value=Decimal("1.00"))])
    assert results[0].outcome == Keep
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Iterable, List, Optional

from . import Decimal, Json, Outcome, Reject, Keep, Drop, Transform, _decode_column, _wt, process_batch

_OPS = {"create": 0, "update": 1, "delete": 2, "read": 3, "truncate": 4}


class TestEvent:
    """An event to feed to :func:`run`: operation, after image and optional before image."""

    __test__ = False  # not a pytest test class

    def __init__(self, op: str = "create", after: Optional[dict] = None, before: Optional[dict] = None):
        self.op = op
        self.after = dict(after or {})
        self.before = dict(before or {})


def event(op: str = "create", before: Optional[dict] = None, **after: Any) -> TestEvent:
    """A :class:`TestEvent` with ``after`` given as keyword arguments."""
    return TestEvent(op, after, before)


class Result:
    """The outcome and written values of one event."""

    def __init__(self, outcome: Outcome, writes: dict):
        self.outcome = outcome
        self.writes = writes

    def __repr__(self) -> str:
        return f"Result({self.outcome!r}, {self.writes!r})"


def _kind(values: List[Any]) -> str:
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            return "boolean"
        if isinstance(v, int):
            return "int64"
        if isinstance(v, float):
            return "float64"
        if isinstance(v, Decimal):
            return "decimal"
        if isinstance(v, Json):
            return "json"
        if isinstance(v, (bytes, bytearray)):
            return "bytes"
        if isinstance(v, _dt.datetime):
            return "timestamptz" if v.tzinfo else "timestamp"
        if isinstance(v, _dt.date):
            return "date"
        return "text"
    return "text"


def _column(name: str, values: List[Any]) -> Any:
    from . import ColumnDef, ColumnType, _encode_column

    kind = _kind(values)
    if kind == "decimal":
        scale = max(-v.as_tuple().exponent for v in values if v is not None)
        return _encode_column(ColumnDef(name, ColumnType.decimal(38, max(scale, 0))), values)
    return _encode_column(ColumnDef(name, ColumnType(kind)), values)


def build_batch(events: Iterable[TestEvent]) -> Any:
    """The WIT batch of ``events`` (column types inferred from the Python values)."""
    events = list(events)
    names_after = sorted({k for e in events for k in e.after})
    names_before = sorted({k for e in events for k in e.before})
    return _wt.Batch(
        ops=[_wt.Operation(_OPS[e.op]) for e in events],
        sources=[_wt.SourceInfo(0, None, None, 0, False) for _ in events],
        tables=[_wt.TableRef("public", "test")],
        after=[_column(n, [e.after.get(n) for e in events]) for n in names_after],
        before=[_column(n, [e.before.get(n) for e in events]) for n in names_before],
    )


def run(transform: Transform, events: Iterable[TestEvent]) -> List[Result]:
    """Runs ``transform`` over ``events`` as one batch; one :class:`Result` per event."""
    desc = type(transform).describe()
    output = process_batch(transform, desc, build_batch(events))
    columns = {c.name: _decode_column(c) for c in output.writes}
    results = []
    for i, o in enumerate(output.outcomes):
        kind = type(o).__name__
        outcome = Keep if kind == "Outcome_Keep" else Drop if kind == "Outcome_Drop" else Reject(o.value)
        results.append(Result(outcome, {n: v[i] for n, v in columns.items()}))
    return results
