"""The shared vocabulary of decoded changes: small frozen values, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field

Row = dict[str, "str | None"]


@dataclass(frozen=True, slots=True)
class Relation:
    relation_id: int
    schema: str
    name: str
    columns: tuple[str, ...]
    type_oids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Insert:
    relation: Relation
    op: int  # 2*k, position inside the transaction
    new: Row


@dataclass(frozen=True, slots=True)
class Update:
    relation: Relation
    op: int
    old: Row | None  # None when the table's replica identity gave no old row
    new: Row


@dataclass(frozen=True, slots=True)
class Delete:
    relation: Relation
    op: int
    old: Row


@dataclass(frozen=True, slots=True)
class Truncate:
    relations: tuple[Relation, ...]
    op: int


Change = Insert | Update | Delete | Truncate


@dataclass(slots=True)
class Transaction:
    xid: int
    commit_lsn: int
    end_lsn: int = 0
    changes: list[Change] = field(default_factory=list)
    relations_touched: set[int] = field(default_factory=set)
