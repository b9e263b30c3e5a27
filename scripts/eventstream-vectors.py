#!/usr/bin/env python3
"""Writes Tests/AWSEventStreamTests/Fixtures/eventstream-vectors.json: AWS event-stream frames and what
botocore's own event-stream parser (botocore.eventstream.EventStreamBuffer) reads from them.

Frames are framed here with struct and zlib's CRC32 from a description of headers and payload; every
positive frame is then decoded by botocore and the fixture records botocore's reading (not ours), so the
Swift decoder is checked against botocore and the Swift encoder against the bytes botocore accepted.
Negative frames (corrupted CRCs, truncation, bad headers, impossible lengths) are checked to be refused
by botocore too, and its exception class is recorded.

Usage: python3 scripts/eventstream-vectors.py   (needs `pip install botocore`)
"""
import base64
import json
import os
import struct
import sys
import uuid
import zlib

from botocore import eventstream

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "AWSEventStreamTests",
                   "Fixtures", "eventstream-vectors.json")

TYPES = {"true": 0, "false": 1, "byte": 2, "short": 3, "integer": 4, "long": 5,
         "bytes": 6, "string": 7, "timestamp": 8, "uuid": 9}


def encode_value(kind, value):
    code = TYPES[kind]
    if kind in ("true", "false"):
        return bytes([code])
    if kind == "byte":
        return bytes([code]) + struct.pack(">b", value)
    if kind == "short":
        return bytes([code]) + struct.pack(">h", value)
    if kind == "integer":
        return bytes([code]) + struct.pack(">i", value)
    if kind in ("long", "timestamp"):
        return bytes([code]) + struct.pack(">q", value)
    if kind == "bytes":
        return bytes([code]) + struct.pack(">H", len(value)) + value
    if kind == "string":
        raw = value.encode("utf-8")
        return bytes([code]) + struct.pack(">H", len(raw)) + raw
    if kind == "uuid":
        return bytes([code]) + value.bytes
    raise ValueError(kind)


def encode_headers(headers):
    out = b""
    for name, kind, value in headers:
        raw = name.encode("utf-8")
        out += bytes([len(raw)]) + raw + encode_value(kind, value)
    return out


def frame(header_bytes, payload):
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack(">II", total, len(header_bytes))
    prelude += struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + header_bytes + payload
    return body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def botocore_read(data):
    buffer = eventstream.EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def json_value(kind, value):
    if kind == "bytes":
        return base64.b64encode(value).decode()
    if kind == "uuid":
        return str(uuid.UUID(bytes=value))
    return value


def positive(name, headers, payload):
    data = frame(encode_headers(headers), payload)
    messages = botocore_read(data)
    assert len(messages) == 1, name
    read = messages[0]
    kinds = {n: k for n, k, _ in headers}
    return {
        "name": name,
        "frame": base64.b64encode(data).decode(),
        "headers": [{"name": n, "type": kinds[n], "value": json_value(kinds[n], v)} for n, v in read.headers.items()],
        "payload": base64.b64encode(read.payload).decode(),
    }


def negative(name, data, error):
    try:
        buffer = eventstream.EventStreamBuffer()
        buffer.add_data(data)
        list(buffer)
        refused_by = None
    except Exception as failure:  # noqa: BLE001 - recording which class botocore raises
        refused_by = type(failure).__name__
    return {"name": name, "frame": base64.b64encode(data).decode(), "error": error, "botocore": refused_by}


