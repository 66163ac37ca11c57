"""Sans-IO collector: pgoutput messages in, whole transactions and relation events out.

Keeps the relation cache that pgoutput relies on (a Relation message precedes the first
change of a table in a session and follows any schema change), resolves unchanged-TOAST
placeholders against the old row, and numbers changes with Electric's op offsets (2*k).
"""

from __future__ import annotations

from shapesync.changes import Delete, Insert, Relation, Row, Transaction, Truncate, Update
from shapesync.pg.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    DeleteMessage,
    Ignored,
    InsertMessage,
    Message,
    RelationMessage,
    TruncateMessage,
    UpdateMessage,
)


class ProtocolError(RuntimeError):
    pass


def _row(relation: Relation, values: list) -> Row:
    return dict(zip(relation.columns, values, strict=True))


class Collector:
    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self._txn: Transaction | None = None
        self._count = 0

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None

    def feed(self, message: Message) -> Transaction | Relation | None:
        """Consume one message; return a finished Transaction, a new Relation, or None."""
        if isinstance(message, (InsertMessage, UpdateMessage, DeleteMessage)):
            self._change(message)
            return None
        if isinstance(message, Begin):
            self._txn = Transaction(xid=message.xid, commit_lsn=message.final_lsn)
            self._count = 0
            return None
        if isinstance(message, Commit):
            txn = self._require_txn()
            txn.end_lsn = message.end_lsn
            txn.commit_lsn = message.commit_lsn
            self._txn = None
            return txn
        if isinstance(message, RelationMessage):
            relation = Relation(
                message.relation_id,
                message.schema,
                message.name,
                tuple(c.name for c in message.columns),
                tuple(c.type_oid for c in message.columns),
            )
            self.relations[message.relation_id] = relation
            return relation
        if isinstance(message, TruncateMessage):
            txn = self._require_txn()
            rels = tuple(self._relation(r) for r in message.relation_ids)
            txn.changes.append(Truncate(rels, self._next_op()))
            txn.relations_touched.update(message.relation_ids)
            return None
        if isinstance(message, Ignored):
            return None
        raise ProtocolError(f"unexpected message {message!r}")

    def _require_txn(self) -> Transaction:
        if self._txn is None:
            raise ProtocolError("change outside a transaction")
        return self._txn

    def _relation(self, relation_id: int) -> Relation:
        try:
            return self.relations[relation_id]
        except KeyError:
            raise ProtocolError(f"change for unknown relation {relation_id}") from None

    def _next_op(self) -> int:
        op = 2 * self._count
        self._count += 1
        return op

    def _change(self, message: InsertMessage | UpdateMessage | DeleteMessage) -> None:
        txn = self._require_txn()
        rel = self._relation(message.relation_id)
        txn.relations_touched.add(rel.relation_id)
        op = self._next_op()
        if isinstance(message, InsertMessage):
            txn.changes.append(Insert(rel, op, _row(rel, message.new)))
        elif isinstance(message, DeleteMessage):
            txn.changes.append(Delete(rel, op, _row(rel, message.old)))
        else:
            old = _row(rel, message.old) if message.old is not None else None
            new = _row(rel, message.new)
            for name in [n for n, v in new.items() if v is UNCHANGED_TOAST]:
                if old is not None and old.get(name) is not UNCHANGED_TOAST:
                    new[name] = old[name]
                else:  # value unknown here: leave it out, it did not change
                    del new[name]
            txn.changes.append(Update(rel, op, old, new))
