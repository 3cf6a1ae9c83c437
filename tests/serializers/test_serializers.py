"""Serializers: round trips for every built-in, specs that rebuild them, the registry and its errors."""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import io
import pathlib
import subprocess
import sys
import threading
import uuid
from typing import Any, NamedTuple

import pandas as pd
import pyarrow as pa
import pydantic
import pytest

from distributary.errors import ConfigurationError, MissingDependencyError, SerializationError, UnknownNameError
from distributary.serializers import (
    CompressedSerializer,
    JSONSerializer,
    PickleSerializer,
    Serializer,
    get_serializer,
    register_serializer,
    registered_serializers,
)


class Color(enum.Enum):
    RED = "red"


class Point(NamedTuple):
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    tags: tuple[str, ...]
    derived: int = dataclasses.field(init=False, default=0)


class Model(pydantic.BaseModel):
    name: str
    when: dt.datetime
    values: list[float]


JSON_VALUES: list[Any] = [
    None, True, 3, 2.5, "text", [1, "a"], {"a": {"b": [None]}},
    (1, (2, 3)), {1, 2}, frozenset({"x"}), {1: "int key", (1, 2): "tuple key"}, {"$type": "a user key"},
    b"\x00\xffbytes", bytearray(b"ba"),
    dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))), dt.datetime(2024, 1, 1),
    dt.date(2024, 2, 29), dt.time(23, 59, 1), dt.timedelta(days=-1, seconds=5, microseconds=7),
    uuid.UUID("12345678-1234-5678-1234-567812345678"), decimal.Decimal("1.10"), complex(1, -2),
    pathlib.PurePosixPath("/a/b"), Color.RED, Point(1, 2), Frozen("n", ("a", "b")),
    Model(name="m", when=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), values=[1.0, 2.5]),
]


@pytest.mark.parametrize("value", JSON_VALUES, ids=lambda v: type(v).__name__)
def test_json_round_trip_keeps_types_and_values(value: Any) -> None:
    s = get_serializer("json")
    loaded = s.loads(s.dumps(value))
    assert loaded == value and type(loaded) is type(value)
    assert s.loads(memoryview(s.dumps(value))) == value


def test_json_is_plain_json_for_plain_data() -> None:
    assert get_serializer("json").dumps({"a": [1, 2.5, None, "x"]}) == b'{"a":[1,2.5,null,"x"]}'


@pytest.mark.parametrize("name", ["pickle", "cloudpickle", "compressed/pickle", "compressed/cloudpickle"])
def test_pickle_round_trips(name: str) -> None:
    s = get_serializer(name)
    value = {"f": lambda x: x * 2, "data": list(range(100)), "local": Point(1, 2)}
    loaded = s.loads(s.dumps(value))
    assert loaded["f"](21) == 42 and loaded["data"] == value["data"] and loaded["local"] == Point(1, 2)
    buf = io.BytesIO()
    s.dump(value["data"], buf)
    assert s.loads(buf.getvalue()) == value["data"]


def test_stdlib_pickle_suggests_cloudpickle_for_lambdas() -> None:
    with pytest.raises(SerializationError, match="cloudpickle"):
        PickleSerializer(picklelib="pickle").dumps(lambda: 1)


@pytest.mark.parametrize("lib", ["zlib", "zstd", "lz4"])
def test_compression_libs_and_spec_records_the_lib(lib: str) -> None:
    s = CompressedSerializer("json", compressionlib=lib)
    value = {"rows": ["the same words again"] * 2000}
    data = s.dumps(value)
    assert len(data) < len(get_serializer("json").dumps(value)) / 2
    rebuilt = get_serializer(s.to_spec())
    assert rebuilt.compressionlib == lib and rebuilt.loads(data) == value


def test_compressed_default_prefers_zstd() -> None:
    assert get_serializer("compressed/json").compressionlib == "zstd"  # zstandard is installed in the test env


def _table() -> pa.Table:
    return pa.table({"i": pa.array(range(1000), pa.int64()), "s": [f"r{i}" for i in range(1000)]},
                    metadata={b"owner": b"tests"})


