"""Write cdc-host transforms in Python over row-style change events.

The host hands a plugin batches of change events column by column (``wit/transform.wit``, world
``cdc:transform/transform@0.1.0``). This package hides that: subclass :class:`Transform` with a
:class:`Description` of the columns you read and write, a ``configure`` classmethod taking a
:class:`Config`, and :meth:`Transform.apply` deciding for one :class:`Event` (``Keep``, ``Drop`` or
``Reject(reason)``). Then export it in your app module as ``Transformer = export(MyTransform)`` and
build with ``componentize-py -d wit -w transform componentize app -o plugin.wasm``.

Values are typed: text ``str``, integers ``int``, ``float``, ``bool``, ``bytes``, exact decimals
``decimal.Decimal``, dates ``datetime.date``, timestamps ``datetime.datetime`` (naive for
``timestamp``, UTC-aware for ``timestamptz``), JSON documents :class:`Json` (a ``str``); null is
``None``. Columns are decoded once per batch, the first time an event asks for them.

:mod:`cdc_transform.testing` runs the same batch loop natively, without WebAssembly.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import enum as _enum
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

try:  # inside a component: the bindings componentize-py generates
    from wit_world.imports import types as _wt  # type: ignore[import-not-found]
    from wit_world.imports import log as _wlog  # type: ignore[import-not-found]
except ImportError:  # natively (unit tests): plain stand-ins with the same shapes
    from . import _native_types as _wt  # type: ignore[no-redef]

    _wlog = None

__all__ = [
    "ColumnDef",
    "ColumnType",
    "Config",
    "Decimal",
    "Description",
    "Drop",
    "Event",
    "Json",
    "Keep",
    "Op",
    "Outcome",
    "Reject",
    "Source",
    "Transform",
    "export",
    "format_value",
    "log",
    "type_name",
]

Decimal = _decimal.Decimal
"""Exact decimals are :class:`decimal.Decimal` values."""

_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_EPOCH = _dt.datetime(1970, 1, 1)
_EPOCH_UTC = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_ONE_US = _dt.timedelta(microseconds=1)


class Json(str):
    """A JSON document (UTF-8 text), told apart from plain text."""


class Op(_enum.Enum):
    """The kind of change an event describes."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    READ = "read"
    TRUNCATE = "truncate"


_OPS = [Op.CREATE, Op.UPDATE, Op.DELETE, Op.READ, Op.TRUNCATE]


class ColumnType:
    """The type of a declared column: ``ColumnType("text")`` or ``ColumnType.decimal(12, 2)``."""

    KINDS = (
        "boolean",
        "int32",
        "int64",
        "float64",
        "text",
        "bytes",
        "decimal",
        "date",
        "timestamp",
        "timestamptz",
        "json",
    )

    def __init__(self, kind: str, precision: int = 0, scale: int = 0):
        if kind not in self.KINDS:
            raise ValueError(f"unknown column type `{kind}` (one of {', '.join(self.KINDS)})")
        self.kind = kind
        self.precision = precision
        self.scale = scale

    @classmethod
    def decimal(cls, precision: int, scale: int) -> "ColumnType":
        """A decimal with ``precision`` digits, ``scale`` of them after the point."""
        return cls("decimal", precision, scale)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ColumnType) and (self.kind, self.precision, self.scale) == (
            other.kind,
            other.precision,
            other.scale,
        )

    def __repr__(self) -> str:
        return f"decimal({self.precision},{self.scale})" if self.kind == "decimal" else self.kind

    def _to_wit(self) -> Any:
        if self.kind == "decimal":
            return _wt.ColumnType_Decimal(_wt.DecimalType(self.precision, self.scale))
        return getattr(_wt, "ColumnType_" + self.kind.capitalize())()


class ColumnDef:
    """A column the plugin writes: name, type and an optional doc string."""

    def __init__(self, name: str, type: ColumnType, doc: Optional[str] = None):
        self.name = name
        self.type = type
        self.doc = doc

    @classmethod
    def text(cls, name: str, doc: Optional[str] = None) -> "ColumnDef":
        """A text column."""
        return cls(name, ColumnType("text"), doc)

    @classmethod
    def int64(cls, name: str, doc: Optional[str] = None) -> "ColumnDef":
        """A 64-bit integer column."""
        return cls(name, ColumnType("int64"), doc)

    @classmethod
    def decimal(cls, name: str, precision: int, scale: int, doc: Optional[str] = None) -> "ColumnDef":
        """An exact decimal column."""
        return cls(name, ColumnType.decimal(precision, scale), doc)

    def _to_wit(self) -> Any:
        return _wt.ColumnDef(name=self.name, type=self.type._to_wit(), doc=self.doc)


