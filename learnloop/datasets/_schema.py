"""Reading a delimited file against a column spec, failing with a message that names file and column."""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pandas as pd

from learnloop.errors import DataValidationError


class Kind(StrEnum):
    text = "text"
    integer = "integer"
    number = "number"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind = Kind.text
    nullable: bool = False
    choices: frozenset[str] | None = None
    min_value: float | None = None
    max_value: float | None = None


def read_table(path: Path, columns: list[Column], *, sep: str = ",", quoting: int = csv.QUOTE_MINIMAL,
               min_rows: int = 1) -> pd.DataFrame:
    """Read ``path`` and check it has every column of ``columns`` with the right types.

    Extra columns are kept as text. Raises DataValidationError naming the file (and column) otherwise.
    """
    if not path.is_file():
        raise DataValidationError(path, "file not found")
    try:
        raw = _read_raw(path, sep=sep, quoting=quoting)
    except pd.errors.EmptyDataError as exc:
        raise DataValidationError(path, "is empty (no header, no rows)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, gzip.BadGzipFile, OSError) as exc:
        raise DataValidationError(path, f"cannot be parsed ({_first_line(exc)})") from exc
    missing = [c.name for c in columns if c.name not in raw.columns]
    if missing:
        raise DataValidationError(
            path, f"missing column (found: {', '.join(map(str, raw.columns[:12]))})", column=missing[0]
        )
    if len(raw) < min_rows:
        raise DataValidationError(path, f"has {len(raw)} data rows, expected at least {min_rows}")
    frame = raw.copy()
    for col in columns:
        frame[col.name] = _convert(path, raw[col.name], col)
    return frame


def _read_raw(path: Path, *, sep: str, quoting: int) -> pd.DataFrame:
    # Only an empty field is missing ("NA" or "null" are values); types are inferred and checked below.
    return pd.read_csv(path, sep=sep, quoting=quoting, keep_default_na=False, na_values=[""], engine="c",
                       encoding="utf-8", low_memory=False)


def _line_of(mask: pd.Series) -> int:
    return int(mask.to_numpy().nonzero()[0][0]) + 2  # header is line 1


def _convert(path: Path, values: pd.Series, col: Column) -> pd.Series:
    # A short (truncated) row leaves its trailing fields empty, which shows here as NaN.
    absent = values.isna()
    if not col.nullable and absent.any():
        raise DataValidationError(path, f"empty value on line {_line_of(absent)} (file truncated or field missing)",
                                  column=col.name)
    if col.kind is Kind.text:
        result = values.astype(object).where(absent, values.astype(str))
        result = result.where(~absent, None)
        if col.choices is not None:
            bad = result.notna() & ~result.isin(col.choices)
            if bad.any():
                raise DataValidationError(
                    path, f"unexpected value {result[bad].iloc[0]!r} on line {_line_of(bad)} "
                          f"(allowed: {', '.join(sorted(col.choices))})", column=col.name)
        return result
    numeric = values if pd.api.types.is_numeric_dtype(values) else pd.to_numeric(values, errors="coerce")
    unparsable = numeric.isna() & ~absent
    if unparsable.any():
        raise DataValidationError(path, f"non-numeric value {values[unparsable].iloc[0]!r} on line "
                                        f"{_line_of(unparsable)}", column=col.name)
    if col.min_value is not None and (numeric < col.min_value).any():
        raise DataValidationError(path, f"value {numeric.min()} below the minimum {col.min_value}", column=col.name)
    if col.max_value is not None and (numeric > col.max_value).any():
        raise DataValidationError(path, f"value {numeric.max()} above the maximum {col.max_value}", column=col.name)
    if col.kind is Kind.integer:
        fractional = (numeric % 1 != 0) & ~absent
        if fractional.any():
            raise DataValidationError(path, f"non-integer value on line {_line_of(fractional)}", column=col.name)
        return numeric.astype("Int64") if col.nullable else numeric.astype("int64")
    return numeric.astype("float64")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
