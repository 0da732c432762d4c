"""Where ``kinfer score`` writes its results: JSONL (a file or stdout), or a Parquet file.

JSONL is streamed, one result object per line. Parquet gets flat columns, easy to query: ``key``,
``source_*``, ``model_name``, ``model_version``, ``error_class``, ``error_message``, and one
``prediction_<field>`` column per field of the prediction. Those prediction columns' types come from the
first scored rows, so rows are held back until one has been scored (or the file ends), then written in
row groups of ``rows_per_group``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Any

import orjson

FIXED_COLUMNS = {
    "key": "string",
    "source_file": "string",
    "source_record": "int64",
    "source_topic": "string",
    "source_partition": "int32",
    "source_offset": "int64",
    "source_timestamp_ms": "int64",
    "model_name": "string",
    "model_version": "int64",
    "error_class": "string",
    "error_message": "string",
}


def dumps_line(result: dict[str, Any]) -> bytes:
    return orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def flatten(result: dict[str, Any]) -> dict[str, Any]:
    """A result dict as one flat Parquet row."""
    row: dict[str, Any] = {"key": result.get("key")}
    row.update({f"source_{name}": value for name, value in (result.get("source") or {}).items()})
    model, error = result.get("model") or {}, result.get("error") or {}
    row.update(model_name=model.get("name"), model_version=model.get("version"))
    row.update(error_class=error.get("class"), error_message=error.get("message"))
    row.update({f"prediction_{name}": value for name, value in (result.get("prediction") or {}).items()})
    return row


class ScoreWriter:
    """Writes result dicts; ``open`` picks the format from the path (``.parquet``/``.pq``, else JSONL)."""

    def __init__(self, path: str, stream: IO[bytes] | None, parquet: bool, rows_per_group: int = 65536) -> None:
        self.path = path
        self.stream = stream
        self.parquet = parquet
        self.rows_per_group = rows_per_group
        self.pending: list[dict[str, Any]] = []
        self.parquet_writer: Any = None
        self.schema: Any = None

    @classmethod
    def open(cls, path: str) -> ScoreWriter:
        """The writer for ``path``; its folder is made if missing (a batch run's output on a fresh claim)."""
        if path != "-":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ValueError(f"cannot write {path}: {error}") from None
        if path.lower().endswith((".parquet", ".pq")):
            return cls(path, None, parquet=True)
        if path == "-":
            return cls(path, sys.stdout.buffer, parquet=False)
        try:
            return cls(path, open(path, "wb"), parquet=False)
        except OSError as error:
            raise ValueError(f"cannot write {path}: {error}") from None

    def write(self, result: dict[str, Any]) -> None:
        if not self.parquet:
            assert self.stream is not None
            self.stream.write(dumps_line(result))
            return
        self.pending.append(flatten(result))
        if len(self.pending) >= self.rows_per_group and (self.schema is not None or "prediction" in result):
            self._flush_group()

    def _flush_group(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.pending:
            return
        if self.schema is None:
            fields = [pa.field(name, pa.type_for_alias(kind)) for name, kind in FIXED_COLUMNS.items()]
            scored = [{k: v for k, v in row.items() if k.startswith("prediction_")} for row in self.pending]
            inferred = pa.Table.from_pylist([row for row in scored if row]).schema if any(scored) else []
            self.schema = pa.schema(fields + list(inferred))
            self.parquet_writer = pq.ParquetWriter(self.path, self.schema)
        self.parquet_writer.write_table(pa.Table.from_pylist(self.pending, schema=self.schema))
        self.pending = []

    def close(self) -> None:
        if self.parquet:
            self._flush_group()
            if self.parquet_writer is not None:
                self.parquet_writer.close()
        elif self.stream is not None:
            self.stream.flush()
            if self.stream is not sys.stdout.buffer:
                self.stream.close()
