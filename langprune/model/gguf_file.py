"""A GGUF file's metadata and tensor index, read fast.

gguf-py's `GGUFReader` (the reference the tests compare with) builds a numpy view for every
element of every array: 9 s for Gemma 3's 262,144-token vocabulary, and an export read such a
file six times (load, vocabulary selection, both GGUF exports, the report's two files). This
reads the same keys and tensor index in well under a second: numeric arrays with one
`np.frombuffer`, strings one length prefix at a time. Little-endian GGUF version 2 or 3.
"""

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from ..errors import UserError

_SCALARS = {
    GGUFValueType.UINT8: "<u1", GGUFValueType.INT8: "<i1", GGUFValueType.UINT16: "<u2", GGUFValueType.INT16: "<i2",
    GGUFValueType.UINT32: "<u4", GGUFValueType.INT32: "<i4", GGUFValueType.FLOAT32: "<f4", GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "<u8", GGUFValueType.INT64: "<i8", GGUFValueType.FLOAT64: "<f8",
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order: the fastest-varying dimension first
    type: GGMLQuantizationType
    n_bytes: int


@dataclass(frozen=True)
class GGUFHeader:
    # key -> (value, type, array item type or None); strings stay bytes, arrays are lists
    fields: dict[str, tuple[Any, GGUFValueType, GGUFValueType | None]]
    tensors: list[TensorInfo]

    def get(self, key: str, default=None):
        """The plain value of a key, strings decoded (`default` when the file has no such key)."""
        if key not in self.fields:
            return default
        return _decoded(self.fields[key][0])


def _decoded(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


class _Cursor:
    def __init__(self, data: memoryview):
        self.data, self.at = data, 0

    def unpack(self, fmt: str):
        values = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> bytes:
        n = self.unpack("<Q")
        self.at += n
        return bytes(self.data[self.at - n : self.at])

    def value(self, kind: GGUFValueType):
        if kind == GGUFValueType.STRING:
            return self.string()
        if kind == GGUFValueType.ARRAY:
            item, count = GGUFValueType(self.unpack("<I")), self.unpack("<Q")
            if item in _SCALARS:
                dtype = np.dtype(_SCALARS[item])
                values = np.frombuffer(self.data, dtype, count, self.at)
                self.at += count * dtype.itemsize
                return values.tolist()
            return [self.value(item) for _ in range(count)]
        dtype = np.dtype(_SCALARS[kind])
        value = np.frombuffer(self.data, dtype, 1, self.at)[0].item()
        self.at += dtype.itemsize
        return value


def read_header(path: str | Path) -> GGUFHeader:
    """Every metadata key and the tensor index of a GGUF file; a clear error for anything else."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = memoryview(np.memmap(f, dtype=np.uint8, mode="r"))
        cursor = _Cursor(data)
        magic, version, n_tensors, n_kv = cursor.unpack("<4sIQQ")
        if magic != b"GGUF" or version not in (2, 3):
            raise ValueError(f"magic {magic!r}, version {version}")
        fields = {}
        for _ in range(n_kv):
            key = cursor.string().decode()
            kind = GGUFValueType(cursor.unpack("<I"))
            item = GGUFValueType(struct.unpack_from("<I", data, cursor.at)[0]) if kind == GGUFValueType.ARRAY else None
            fields[key] = (cursor.value(kind), kind, item)
        tensors = []
        for _ in range(n_tensors):
            name = cursor.string().decode()
            n_dims = cursor.unpack("<I")
            shape = tuple(struct.unpack_from(f"<{n_dims}Q", data, cursor.at))
            cursor.at += 8 * n_dims
            kind = GGMLQuantizationType(cursor.unpack("<I"))
            cursor.unpack("<Q")  # offset into the data section
            block, size = GGML_QUANT_SIZES[kind]
            tensors.append(TensorInfo(name, shape, kind, int(np.prod(shape)) // block * size))
    except (OSError, ValueError, struct.error, KeyError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a readable GGUF file ({err})") from None
    return GGUFHeader(fields, tensors)


def file_type(path: str | Path) -> str:
    """A GGUF file's type as llama.cpp users name it ("Q4_K_M", "F16"), from its `general.file_type`; "unknown"
    where the file does not say."""
    from gguf import Keys, LlamaFileType

    value = read_header(path).get(Keys.General.FILE_TYPE)
    try:
        return LlamaFileType(value).name.removeprefix("MOSTLY_") if value is not None else "unknown"
    except ValueError:
        return f"type {value}"