class Description:
    """What the plugin is and which columns it reads (``"*"``: all), writes and removes."""

    def __init__(
        self,
        name: str,
        version: str,
        reads: Iterable[str] = (),
        writes: Iterable[ColumnDef] = (),
        removes: Iterable[str] = (),
        reads_before: bool = False,
    ):
        self.name = name
        self.version = version
        self.reads = list(reads)
        self.writes = list(writes)
        self.removes = list(removes)
        self.reads_before = reads_before

    def _to_wit(self) -> Any:
        return _wt.Description(
            name=self.name,
            version=self.version,
            reads=list(self.reads),
            reads_before=self.reads_before,
            writes=[w._to_wit() for w in self.writes],
            removes=list(self.removes),
        )


class Config:
    """The plugin's key/value configuration (values are strings, as the host passes them)."""

    def __init__(self, pairs: Iterable[tuple] | Mapping[str, str] = ()):
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        self._values = {str(k): str(v) for k, v in items}

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """The raw value of ``key``, or ``default``."""
        return self._values.get(key, default)

    def require(self, key: str) -> str:
        """The value of ``key``; raises ``ValueError`` naming the key when it is unset."""
        if key not in self._values:
            raise ValueError(f"config key `{key}` is required")
        return self._values[key]

    def flag(self, key: str, default: bool) -> bool:
        """A boolean: ``true/false``, ``yes/no``, ``on/off``, ``1/0`` (any case); ``default`` when unset."""
        raw = self._values.get(key)
        if raw is None:
            return default
        v = raw.strip().lower()
        if v in ("true", "yes", "on", "1"):
            return True
        if v in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"config key `{key}`: invalid value `{raw}`: expected true or false")

    def decimal(self, key: str, default: Decimal) -> Decimal:
        """An exact decimal (``[+-]digits[.digits]``); ``default`` when unset."""
        raw = self._values.get(key)
        if raw is None:
            return default
        try:
            return parse_decimal(raw)
        except ValueError as e:
            raise ValueError(f"config key `{key}`: invalid value `{raw}`: {e}") from None

    def expect_only(self, known: Sequence[str]) -> None:
        """Raises ``ValueError`` naming the first key outside ``known`` (catches misspelt keys)."""
        for k in sorted(self._values):
            if k not in known:
                raise ValueError(f"unknown config key `{k}` (known keys: {', '.join(known)})")

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def items(self):
        """The pairs, in key order."""
        return sorted(self._values.items())


def parse_decimal(text: str) -> Decimal:
    """Parses ``[+-]digits[.digits]`` (surrounding whitespace allowed), keeping the written scale."""
    t = text.strip()
    body = t[1:] if t[:1] in ("+", "-") else t
    intpart, _, frac = body.partition(".")
    if not intpart and not frac:
        raise ValueError("no digits")
    if not (intpart + frac).isascii() or not (intpart + frac).isdigit():
        raise ValueError("only digits, one '.' and a leading sign are allowed")
    return Decimal(t)


class Outcome:
    """What happens to one event: :data:`Keep`, :data:`Drop` or :func:`Reject`."""

    __slots__ = ("kind", "reason")

    def __init__(self, kind: str, reason: Optional[str] = None):
        self.kind = kind
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Outcome) and (self.kind, self.reason) == (other.kind, other.reason)

    def __repr__(self) -> str:
        return f"Reject({self.reason!r})" if self.kind == "reject" else self.kind.capitalize()


Keep = Outcome("keep")
"""Keep the event, with the plugin's writes applied."""
Drop = Outcome("drop")
"""Filter the event out on purpose (counted, not an error)."""


def Reject(reason: str) -> Outcome:  # noqa: N802 (reads like the other outcomes)
    """Refuse the event: it goes to the dead-letter table with ``reason``."""
    return Outcome("reject", str(reason))


