"""Access to the reBEN LMDB: values are serialized safetensors dicts keyed by band name.

The official LMDB (written by the BigEarthNet team's rico-hdl encoder) holds one
entry per S2 patch (key ``patch_id``: ``B01``..``B12``, ``B8A`` uint16 at native
resolution), per S1 patch (key ``s1_name``: ``VV``, ``VH`` float32) and per
reference map (key ``<patch_id>_reference_map``: ``Data`` uint16). The order of
a safetensors dict is not preserved, so bands are always looked up by name.

LMDB environments must not cross a ``fork``: :class:`LazyLMDB` opens its
environment on first use in each process and drops it when pickled (spawn,
DDP) or when it notices it now lives in a child process.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save


class CorruptValueError(ValueError):
    """An LMDB value is not a valid safetensors dict (or lacks what the reader needs)."""


def encode_value(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialize a band-name -> array dict exactly as the official encoder stores it."""
    return _st_save({name: np.ascontiguousarray(array) for name, array in arrays.items()})


def decode_value(
    data: bytes | memoryview, key: str = "?", path: str | os.PathLike[str] = "?"
) -> dict[str, np.ndarray]:
    """Deserialize one LMDB value into a band-name -> array dict.

    Raises:
        CorruptValueError: naming ``key`` and the LMDB ``path`` when the bytes
            are not a safetensors dict.
    """
    try:
        return _st_load(bytes(data))
    except Exception as error:  # safetensors raises its own SafetensorError / ValueError
        raise CorruptValueError(
            f"LMDB {path}: the value of key {key!r} ({len(data)} bytes) is not a valid "
            f"safetensors dict ({error}); the entry is corrupt, rebuild it with "
            "`python -m spml_rs.prepare benv2-lmdb`"
        ) from error


#: safetensors dtype codes of the arrays reBEN stores (plus a few common ones)
_ST_DTYPES = {code: np.dtype(name) for code, name in (
    ("U8", "uint8"), ("U16", "uint16"), ("I16", "int16"), ("U32", "uint32"), ("I32", "int32"),
    ("F32", "float32"), ("F64", "float64"),
)}  # fmt: skip


def decode_view(
    data: memoryview | bytes, key: str = "?", path: str | os.PathLike[str] = "?"
) -> dict[str, np.ndarray]:
    """Zero-copy :func:`decode_value`: read-only arrays that view ``data``.

    The safetensors layout is an 8-byte little-endian header length, a JSON
    header ``{name: {"dtype", "shape", "data_offsets": [begin, end]}}`` and the
    raw bytes. Parsing it here lets the workers copy each band once, straight
    from the LMDB memory map into the packed sample. All patches of one kind
    share the same header bytes, so parsed headers are cached. The arrays are
    valid only while ``data`` is (an LMDB buffer: while its read transaction lives).
    """
    try:
        header, start = split_header(data)
        tensors = parse_header(header)
        size = len(data) - start
        out = {}
        for name, dtype, shape, begin, end in tensors:
            if end > size:
                raise ValueError(f"tensor {name!r} ends at byte {end} of {size}")
            count = (end - begin) // dtype.itemsize
            out[name] = np.frombuffer(data, dtype, count, start + begin).reshape(shape)
        return out
    except (ValueError, KeyError, TypeError) as error:
        raise corrupt_value(data, key, path, error) from error


def corrupt_value(
    data: memoryview | bytes, key: str, path: str | os.PathLike[str], error: Exception
) -> CorruptValueError:
    """The error for a value of ``key`` in LMDB ``path`` that is not a valid safetensors dict."""
    return CorruptValueError(
        f"LMDB {path}: the value of key {key!r} ({len(data)} bytes) is not a valid "
        f"safetensors dict ({error}); the entry is corrupt, rebuild it with "
        "`python -m spml_rs.prepare benv2-lmdb`"
    )


def split_header(data: memoryview | bytes) -> tuple[bytes, int]:
    """(JSON header bytes, offset of the tensor bytes) of a safetensors value; ValueError if cut."""
    if len(data) < 8:
        raise ValueError("shorter than the 8-byte header length")
    length = int.from_bytes(data[:8], "little")
    if length > len(data) - 8:
        raise ValueError(f"header length {length} exceeds the value")
    return bytes(data[8 : 8 + length]), 8 + length


@functools.lru_cache(maxsize=64)
def parse_header(
    header: bytes,
) -> tuple[tuple[str, np.dtype[Any], tuple[int, ...], int, int], ...]:
    """(name, dtype, shape, begin, end) of each tensor, checked for consistency.

    ``begin``/``end`` count from the first tensor byte (:func:`split_header`).
    """
    specs = json.loads(header)
    specs.pop("__metadata__", None)
    tensors = []
    for name, spec in specs.items():
        dtype, shape = _ST_DTYPES[spec["dtype"]], tuple(int(v) for v in spec["shape"])
        begin, end = (int(v) for v in spec["data_offsets"])
        if end - begin != math.prod(shape) * dtype.itemsize or begin < 0:
            raise ValueError(f"tensor {name!r}: bytes [{begin}, {end}) do not match shape {shape}")
        tensors.append((name, dtype, shape, begin, end))
    return tuple(tensors)


def check_band(
    arrays: dict[str, np.ndarray], band: str, dtype: np.dtype[Any], side: int, key: str, path: Path
) -> np.ndarray:
    """Return ``arrays[band]`` after checking its dtype and (side, side) shape."""
    array = arrays.get(band)
    found = None if array is None else (array.dtype, array.shape)
    problem = band_problem(band, found, sorted(arrays), np.dtype(dtype), side)
    if problem:
        raise CorruptValueError(f"LMDB {path}: key {key!r} {problem}")
    assert array is not None
    return array