@pytest.mark.parametrize("options", [{}, {"format": "file"}, {"compression": "zstd"}, {"compression": "lz4"}])
def test_arrow_round_trips_tables_batches_and_dataframes(options: dict[str, Any]) -> None:
    s = get_serializer({"type": "arrow", **options})
    table = _table()
    loaded = s.loads(s.dumps(table))
    assert isinstance(loaded, pa.Table) and loaded.equals(table, check_metadata=True)
    batch = table.to_batches()[0]
    assert s.loads(s.dumps(batch)).equals(batch)
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=pd.Index([10, 20], name="idx"))
    pd.testing.assert_frame_equal(s.loads(s.dumps(frame)), frame)
    buf = io.BytesIO()
    s.dump(table, buf)
    assert s.loads(buf.getvalue()).equals(table)


def test_arrow_loads_without_copying() -> None:
    s = get_serializer("arrow")
    data = s.dumps(pa.table({"x": pa.array(range(100_000), pa.int64())}))
    column = s.loads(data).column("x").chunk(0)
    start = pa.py_buffer(data).address
    assert start <= column.buffers()[1].address < start + len(data)  # points into our bytes


@pytest.mark.parametrize("name, value", [("json", object()), ("json", {"k": threading.Lock()}),
                                         ("arrow", [1, 2]), ("cloudpickle", threading.Lock())])
def test_unserializable_values_name_serializer_type_and_alternative(name: str, value: Any) -> None:
    with pytest.raises(SerializationError) as info:
        get_serializer(name).dumps(value)
    message = str(info.value)
    assert repr(get_serializer(name).type) in message and "result_serializer=" in message
    assert ("lock" in message) if "Lock" in repr(value) else (type(value).__name__ in message)
    assert isinstance(info.value, TypeError)


def test_json_rejects_classes_it_could_not_import_back() -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(SerializationError, match="inside a function"):
        JSONSerializer().dumps(Local(1))


def test_specs_rebuild_equal_serializers() -> None:
    for name in registered_serializers():
        if name == "compressed":
            continue
        s = get_serializer(name)
        assert get_serializer(s.to_spec()) == s and get_serializer(s) is s


def test_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_serializer("yaml")
    assert "yaml" in str(info.value) and "cloudpickle" in str(info.value) and "arrow" in str(info.value)
    assert isinstance(info.value, KeyError)


def test_registry_never_silently_overwrites() -> None:
    class Upper(Serializer):
        type = "upper-test"

        def dumps(self, obj: Any) -> bytes:
            return str(obj).upper().encode()

        def loads(self, data: bytes | bytearray | memoryview) -> Any:
            return bytes(data).decode()

    register_serializer("upper-test", Upper)
    register_serializer("upper-test", Upper)  # the same target again: fine
    assert get_serializer("upper-test").loads(get_serializer("upper-test").dumps("a")) == "A"
    with pytest.raises(ConfigurationError, match="already registered"):
        register_serializer("upper-test", JSONSerializer)
    with pytest.raises(ConfigurationError, match="already registered"):
        register_serializer("json", Upper)
    register_serializer("upper-test", JSONSerializer, clobber=True)
    assert isinstance(get_serializer("upper-test"), JSONSerializer)


def test_lazy_registration_and_missing_dependency_names_the_extra() -> None:
    register_serializer("needs-missing-lib", "no_such_module_xyz:Thing", install_hint="arrow")
    with pytest.raises(MissingDependencyError, match=r'pip install "distributary\[arrow\]"'):
        get_serializer("needs-missing-lib")
    with pytest.raises(ConfigurationError):
        register_serializer("bad-target", "no-colon")


def test_importing_serializers_stays_light() -> None:
    code = ("import sys, distributary.serializers as s; s.get_serializer('cloudpickle'); s.get_serializer('json');"
            "print(sorted(m for m in ('pyarrow', 'pandas', 'zstandard', 'lz4') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