class Source:
    """Where an event came from."""

    __slots__ = ("schema", "table", "lsn", "txid", "ts_ms", "snapshot")

    def __init__(self, schema, table, lsn, txid, ts_ms, snapshot):
        self.schema = schema
        self.table = table
        self.lsn = lsn
        self.txid = txid
        self.ts_ms = ts_ms
        self.snapshot = snapshot


class ColumnError(Exception):
    """A column was used that the description does not declare (the event is rejected)."""


def _var(values: Any, present: Sequence[bool], decode: Callable[[bytes], Any]) -> list:
    o, d = values.offsets, values.data
    return [decode(d[o[i] : o[i + 1]]) if p else None for i, p in enumerate(present)]


def _decode_column(col: Any) -> list:
    """The values of a WIT column as Python values (``None`` where not present)."""
    present = col.present
    kind = type(col.values).__name__.split("_", 1)[1]
    v = col.values.value
    if kind == "Text":
        return _var(v, present, lambda b: b.decode("utf-8"))
    if kind == "Json":
        return _var(v, present, lambda b: Json(b.decode("utf-8")))
    if kind == "Bytes":
        return _var(v, present, bytes)
    if kind == "Decimal":
        scale = v.type.scale
        raw = v.unscaled
        return [
            Decimal(f"{int.from_bytes(raw[i * 16 : i * 16 + 16], 'little', signed=True)}E-{scale}")
            if p
            else None
            for i, p in enumerate(present)
        ]
    if kind == "Date":
        return [_dt.date.fromordinal(_EPOCH_ORDINAL + d) if p else None for d, p in zip(v, present)]
    if kind == "Timestamp":
        return [_EPOCH + t * _ONE_US if p else None for t, p in zip(v, present)]
    if kind == "Timestamptz":
        return [_EPOCH_UTC + t * _ONE_US if p else None for t, p in zip(v, present)]
    return [x if p else None for x, p in zip(v, present)]


class _Image:
    """The columns of one row image, decoded on first use."""

    def __init__(self, columns: Sequence[Any], n: int):
        self._columns = {c.name: c for c in columns}
        self._decoded: dict = {}
        self._n = n

    def values(self, name: str) -> Optional[list]:
        got = self._decoded.get(name)
        if got is None:
            col = self._columns.get(name)
            if col is None:
                return None
            got = self._decoded[name] = _decode_column(col)
        return got


class Event:
    """One change event of a batch, as a row: read declared columns, set declared writes.

    Reading a column the description does not declare, or setting one it does not write, raises
    :class:`ColumnError`, which rejects the event with a message naming the column.
    """

    __slots__ = ("_batch", "_row")

    def __init__(self, batch: "_BatchView", row: int):
        self._batch = batch
        self._row = row

    @property
    def op(self) -> Op:
        """The operation."""
        return _OPS[self._batch.ops[self._row].value]

    @property
    def source(self) -> Source:
        """Where the event came from (schema, table, lsn, txid, ts_ms, snapshot)."""
        s = self._batch.sources[self._row]
        t = self._batch.tables[s.table]
        return Source(t.schema, t.table, s.lsn, s.txid, s.ts_ms, s.snapshot)

    def get(self, name: str) -> Any:
        """The after-image value of ``name`` (``None`` when null or absent)."""
        b = self._batch
        if not b.reads_all and name not in b.reads:
            raise ColumnError(f"column `{name}` is not declared in reads")
        vals = b.after.values(name)
        return None if vals is None else vals[self._row]

    def text(self, name: str) -> Optional[str]:
        """The text of ``name``; ``None`` when null, absent or not text."""
        v = self.get(name)
        return v if isinstance(v, str) and not isinstance(v, Json) else None

    def before(self, name: str) -> Any:
        """The before-image value of ``name`` (needs ``reads_before=True``)."""
        b = self._batch
        if not b.reads_before:
            raise ColumnError(f"before image of `{name}` read, but reads_before is not declared")
        if not b.reads_all and name not in b.reads:
            raise ColumnError(f"column `{name}` is not declared in reads")
        vals = b.before.values(name)
        return None if vals is None else vals[self._row]

    def set(self, name: str, value: Any) -> None:
        """Sets the declared write column ``name`` for this event (``None`` for null)."""
        col = self._batch.writes.get(name)
        if col is None:
            raise ColumnError(f"column `{name}` is not declared in writes")
        col[self._row] = value


