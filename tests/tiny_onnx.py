"""A tiny ONNX model written without the ``onnx`` package (protobuf by hand), for plumbing tests.

``tiny_yunet()`` returns the bytes of a model with YuNet's interface (what
``cv2.FaceDetectorYN`` reads): input ``input`` (1, 3, h, w) and outputs ``cls_S``, ``obj_S``
(1, n, 1), ``bbox_S`` (1, n, 4), ``kps_S`` (1, n, 10) for strides S = 8, 16, 32 (n = cells of
the padded frame). Its "face score" is the mean brightness / 255 of each 32 x 32 cell
(strides 8 and 16 score 0), each box that cell (centre offset 0.5, size exp(0) x 32): a
white 32 x 32 square on black, on the 32-px grid, is one face with score 1 at that square.
Opset 13, IR version 8; ``_tensor`` / ``_node`` / ``_value`` write the few ONNX messages used.
"""
from __future__ import annotations

import struct

import numpy as np


def _varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F; n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n: return bytes(out)

def _key(field, wire): return _varint(field << 3 | wire)
def _int(field, n): return _key(field, 0) + _varint(n)
def _bytes(field, data):
    data = data.encode() if isinstance(data, str) else data
    return _key(field, 2) + _varint(len(data)) + data

def _tensor(name, arr):
    arr = np.asarray(arr)
    dtype = {np.dtype(np.float32): 1, np.dtype(np.int64): 7}[arr.dtype]
    return b"".join(_int(1, d) for d in arr.shape) + _int(2, dtype) + _bytes(8, name) + _bytes(9, arr.tobytes())

def _attr(name, value):
    if isinstance(value, float): return _bytes(1, name) + _key(2, 5) + struct.pack("<f", value) + _int(20, 1)
    if isinstance(value, int): return _bytes(1, name) + _int(3, value) + _int(20, 2)
    return _bytes(1, name) + b"".join(_int(8, v) for v in value) + _int(20, 7)

def _node(op, inputs, outputs, **attrs):
    return (b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
            + _bytes(3, outputs[0]) + _bytes(4, op) + b"".join(_bytes(5, _attr(k, v)) for k, v in attrs.items()))

def _value(name, dims):
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, 1) + _bytes(2, shape)))

def tiny_yunet() -> bytes:
    nodes = [_node("ReduceMean", ["input"], ["grey"], axes=[1], keepdims=1)]
    inits = [_tensor("k255", np.array(1 / 255, np.float32)), _tensor("zero", np.array(0, np.float32)),
             _tensor("half", np.array(0.5, np.float32)), _tensor("col", np.array([1, -1, 1], np.int64))]
    outs = []
    for s in (8, 16, 32):
        nodes += [_node("AveragePool", ["grey"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]),
                  _node("Mul", [f"pool{s}", "k255"], [f"norm{s}"]),
                  _node("Reshape", [f"norm{s}", "col"], [f"p{s}"]),
                  _node("Mul", [f"p{s}", "zero"], [f"z{s}"]),
                  _node("Add", [f"z{s}", "half"], [f"h{s}"]),
                  _node("Identity" if s == 32 else "Mul", [f"p{s}"] if s == 32 else [f"p{s}", "zero"], [f"cls_{s}"]),
                  _node("Identity", [f"cls_{s}"], [f"obj_{s}"]),
                  _node("Concat", [f"h{s}", f"h{s}", f"z{s}", f"z{s}"], [f"bbox_{s}"], axis=2),
                  _node("Concat", [f"z{s}"] * 10, [f"kps_{s}"], axis=2)]
        outs += [(f"cls_{s}", 1), (f"obj_{s}", 1), (f"bbox_{s}", 4), (f"kps_{s}", 10)]
    graph = (b"".join(_bytes(1, n) for n in nodes) + _bytes(2, "tiny_yunet") + b"".join(_bytes(5, t) for t in inits)
             + _bytes(11, _value("input", [1, 3, "h", "w"]))
             + b"".join(_bytes(12, _value(name, [1, "n", c])) for name, c in outs))
    return _int(1, 8) + _bytes(2, "refinery-test") + _bytes(7, graph) + _bytes(8, _bytes(1, "") + _int(2, 13))
