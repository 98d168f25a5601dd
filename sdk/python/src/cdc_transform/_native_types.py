"""Plain stand-ins for the WIT types componentize-py generates (``wit_world.imports.types``), so the
SDK and plugins run natively in unit tests. Same class and field names as the generated ones."""

from dataclasses import dataclass
from enum import Enum
from typing import Any, List, Optional


class Operation(Enum):
    """The kind of change."""

    CREATE = 0
    UPDATE = 1
    DELETE = 2
    READ = 3
    TRUNCATE = 4


@dataclass
class DecimalType:
    """Precision and scale."""

    precision: int
    scale: int


def _unit(name: str) -> type:
    return dataclass(type(name, (), {"__doc__": name}))


def _boxed(name: str) -> type:
    return dataclass(type(name, (), {"__annotations__": {"value": Any}, "__doc__": name}))


_KINDS = ("Boolean", "Int32", "Int64", "Float64", "Text", "Bytes", "Decimal", "Date", "Timestamp", "Timestamptz", "Json")
for _k in _KINDS:
    globals()["ColumnType_" + _k] = _boxed("ColumnType_" + _k) if _k == "Decimal" else _unit("ColumnType_" + _k)
    globals()["ColumnValues_" + _k] = _boxed("ColumnValues_" + _k)


@dataclass
class VarArray:
    """Packed variable-length values."""

    offsets: List[int]
    data: bytes


@dataclass
class DecimalArray:
    """16-byte little-endian unscaled values."""

    type: DecimalType
    unscaled: bytes


@dataclass
class Column:
    """One column of a batch."""

    name: str
    present: List[bool]
    values: Any


@dataclass
class TableRef:
    """A source table."""

    schema: str
    table: str


@dataclass
class SourceInfo:
    """Where one change came from."""

    table: int
    lsn: Optional[int]
    txid: Optional[int]
    ts_ms: int
    snapshot: bool


@dataclass
class Batch:
    """A batch, column by column."""

    ops: List[Operation]
    sources: List[SourceInfo]
    tables: List[TableRef]
    after: List[Column]
    before: List[Column]


Outcome_Keep = _unit("Outcome_Keep")
Outcome_Drop = _unit("Outcome_Drop")
Outcome_Reject = _boxed("Outcome_Reject")


@dataclass
class Output:
    """The result of one batch."""

    outcomes: List[Any]
    writes: List[Column]


@dataclass
class ColumnDef:
    """A written column."""

    name: str
    type: Any
    doc: Optional[str]


@dataclass
class Description:
    """What a plugin touches."""

    name: str
    version: str
    reads: List[str]
    reads_before: bool
    writes: List[ColumnDef]
    removes: List[str]
