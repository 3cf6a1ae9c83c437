"""Arrow IPC serializer for `pyarrow.Table`, `pyarrow.RecordBatch` and (when pandas is installed) `pandas.DataFrame`.

Writes the Arrow IPC stream format (or the file format with `format="file"`), optionally with IPC buffer
compression ("lz4" or "zstd"). Loading is zero-copy: the returned table's columns point into the bytes given to
`loads`. The kind of value (table, record batch, DataFrame) is kept in the schema metadata, so `loads` returns the
same kind that was dumped. Importing this module imports pyarrow (the registry imports it on first use only).
"""
from __future__ import annotations

import sys
from typing import Any, BinaryIO, ClassVar

import pyarrow as pa
import pyarrow.ipc

from ..errors import ConfigurationError
from .base import Serializer

KIND = b"distributary.kind"
FILE_MAGIC = b"ARROW1"


class ArrowSerializer(Serializer):
    """Arrow IPC for tables. `format` is "stream" (default) or "file"; `compression` is None, "lz4" or "zstd"."""

    type: ClassVar[str] = "arrow"

    def __init__(self, format: str = "stream", compression: str | None = None) -> None:
        if format not in ("stream", "file"):
            raise ConfigurationError(f"ArrowSerializer format must be 'stream' or 'file', not {format!r}.")
        if compression not in (None, "lz4", "zstd"):
            raise ConfigurationError(f"ArrowSerializer compression must be None, 'lz4' or 'zstd', not {compression!r}.")
        self.format = format
        self.compression = compression
        self._options = pa.ipc.IpcWriteOptions(compression=compression)

    def dumps(self, obj: Any) -> bytes:
        sink = pa.BufferOutputStream()
        self._write(obj, sink)
        return sink.getvalue().to_pybytes()

    def dump(self, obj: Any, file: BinaryIO) -> None:
        # Column buffers go straight from the table to `file`, without building the payload in memory.
        self._write(obj, pa.PythonFile(file, mode="w"))

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        buffer = pa.py_buffer(data)  # no copy: the columns of the result point into `data`
        is_file = buffer.size >= 6 and buffer.slice(0, 6).to_pybytes() == FILE_MAGIC
        reader = pa.ipc.open_file(buffer) if is_file else pa.ipc.open_stream(buffer)
        table = reader.read_all()
        metadata = dict(table.schema.metadata or {})
        kind = metadata.pop(KIND, b"table")
        table = table.replace_schema_metadata(metadata or None)
        if kind == b"record_batch":
            batches = table.combine_chunks().to_batches()
            return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
        if kind == b"pandas":
            return table.to_pandas()
        return table

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, "format": self.format, "compression": self.compression}

    def _write(self, obj: Any, sink: Any) -> None:
        data, kind = self._as_arrow(obj)
        data = data.replace_schema_metadata({**(data.schema.metadata or {}), KIND: kind})
        new_writer = pa.ipc.new_file if self.format == "file" else pa.ipc.new_stream
        with new_writer(sink, data.schema, options=self._options) as writer:
            if isinstance(data, pa.RecordBatch):
                writer.write_batch(data)
            else:
                writer.write_table(data)

    def _as_arrow(self, obj: Any) -> tuple[pa.Table | pa.RecordBatch, bytes]:
        if isinstance(obj, pa.Table):
            return obj, b"table"
        if isinstance(obj, pa.RecordBatch):
            return obj, b"record_batch"
        pandas = sys.modules.get("pandas")
        if pandas is not None and isinstance(obj, pandas.DataFrame):
            try:
                return pa.Table.from_pandas(obj), b"pandas"
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise self.cannot_serialize(obj, exc, "Arrow cannot represent some of its columns; "
                                            'use result_serializer="cloudpickle" for this DataFrame.') from exc
        raise self.cannot_serialize(obj, None, "It handles pyarrow Tables and RecordBatches and pandas DataFrames; "
                                    'use result_serializer="cloudpickle" for other values.')
