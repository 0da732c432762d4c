"""Readers that turn JSONL, CSV, Parquet and .npy files (or stdin) into records, for ``kinfer produce`` and
``kinfer score``.

Two shapes come out of here: ``OutgoingRecord`` (key, value bytes and headers, ready for a producer) and plain
dicts (one per row). A JSONL line is sent verbatim, byte for byte, so a deliberately malformed line reaches the
topic as it is; CSV and Parquet rows are encoded as JSON objects. CSV cells are typed the way a person reading
the file would expect (``12`` → int, ``1.5`` → float, ``true`` → bool, empty → missing) because the pipeline's
preprocessing rejects numbers sent as strings. A .npy array of N examples gives N tensor records (the raw
little-endian bytes of each, what ``spec.preprocessing.format: tensor`` reads); a folder of images gives one
record per image file, its bytes unchanged (``format: image``); an Avro container file gives its records as
``format: avro`` reads them.
"""

from __future__ import annotations

import base64
import csv
import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

FORMATS = ("jsonl", "csv", "parquet", "npy", "images", "avro")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class OutgoingRecord:
    """One record to produce: the bytes exactly as they go on the wire."""

    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def detect_format(path: str, explicit: str | None = None) -> str:
    """The file format from ``--format`` or the file's extension (``.jsonl``, ``.ndjson``, ``.json``, ``.csv``...)."""
    if explicit:
        if explicit not in FORMATS:
            raise ValueError(f"unknown format {explicit!r}: use one of {', '.join(FORMATS)}")
        return explicit
    if path != "-" and Path(path).is_dir():
        return "images"
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() not in (".gz",)]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".npy":
        return "npy"
    if suffix == ".avro":
        return "avro"
    if path == "-":
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path!r} from its name: pass --format jsonl|csv|parquet|npy|avro")


def check_readable(path: str) -> None:
    """A ValueError naming the file when it cannot be read (before any record is sent or scored)."""
    if path != "-" and not Path(path).is_file() and not Path(path).is_dir():
        raise ValueError(f"{path}: no such file or folder")


def open_binary(path: str) -> IO[bytes]:
    """The file, or stdin for ``-``, opened for binary reading."""
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")


def key_bytes(value: Any) -> bytes | None:
    """A record key from a field's value: strings as UTF-8, other scalars as their JSON text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    return orjson.dumps(value)


def key_from_json(line: bytes, key_field: str) -> bytes | None:
    """The key field of a JSON object line; None when the line is not an object or lacks the field."""
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return key_bytes(parsed.get(key_field)) if isinstance(parsed, dict) else None


def jsonl_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Non-blank lines without their line ending, as bytes."""
    for raw in stream:
        line = raw.rstrip(b"\r\n")
        if line.strip():
            yield line


def records_from_jsonl(stream: IO[bytes], key_field: str | None = None) -> Iterator[OutgoingRecord]:
    """One record per non-blank line, value = the line verbatim, key from ``key_field`` when the line has it."""
    for line in jsonl_lines(stream):
        yield OutgoingRecord(value=line, key=key_from_json(line, key_field) if key_field else None)


def coerce_csv_cell(text: str) -> Any:
    """A CSV cell as the JSON value it most plausibly means; None for an empty cell."""
    if text == "":
        return None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def rows_from_csv(stream: IO[bytes], delimiter: str = ",") -> Iterator[dict[str, Any]]:
    """Rows of a CSV file with a header line; empty cells are left out (a missing field, not a null)."""
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    for row in csv.DictReader(text, delimiter=delimiter):
        yield {name: coerce_csv_cell(cell) for name, cell in row.items() if name is not None and cell != ""}


