"""Which Python module DuckDB's connections come from (`duckdb_engine`)."""

from __future__ import annotations

import sys
from types import ModuleType


def duckdb_engine() -> ModuleType:
    """The module the store's connections and DuckDB's exception classes come from.

    DuckDB 2's `duckdb` package is its C++ engine, the extension module `_duckdb`, re-exported,
    plus a pure-Python relation and expression layer whose import costs 0.15 s of CPU (four
    fifths of DuckDB's import, and a tenth of a fully cached re-run). The store never uses that
    layer: it needs `connect`, the connection's execute and fetch methods and the exception
    classes, which are the engine's own objects (`duckdb.Error is _duckdb.Error`). Where the
    package is already imported (a query, a notebook), or the engine is not a top-level module
    (DuckDB 1.x), this is the `duckdb` package; the connections are the same class either way,
    and importing `duckdb` later adds its methods to them.

    Returns:
        `_duckdb` or `duckdb`.
    """
    if sys.modules.get("duckdb") is None:
        try:
            import _duckdb
        except ImportError:
            pass
        else:
            if hasattr(_duckdb, "connect") and hasattr(_duckdb, "CatalogException"):
                return _duckdb
    # An import statement, not sys.modules: while another thread is still importing the
    # package, the statement waits for it to finish instead of returning a half-made module.
    import duckdb

    return duckdb
