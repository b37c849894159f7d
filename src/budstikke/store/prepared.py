"""Statements compiled once for SQLite and run there on the sqlite3 connection itself.

Executing a statement through SQLAlchemy costs about 110 µs of CPU for the
insert of an order, and SQLite needs about 25 µs of that (measured in
process on a 2-core test machine). The rest is SQLAlchemy's cache look-up,
execution context, parameter and result processing, and the greenlet switch
of the async adapter. A `PreparedStatement` compiles its statement for SQLite
once, keeps SQLAlchemy's own bind and result processors for each value
(UUIDs, UTC timestamps, booleans), and on a connection of the inline adapter
(store/sqlite_inline.py) passes the parameters straight to sqlite3. Stored
values are the same either way. On PostgreSQL the statement runs through
SQLAlchemy as usual.

These executions skip SQLAlchemy's cursor events, so `echo` and listeners
such as bench/sqltrace.py do not see them.
"""

from __future__ import annotations

import re
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import UpdateBase

from budstikke.store.sqlite_inline import InlineConnection

SQLITE_DIALECT = sqlite.dialect()

Processor = Callable[[Any], Any] | None

# SQLAlchemy's placeholder for the values of an expanding IN parameter,
# which it fills in at each execution.
EXPANDING_MARKER = re.compile(r"__\[POSTCOMPILE_(\w+)\]")


class PreparedStatement:
    """A statement with its SQLite text and value processors built once.

    Every bind parameter that the statement names must be given to
    `execute`. Literal values in the statement, such as the 1 in
    `tokens - 1` or a fixed `IN` list, are filled in from the statement. An
    expanding parameter (`bindparam(name, expanding=True)`) takes a list.
    Rows come back as named tuples with the statement's column names.

    `columns` names the columns of an INSERT that takes its values from the
    parameters, when they are not all of the table's columns.

    NOTE: on PostgreSQL the statement runs through SQLAlchemy, which takes an
    INSERT's columns from the parameters' keys instead of `columns` and
    returns its own Row objects, which callers read by attribute as well.
    """

    def __init__(
        self, statement: UpdateBase | Select[Any], *, columns: Sequence[str] | None = None
    ) -> None:
        self.statement = statement
        compiled = statement.compile(
            dialect=SQLITE_DIALECT, column_keys=list(columns) if columns is not None else None
        )
        if compiled.positiontup is None:
            raise ValueError("a prepared statement needs positional parameters on SQLite")
        literal_values = list(compiled.literal_execute_params) + [
            bind for bind in compiled.post_compile_params if not bind.expanding
        ]
        if compiled.insert_prefetch or compiled.update_prefetch or literal_values:
            # Column defaults computed in Python, and values rendered into the
            # statement's text, are evaluated per execution by SQLAlchemy,
            # which this class skips.
            raise ValueError(
                f"statement needs per-execution processing and cannot be prepared: {compiled}"
            )
        self.sqlite_sql = compiled.string
        self._expanding = bool(EXPANDING_MARKER.search(self.sqlite_sql))
        self._positions: list[tuple[str, bool, Any, Processor, bool]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(SQLITE_DIALECT).bind_processor(SQLITE_DIALECT)
            self._positions.append(
                (name, bind.required, bind.effective_value, processor, bind.expanding)
            )
        returned = list(statement.exported_columns)
        self._result_processors: list[Processor] = [
            column.type.dialect_impl(SQLITE_DIALECT).result_processor(SQLITE_DIALECT, None)
            for column in returned
        ]
        self._row_type = row_type([str(column.key) for column in returned])

    async def execute(
        self, connection: AsyncConnection, parameters: Mapping[str, Any]
    ) -> list[Any]:
        """Run the statement in the connection's transaction and return its rows.

        On SQLite the connection must be in a transaction that SQLAlchemy
        began (`Database.write()`), which the statement joins.
        """
        sqlite_connection = inline_sqlite_connection(connection)
        if sqlite_connection is None:
            result = await connection.execute(self.statement, dict(parameters))
            return list(result) if result.returns_rows else []
        sql, values = self.sqlite_statement(parameters)
        try:
            rows = sqlite_connection.execute(sql, values).fetchall()
        except sqlite3.Error as error:
            raise as_sqlalchemy_error(sql, values, error) from error
        return [self.process_row(row) for row in rows]

    async def execute_many(
        self, connection: AsyncConnection, parameter_sets: Sequence[Mapping[str, Any]]
    ) -> None:
        """Run the statement once for each set of parameters, in one call to the driver."""
        if not parameter_sets:
            return
        sqlite_connection = inline_sqlite_connection(connection)
        if sqlite_connection is None:
            await connection.execute(self.statement, [dict(values) for values in parameter_sets])
            return
        if self._expanding:
            raise ValueError("a statement with an expanding parameter runs with execute()")
        value_sets = [self.sqlite_values(values) for values in parameter_sets]
        try:
            sqlite_connection.executemany(self.sqlite_sql, value_sets)
        except sqlite3.Error as error:
            raise as_sqlalchemy_error(self.sqlite_sql, value_sets, error) from error

    def sqlite_statement(self, parameters: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """Return the SQLite text with a placeholder for each value of a list, and the values."""
        if not self._expanding:
            return self.sqlite_sql, self.sqlite_values(parameters)
        values: list[Any] = []
        counts: dict[str, int] = {}
        for name, required, fixed_value, processor, expanding in self._positions:
            value = _parameter(parameters, name, required, fixed_value)
            if not expanding:
                values.append(value if processor is None else processor(value))
                continue
            items = list(value)
            counts[name] = len(items)
            values.extend(items if processor is None else [processor(item) for item in items])
        sql = EXPANDING_MARKER.sub(lambda found: ", ".join("?" * counts[found[1]]), self.sqlite_sql)
        return sql, values

    def sqlite_values(self, parameters: Mapping[str, Any]) -> list[Any]:
        values = []
        for name, required, fixed_value, processor, _expanding in self._positions:
            value = _parameter(parameters, name, required, fixed_value)
            values.append(value if processor is None else processor(value))
        return values

    def process_row(self, row: Sequence[Any]) -> Any:
        return self._row_type._make(
            value if processor is None else processor(value)
            for value, processor in zip(row, self._result_processors, strict=True)
        )


def row_type(names: list[str]) -> Any:
    """Return a named tuple class with these fields, for the rows of one statement."""
    return namedtuple("PreparedRow", names, rename=True)


def _parameter(parameters: Mapping[str, Any], name: str, required: bool, fixed_value: Any) -> Any:
    if not required:
        return fixed_value
    if name in parameters:
        return parameters[name]
    raise KeyError(f"prepared statement executed without its parameter {name!r}")


def as_sqlalchemy_error(sql: str, values: Any, error: sqlite3.Error) -> StatementError:
    """Wrap a sqlite3 error in SQLAlchemy's class for it (IntegrityError, OperationalError).

    Callers and the translation of a locked database into a 503 then see the
    same exceptions as for a statement run through SQLAlchemy.
    """
    return DBAPIError.instance(sql, values, error, sqlite3.Error, hide_parameters=True)


def inline_sqlite_connection(connection: AsyncConnection) -> sqlite3.Connection | None:
    """Return the sqlite3 connection under an inline-adapter connection, else None."""
    if connection.dialect.name != "sqlite":
        return None
    driver_connection = connection.sync_connection.connection.driver_connection  # type: ignore[union-attr]
    if not isinstance(driver_connection, InlineConnection):
        return None
    return driver_connection.sqlite_connection