def rows_from_parquet(path: str, batch_size: int = 4096) -> Iterator[dict[str, Any]]:
    """Rows of a Parquet file, read in batches so a large file is never held in memory whole."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        for batch in parquet.iter_batches(batch_size=batch_size):
            for row in batch.to_pylist():
                yield {name: value for name, value in row.items() if value is not None}


def records_from_rows(rows: Iterable[dict[str, Any]], key_field: str | None = None) -> Iterator[OutgoingRecord]:
    """Rows encoded as compact JSON objects, keyed by ``key_field`` when present."""
    for row in rows:
        key = key_bytes(row.get(key_field)) if key_field else None
        yield OutgoingRecord(value=orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY), key=key)


def records_from_npy(path: str) -> Iterator[OutgoingRecord]:
    """One tensor record per example of a .npy array (its first dimension), without a key; memory-mapped, so a
    large file is never held in memory whole."""
    import numpy as np

    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.ndim < 1:
        raise ValueError(f"{path}: a .npy of examples needs a first (example) dimension; this one is a scalar")
    little_endian = array.dtype.newbyteorder("<")
    for row in array:
        yield OutgoingRecord(value=np.ascontiguousarray(row, dtype=little_endian).tobytes())


def image_files(folder: str) -> list[Path]:
    """The image files of a folder (by suffix), in name order."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def records_from_images(folder: str, image_field: str | None = None) -> Iterator[OutgoingRecord]:
    """One record per image file of a folder, keyed by the file's name: its bytes as they are (PNG, JPEG...), or
    with ``image_field`` (a pipeline's ``image.field``) a JSON object holding them in base64 there."""
    for path in image_files(folder):
        data = path.read_bytes()
        value = orjson.dumps({image_field: base64.b64encode(data).decode()}) if image_field else data
        yield OutgoingRecord(value=value, key=path.name.encode())


def records_from_avro(path: str, key_field: str | None, schema_id: int | None) -> Iterator[OutgoingRecord]:
    """One record per record of an Avro container file, written again with the file's schema: framed as
    Confluent's serializers do (a 0 byte, ``schema_id``, the body) when ``schema_id`` is given, else the body
    alone (``preprocessing.avro.framing`` none)."""
    from fastavro import reader, schemaless_writer

    frame = b"\x00" + schema_id.to_bytes(4, "big") if schema_id is not None else b""
    with open(path, "rb") as stream:
        records = reader(stream)
        for record in records:
            buffer = io.BytesIO()
            buffer.write(frame)
            schemaless_writer(buffer, records.writer_schema, record)
            key = key_bytes(record.get(key_field)) if key_field and isinstance(record, dict) else None
            yield OutgoingRecord(value=buffer.getvalue(), key=key)


def read_records(
    path: str, fmt: str, key_field: str | None = None, schema_id: int | None = None, image_field: str | None = None
) -> Iterator[OutgoingRecord]:
    """Records to produce from a file or folder (or ``-``) of the given format; ``schema_id``: the Confluent
    framing of Avro records (none without it); ``image_field``: images as base64 in this field of a JSON object."""
    if fmt == "avro":
        yield from records_from_avro(path, key_field, schema_id)
        return
    if fmt == "images":
        if key_field:
            raise ValueError("--key-field reads a field of JSON records; image records are keyed by file name")
        yield from records_from_images(path, image_field)
        return
    if fmt in ("parquet", "npy"):
        if path == "-":
            raise ValueError(f"{fmt} cannot be read from stdin: give a file")
        if fmt == "npy":
            if key_field:
                raise ValueError("--key-field reads a field of JSON records; a .npy file's records have no fields")
            yield from records_from_npy(path)
            return
        yield from records_from_rows(rows_from_parquet(path), key_field)
        return
    stream = open_binary(path)
    try:
        if fmt == "jsonl":
            yield from records_from_jsonl(stream, key_field)
        else:
            yield from records_from_rows(rows_from_csv(stream), key_field)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def count_lines(path: str, fmt: str) -> int | None:
    """How many records a file holds, for the progress bar's total; None when unknown (stdin)."""
    if path == "-":
        return None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as parquet:
            return int(parquet.metadata.num_rows)
    if fmt == "npy":
        import numpy as np

        return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
    if fmt == "images":
        return len(image_files(path))
    if fmt == "avro":
        from fastavro import block_reader

        with open(path, "rb") as stream:
            return sum(block.num_records for block in block_reader(stream))
    with open(path, "rb") as stream:
        lines = sum(1 for line in stream if line.strip())
    return max(lines - 1, 0) if fmt == "csv" else lines