class _BatchView:
    def __init__(self, batch: Any, desc: Description):
        n = len(batch.ops)
        self.n = n
        self.ops = batch.ops
        self.sources = batch.sources
        self.tables = batch.tables
        self.reads_all = "*" in desc.reads
        self.reads = set(desc.reads)
        self.reads_before = desc.reads_before
        self.after = _Image(batch.after, n)
        self.before = _Image(batch.before, n)
        self.writes = {w.name: [None] * n for w in desc.writes}


class Transform:
    """Base class of a transform. Override :meth:`describe`, optionally :meth:`configure`, and :meth:`apply`."""

    @staticmethod
    def describe() -> Description:
        """What the plugin is and which columns it touches. Must not depend on configuration."""
        raise NotImplementedError

    @classmethod
    def configure(cls, config: Config) -> "Transform":
        """Builds the plugin from its configuration; raise ``ValueError`` naming key and value on errors."""
        return cls()

    def apply(self, event: Event) -> Outcome:
        """Decides what happens to one event (``None`` counts as :data:`Keep`)."""
        raise NotImplementedError


def type_name(value: Any) -> str:
    """The WIT type name of a value as :meth:`Event.get` returns it (``"null"`` for ``None``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, Json):
        return "json"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, _dt.datetime):
        return "timestamptz" if value.tzinfo is not None else "timestamp"
    if isinstance(value, _dt.date):
        return "date"
    return type(value).__name__


def format_value(value: Any) -> str:
    """Formats a value for messages exactly as every cdc-host SDK does (decimals keep their scale)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, _dt.datetime):
        base = _EPOCH_UTC if value.tzinfo is not None else _EPOCH
        us = (value - base) // _ONE_US
        return f"{type_name(value)}({us})"
    if isinstance(value, _dt.date):
        return f"date({value.toordinal() - _EPOCH_ORDINAL})"
    return str(value)


# ---- output encoding ----


def _pack_var(values: list, encode: Callable[[Any], bytes]) -> Any:
    offsets = [0]
    chunks = []
    total = 0
    for v in values:
        if v is not None:
            b = encode(v)
            chunks.append(b)
            total += len(b)
        offsets.append(total)
    return _wt.VarArray(offsets=offsets, data=b"".join(chunks))


def _to_unscaled(v: Any, scale: int) -> int:
    d = v if isinstance(v, Decimal) else Decimal(v) if isinstance(v, (int, str)) else None
    if d is None:
        raise TypeError(f"{type_name(v)} value for a decimal column")
    q = d.scaleb(scale, _decimal.Context(prec=80))
    if q != q.to_integral_value():
        raise ValueError(f"{format_value(d)} has more than {scale} fractional digits")
    return int(q)


