"""Safetensors read and written with the standard library and numpy, for the
PyTorch reference models (Debian's python3-torch has no safetensors package)."""
import json
import struct

import numpy as np

_NATIVE = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I32": "<i4", "I64": "<i8"}
_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
          np.dtype(np.int32): "I32", np.dtype(np.int64): "I64", np.dtype(np.uint16): "BF16"}


def to_bf16_bits(a32):
    """bf16 bit patterns (uint16) of float32 values, rounded to nearest, ties to even."""
    bits = np.ascontiguousarray(a32, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_bits_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors):
    """tensors: name -> numpy array (uint16 arrays are written as BF16 bit patterns)."""
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        blob = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _NAMES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    """name -> numpy array in its stored type (BF16 widened to float32)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = body[begin:end]
        if entry["dtype"] == "BF16":
            array = bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2"))
        else:
            array = np.frombuffer(raw, dtype=_NATIVE[entry["dtype"]])
        out[name] = array.reshape(entry["shape"])
    return out