def band_problem(
    band: str,
    found: tuple[np.dtype[Any], tuple[int, ...]] | None,
    names: list[str],
    dtype: np.dtype[Any],
    side: int,
) -> str | None:
    """What is wrong with ``band`` (``found``: its dtype and shape, None if absent), or None."""
    if found is None:
        return f"has no band {band!r} (it holds {names})"
    if found[0] != dtype or tuple(found[1]) != (side, side):
        return f"band {band!r} is {found[0]}{list(found[1])}, expected {dtype}[{side}, {side}]"
    return None


#: Open environments of this process: py-lmdb refuses to open one path twice per
#: process, so every handle on a path shares one environment and read transaction.
_OPEN: dict[tuple[int, str], tuple[lmdb.Environment, lmdb.Transaction]] = {}


def _drop_inherited() -> None:
    """Close the environments a forked child inherited from its parent.

    They are unusable in the child, and py-lmdb's "already open in this
    process" guard, copied by the fork, would refuse to reopen their files.
    Closing them unmaps only the child's copy (``lock=False``: no locks to release).
    """
    pid = os.getpid()
    for slot in [slot for slot in _OPEN if slot[0] != pid]:
        env, txn = _OPEN.pop(slot)
        txn.abort()
        env.close()


def _shared_transaction(path: Path, readahead: bool) -> lmdb.Transaction:
    slot = (os.getpid(), str(path.resolve()))
    if slot not in _OPEN:
        _drop_inherited()
        env = lmdb.open(
            str(path),
            readonly=True,
            lock=False,
            readahead=readahead,
            subdir=path.is_dir(),
            meminit=False,
            max_readers=2048,
        )
        # One long-lived read transaction: a read-only database never changes under us.
        # buffers=True: values are memoryviews into the map, valid as long as this
        # read-only transaction, so a reader can copy each band only once.
        _OPEN[slot] = (env, env.begin(write=False, buffers=True))
    return _OPEN[slot][1]


class LazyLMDB:
    """Read-only LMDB handle that opens the environment lazily, once per process.

    Nothing is opened until the first read, so a handle built in the main
    process and inherited by forked DataLoader workers (or pickled to spawned
    ones, or to DDP ranks) opens its own environment in each of them. Handles
    on the same path share the process's environment (the first one's
    ``readahead`` wins). A forked child first closes what it inherited.

    Args:
        path: the LMDB directory (``data.mdb`` inside) or file.
        readahead: OS readahead; on for network file systems, off for random
            access on a local SSD when the database exceeds RAM.
    """

    def __init__(self, path: str | os.PathLike[str], readahead: bool = False) -> None:
        self.path = Path(path)
        self.readahead = readahead
        if not self.path.exists():
            raise FileNotFoundError(f"LMDB not found: {self.path}")

    def _transaction(self) -> lmdb.Transaction:
        return _shared_transaction(self.path, self.readahead)

    def view(self, key: str) -> memoryview:
        """Value of ``key`` as a zero-copy view into the map; KeyError names key and LMDB."""
        value = self._transaction().get(key.encode("utf-8"))
        if value is None:
            raise KeyError(f"key {key!r} not found in LMDB {self.path}")
        return memoryview(value)

    def get(self, key: str) -> bytes:
        """Value of ``key`` (a copy); KeyError names the key and the LMDB."""
        return bytes(self.view(key))

    def get_arrays(self, key: str) -> dict[str, np.ndarray]:
        """Decoded value of ``key`` (band name -> array), owning its memory."""
        return decode_value(self.view(key), key, self.path)

    def get_views(self, key: str) -> dict[str, np.ndarray]:
        """Decoded value of ``key`` as read-only views into the map (copy before keeping)."""
        return decode_view(self.view(key), key, self.path)

    def views(self, keys: Iterable[str]) -> Iterator[memoryview]:
        """Values of ``keys`` in order, zero-copy views read in one transaction.

        The batch reader's access: the process's environment is looked up once,
        not per key. Views are valid while this process's read transaction lives.
        KeyError names the first missing key and the LMDB.
        """
        transaction = self._transaction()
        for key in keys:
            value = transaction.get(key.encode("utf-8"))
            if value is None:
                raise KeyError(f"key {key!r} not found in LMDB {self.path}")
            yield memoryview(value)

    def missing(self, keys: Iterable[str]) -> list[str]:
        """The ``keys`` not in the LMDB, in one read transaction (``in`` resolves the path per key)."""
        transaction = self._transaction()
        return [key for key in keys if transaction.get(key.encode("utf-8")) is None]

    def __contains__(self, key: str) -> bool:
        return self._transaction().get(key.encode("utf-8")) is not None

    def __len__(self) -> int:
        return int(self._transaction().stat()["entries"])

    def close(self) -> None:
        """Close this process's environment on ``path`` (e.g. before writing to it)."""
        entry = _OPEN.pop((os.getpid(), str(self.path.resolve())), None)
        if entry is not None:
            entry[1].abort()
            entry[0].close()

    def __iter__(self) -> Iterator[str]:
        """All keys, in LMDB (byte) order."""
        cursor = self._transaction().cursor()
        return iter([bytes(key).decode("utf-8") for key in cursor.iternext(values=False)])
