"""The operator CLIs' one error policy, shared by the root CLI and the component sub-apps (which the
root CLI imports, so it cannot live in ``tenant_provisioner.cli.main``).

Exit codes: 2 bad input or configuration, 1 any other failure; the error as one line on stderr.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from tenant_provisioner.errors import PlatformError

F = TypeVar("F", bound=Callable[..., Any])
_err = Console(stderr=True)
# Without a terminal rich would lay tables out in 80 columns and cut cells; a pipe or a file gets
# each table at its natural width instead.
_UNLIMITED_WIDTH = 10_000


def fail(message: str, code: int) -> typer.Exit:
    """Print ``message`` as one ``error:`` line on stderr; the ``typer.Exit`` to raise with ``code``."""
    _err.print(f"error: {' '.join(message.split())}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handles_errors(command: F) -> F:
    """Turn typed errors into one stderr line and the documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PlatformError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except psycopg.Error as exc:
            raise fail(f"database: {str(exc) or type(exc).__name__}", 1) from None

    return wrapper  # type: ignore[return-value]


def print_table(table: Table) -> None:
    """Print a table without ever cutting a cell: on a terminal long cells fold onto a second line
    (no "…" in an id or a number); elsewhere the table keeps its natural width."""
    for column in table.columns:
        column.overflow = "fold"
    console = Console()
    if not console.is_terminal:
        console = Console(width=_UNLIMITED_WIDTH)
    console.print(table)