def main():
    every_type = [
        ("flag-true", "true", True),
        ("flag-false", "false", False),
        ("byte", "byte", -7),
        ("short", "short", -12_345),
        ("integer", "integer", 2_000_000_001),
        ("long", "long", -9_000_000_000_000_000_001),
        ("bytes", "bytes", bytes(range(0, 256, 15))),
        ("string", "string", "héllo, wörld ✓"),
        ("timestamp", "timestamp", 1_764_300_000_123),
        ("uuid", "uuid", uuid.UUID("f47ac10b-58cc-4372-a567-0e02b2c3d479")),
    ]
    delta = b'{"contentBlockIndex":0,"delta":{"text":"Hello"},"p":"abcd"}'
    positives = [
        positive("empty", [], b""),
        positive("payload only", [], b'{"foo":"bar"}'),
        positive("every header type", every_type, b"\x00\x01\x02binary\xff"),
        positive("converse stream delta", [
            (":event-type", "string", "contentBlockDelta"),
            (":content-type", "string", "application/json"),
            (":message-type", "string", "event"),
        ], delta),
        positive("throttling exception", [
            (":exception-type", "string", "throttlingException"),
            (":content-type", "string", "application/json"),
            (":message-type", "string", "exception"),
        ], b'{"message":"Too many tokens, please wait before trying again."}'),
        positive("error message", [
            (":error-code", "string", "InternalFailure"),
            (":error-message", "string", "An internal error occurred"),
            (":message-type", "string", "error"),
        ], b""),
        positive("large payload", [(":message-type", "string", "event"), (":event-type", "string", "chunk")],
                 bytes((i * 7 + 3) % 256 for i in range(20_000))),
    ]

    good = frame(encode_headers([(":message-type", "string", "event")]), b'{"a":1}')
    flipped_prelude = bytearray(good)
    flipped_prelude[9] ^= 0x01
    flipped_payload = bytearray(good)
    flipped_payload[-6] ^= 0x20
    flipped_length = bytearray(good)
    flipped_length[3] ^= 0x04
    bad_type = frame(b"\x01x" + bytes([10]), b"")
    overrun = frame(b"\x04name\x07\x00\x09abc", b"")
    duplicate = frame(encode_headers([("a", "true", True), ("a", "false", False)]), b"")
    bad_utf8 = frame(b"\x01s\x07\x00\x02\xc3\x28", b"")
    empty_name = frame(b"\x00\x00", b"")
    short_total = struct.pack(">II", 8, 0)
    short_total += struct.pack(">I", zlib.crc32(short_total) & 0xFFFFFFFF) + b"\x00\x00\x00\x00"
    headers_past_end = struct.pack(">II", 16, 100)
    headers_past_end += struct.pack(">I", zlib.crc32(headers_past_end) & 0xFFFFFFFF)
    headers_past_end += struct.pack(">I", zlib.crc32(headers_past_end) & 0xFFFFFFFF)
    negatives = [
        negative("prelude crc corrupted", bytes(flipped_prelude), "preludeChecksumMismatch"),
        negative("total length corrupted", bytes(flipped_length), "preludeChecksumMismatch"),
        negative("payload corrupted", bytes(flipped_payload), "messageChecksumMismatch"),
        negative("header type 10", bad_type, "invalidHeader"),
        negative("header value past the headers", overrun, "invalidHeader"),
        negative("duplicate header", duplicate, "invalidHeader"),
        negative("string header not UTF-8", bad_utf8, "invalidHeader"),
        negative("empty header name", empty_name, "invalidHeader"),
        negative("total length below 16", short_total, "invalidLength"),
        negative("headers longer than the message", headers_past_end, "invalidLength"),
    ]
    truncations = []
    for cut in (1, 11, 12, len(good) // 2, len(good) - 1):
        truncations.append({"name": f"first {cut} of {len(good)} bytes", "frame": base64.b64encode(good[:cut]).decode()})
        # botocore waits for more bytes: nothing is yielded (it has no end-of-stream check of its own).
        assert botocore_read(good[:cut]) == []

    document = {
        "generator": "scripts/eventstream-vectors.py",
        "botocore": __import__("botocore").__version__,
        "positive": positives,
        "negative": negatives,
        "truncated": truncations,
    }
    with open(OUT, "w") as out:
        json.dump(document, out, indent=1, ensure_ascii=False)
        out.write("\n")
    refused = sum(1 for n in negatives if n["botocore"])
    print(f"wrote {OUT}: {len(positives)} positive, {len(negatives)} negative ({refused} refused by botocore), "
          f"{len(truncations)} truncated")


if __name__ == "__main__":
    sys.exit(main())