def _encode_column(defn: ColumnDef, values: list) -> Any:
    kind = defn.type.kind
    present = [v is not None for v in values]
    if kind in ("text", "json"):
        packed = _pack_var(values, lambda s: s.encode("utf-8"))
        cv = _wt.ColumnValues_Text(packed) if kind == "text" else _wt.ColumnValues_Json(packed)
    elif kind == "bytes":
        cv = _wt.ColumnValues_Bytes(_pack_var(values, bytes))
    elif kind == "decimal":
        scale = defn.type.scale
        raw = b"".join(
            (_to_unscaled(v, scale) if v is not None else 0).to_bytes(16, "little", signed=True)
            for v in values
        )
        cv = _wt.ColumnValues_Decimal(
            _wt.DecimalArray(type=_wt.DecimalType(defn.type.precision, scale), unscaled=raw)
        )
    elif kind == "date":
        cv = _wt.ColumnValues_Date(
            [0 if v is None else v if isinstance(v, int) else v.toordinal() - _EPOCH_ORDINAL for v in values]
        )
    elif kind in ("timestamp", "timestamptz"):
        base = _EPOCH_UTC if kind == "timestamptz" else _EPOCH
        us = [0 if v is None else v if isinstance(v, int) else (v - base) // _ONE_US for v in values]
        cv = _wt.ColumnValues_Timestamp(us) if kind == "timestamp" else _wt.ColumnValues_Timestamptz(us)
    elif kind == "boolean":
        cv = _wt.ColumnValues_Boolean([bool(v) for v in values])
    elif kind == "float64":
        cv = _wt.ColumnValues_Float64([0.0 if v is None else float(v) for v in values])
    else:
        cls = _wt.ColumnValues_Int32 if kind == "int32" else _wt.ColumnValues_Int64
        cv = cls([0 if v is None else int(v) for v in values])
    return _wt.Column(name=defn.name, present=present, values=cv)


def _wit_outcome(o: Any) -> Any:
    if o is None or o is Keep:
        return _wt.Outcome_Keep()
    if o is Drop:
        return _wt.Outcome_Drop()
    if isinstance(o, Outcome):
        if o.kind == "reject":
            return _wt.Outcome_Reject(o.reason or "")
        return _wt.Outcome_Keep() if o.kind == "keep" else _wt.Outcome_Drop()
    return _wt.Outcome_Reject(f"apply returned {o!r}, not an outcome")


def process_batch(transform: Transform, desc: Description, batch: Any) -> Any:
    """Runs ``transform`` over one WIT batch: one outcome per event, one column per declared write.

    An exception in :meth:`Transform.apply` rejects that event with its message; a value that does
    not fit its declared column rejects the event that set it.
    """
    view = _BatchView(batch, desc)
    outcomes = []
    append = outcomes.append
    event = Event(view, 0)
    apply = transform.apply
    for row in range(view.n):
        event._row = row
        try:
            append(_wit_outcome(apply(event)))
        except Exception as e:  # reported per event, as the contract asks
            append(_wt.Outcome_Reject(str(e) or type(e).__name__))
            for col in view.writes.values():
                col[row] = None
    writes = []
    for w in desc.writes:
        values = view.writes[w.name]
        try:
            writes.append(_encode_column(w, values))
        except (TypeError, ValueError, AttributeError):
            # find the offending events, reject them, and encode the rest
            for row, v in enumerate(values):
                if v is None:
                    continue
                try:
                    _encode_column(w, [v])
                except (TypeError, ValueError, AttributeError) as e:
                    outcomes[row] = _wt.Outcome_Reject(f"column `{w.name}`: {e}")
                    values[row] = None
            writes.append(_encode_column(w, values))
    return _wt.Output(outcomes=outcomes, writes=writes)


class _Logger:
    """Logging into the host's log (for configuration and batch-level messages, not per event)."""

    def _write(self, level: str, message: str) -> None:
        if _wlog is None:
            import sys

            print(f"[{level}] {message}", file=sys.stderr)
        else:
            _wlog.write(getattr(_wlog.Level, level.upper()), message)

    def trace(self, message: str) -> None:
        """Logs at trace level."""
        self._write("trace", message)

    def debug(self, message: str) -> None:
        """Logs at debug level."""
        self._write("debug", message)

    def info(self, message: str) -> None:
        """Logs at info level."""
        self._write("info", message)

    def warn(self, message: str) -> None:
        """Logs at warn level."""
        self._write("warn", message)

    def error(self, message: str) -> None:
        """Logs at error level."""
        self._write("error", message)


log = _Logger()
"""The host log: ``log.info("...")``."""


def export(cls: type) -> type:
    """The ``Transformer`` export class for ``cls``: put ``Transformer = export(MyTransform)`` in the app module.

    ``describe`` calls ``cls.describe()``; ``configure`` builds the instance with ``cls.configure``
    (a raised exception becomes the configure error); ``process`` runs the batch loop. Before a
    successful ``configure`` every event is rejected.
    """

    class Transformer:
        _instance: Optional[Transform] = None
        _desc: Optional[Description] = None

        def describe(self) -> Any:
            return cls.describe()._to_wit()

        def configure(self, config: list) -> None:
            Transformer._instance = None
            Transformer._desc = cls.describe()
            try:
                Transformer._instance = cls.configure(Config(config))
            except Exception as e:
                try:
                    from componentize_py_types import Err  # type: ignore[import-not-found]
                except ImportError:
                    raise ValueError(str(e)) from None
                raise Err(str(e)) from None

        def process(self, batch: Any) -> Any:
            inst, desc = Transformer._instance, Transformer._desc
            if inst is None or desc is None:
                desc = cls.describe()
                n = len(batch.ops)
                reason = "plugin is not configured: configure did not succeed"
                return _wt.Output(
                    outcomes=[_wt.Outcome_Reject(reason) for _ in range(n)],
                    writes=[_encode_column(w, [None] * n) for w in desc.writes],
                )
            return process_batch(inst, desc, batch)

    Transformer.__name__ = Transformer.__qualname__ = "Transformer"
    return Transformer
