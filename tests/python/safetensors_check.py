#!/usr/bin/python3
"""Independent check of a tally model file, with nothing but the standard library and numpy.

Usage: safetensors_check.py MODEL.safetensors TEST_IMAGES.gz TEST_LABELS.gz

Parses the safetensors file by hand (no safetensors package), validates its layout (8-byte
alignment of the data, F32 tensors named layers.L.weight / layers.L.bias forming a chain, byte
ranges that tile the data exactly, finite values), rebuilds the MLP (Linear layers with ReLU
between them, x @ W.T + b, as PyTorch's nn.Linear), evaluates it on the Fashion-MNIST test IDX
files with pixels scaled by 1/255, and prints one JSON line: {"accuracy": ..., "loss": ...}.
A malformed file or data set exits non-zero with a message on stderr.
"""
import gzip
import json
import re
import struct
import sys

import numpy as np

HEADER_MAX = 100 << 20
NAME = re.compile(r"^layers\.(0|[1-9][0-9]*)\.(weight|bias)$")


class Malformed(Exception):
    pass


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise Malformed("duplicate key in header")
    return dict(pairs)


def read_header(blob):
    if len(blob) < 8:
        raise Malformed("%d bytes is too short for a safetensors file" % len(blob))
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise Malformed("header length %d is longer than the file" % n)
    if n > HEADER_MAX:
        raise Malformed("header length %d is over 100 MiB" % n)
    if (8 + n) % 8 != 0:
        raise Malformed("data starts at byte %d, not a multiple of 8" % (8 + n))
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise Malformed("header is not valid JSON: %s" % e)
    if not isinstance(header, dict):
        raise Malformed("header is not a JSON object")
    return header, blob[8 + n:]


def is_uint_list(v, length=None):
    return (isinstance(v, list) and (length is None or len(v) == length)
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v))


def read_tensors(header, data):
    """Returns {name: float32 array} after checking entries, ranges and coverage."""
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise Malformed("__metadata__ is not an object of strings")
    tensors, ranges = {}, []
    for name, t in header.items():
        if not NAME.match(name):
            raise Malformed("unknown tensor %r" % name)
        if not isinstance(t, dict) or set(t) != {"dtype", "shape", "data_offsets"}:
            raise Malformed("tensor %r must have exactly dtype, shape and data_offsets" % name)
        if t["dtype"] != "F32":
            raise Malformed("tensor %r has dtype %s; tally models are F32" % (name, t["dtype"]))
        shape, offs = t["shape"], t["data_offsets"]
        if not is_uint_list(shape) or not is_uint_list(offs, 2):
            raise Malformed("tensor %r has a malformed shape or data_offsets" % name)
        if 0 in shape:
            raise Malformed("tensor %r has an empty dimension" % name)
        begin, end = offs
        if not begin <= end <= len(data):
            raise Malformed("data_offsets %r of %r are outside the %d data bytes" % (offs, name, len(data)))
        if end - begin != 4 * int(np.prod(shape, dtype=object)):
            raise Malformed("tensor %r: data_offsets and shape disagree" % name)
        ranges.append((begin, end, name))
        tensors[name] = np.frombuffer(data, dtype="<f4", count=(end - begin) // 4,
                                      offset=begin).reshape(shape)
        if not np.all(np.isfinite(tensors[name])):
            raise Malformed("tensor %r holds a non-finite value" % name)
    pos = 0
    for begin, end, name in sorted(ranges):
        if begin != pos:
            raise Malformed("%s before %r" % ("overlap" if begin < pos else "hole", name))
        pos = end
    if pos != len(data):
        raise Malformed("%d data bytes belong to no tensor" % (len(data) - pos))
    return meta, tensors


def build_layers(tensors):
    """[(W, b)] for layers 0..n-1, checking that each layer feeds the next."""
    n = len(tensors) // 2
    layers = []
    for l in range(n):
        w, b = tensors.get("layers.%d.weight" % l), tensors.get("layers.%d.bias" % l)
        if w is None or b is None or w.ndim != 2 or b.ndim != 1:
            raise Malformed("layer %d lacks a 2-d weight and 1-d bias" % l)
        if b.shape[0] != w.shape[0] or (layers and w.shape[1] != layers[-1][0].shape[0]):
            raise Malformed("layer %d has shape %s, bias %s: the chain breaks" % (l, w.shape, b.shape))
        layers.append((w, b))
    if not layers or len(tensors) != 2 * n:
        raise Malformed("tensors are not layers.0..%d weight and bias" % (n - 1))
    return layers


def read_idx(path, magic, ndim):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 + 4 * ndim or struct.unpack(">I", raw[:4])[0] != magic:
        raise Malformed("%s: not an IDX file with magic 0x%08x" % (path, magic))
    dims = struct.unpack(">%dI" % ndim, raw[4:4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise Malformed("%s: %d bytes of data for dimensions %s" % (path, body.size, dims))
    return body.reshape(dims)


def evaluate(layers, x, y):
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i + 1 < len(layers):
            h = np.maximum(h, 0)
    logits = h.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-logp[np.arange(len(y)), y].mean())
    accuracy = float((logits.argmax(axis=1) == y).mean())
    return accuracy, loss


def main(argv):
    if len(argv) != 4:
        sys.exit("usage: safetensors_check.py MODEL.safetensors TEST_IMAGES.gz TEST_LABELS.gz")
    try:
        with open(argv[1], "rb") as f:
            header, data = read_header(f.read())
        meta, tensors = read_tensors(header, data)
        layers = build_layers(tensors)
        if meta.get("tally.activation", "relu") != "relu":
            raise Malformed("activation %r is not relu" % meta["tally.activation"])
        images = read_idx(argv[2], 0x803, 3)
        labels = read_idx(argv[3], 0x801, 1).astype(np.int64)
        x = images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255)
        if x.shape[0] != labels.shape[0] or x.shape[1] != layers[0][0].shape[1]:
            raise Malformed("data of shape %s does not fit the model's %d inputs"
                            % (x.shape, layers[0][0].shape[1]))
        if labels.max() >= layers[-1][0].shape[0]:
            raise Malformed("a label is beyond the model's %d classes" % layers[-1][0].shape[0])
    except (Malformed, OSError, EOFError) as e:
        sys.exit("safetensors_check: %s: %s" % (argv[1], e))
    accuracy, loss = evaluate(layers, x, labels)
    print(json.dumps({"accuracy": accuracy, "loss": loss}))


if __name__ == "__main__":
    main(sys.argv)
