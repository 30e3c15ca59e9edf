"""The inter-process frame format of shared/ipc.h, in Python, for black-box tests.

A frame is one ZeroMQ message part:

    frame   = version:u8 message*
    message = type:u8 length:u32be body
    body    = field*
    field   = tag:u8 length:u32be value

Building:

    frame(msg(Type.LINK_HELLO, kind="test", pid=42),
          msg(Type.SESSION_ADD, from_="a@example.org/r", conn=1))

Keyword names are the tag names in lower case (FROM is `from_`); repeatable
tags (TARGET, ARG) take a list. Integers are encoded with the width the tag
has in C; strings are UTF-8 encoded, bytes pass as they are.

Decoding mirrors ipc.c's checks (allowed and required fields per type,
widths, lengths, duplicates, value ranges), so a test that decodes the
broker's output also checks that the broker encodes correctly:

    for m in decode(data):
        if m.type == Type.STANZA: print(m.from_, m.to, m.target)

Keep this file in step with shared/ipc.h and shared/ipc.c.
"""
import struct
from enum import IntEnum

VERSION = 1
MAX_FRAME = 8 << 20
MAX_MESSAGE = 2 << 20
MAX_ADDRESS = 3071
MAX_SHORT = 1024
FLUSH_AT = 256 << 10


class Type(IntEnum):
    LINK_HELLO = 1
    LINK_WELCOME = 2
    LINK_HEARTBEAT = 3
    LINK_REHELLO = 4
    LINK_DISCONNECT = 5
    LINK_BYE = 6
    ROUTE_ADD = 10
    ROUTE_DEL = 11
    SESSION_ADD = 12
    SESSION_DEL = 13
    INTEREST_ADD = 14
    INTEREST_DEL = 15
    STANZA = 20
    REQUEST = 30
    RESPONSE = 31


class Tag(IntEnum):
    KIND = 1
    PID = 2
    WORKER = 3
    EPOCH = 4
    REASON = 5
    ADDRESS = 6
    CONN = 7
    TARGET = 8
    SKIND = 9
    TYPE = 10
    ID = 11
    FROM = 12
    TO = 13
    BODY = 14
    SUBJECT = 15
    THREAD = 16
    SHOW = 17
    STATUS = 18
    PRIORITY = 19
    TOPIC = 20
    PAYLOAD = 21
    QOS = 22
    RETAIN = 23
    NATIVE = 24
    REQ_ID = 25
    OP = 26
    ARG = 27
    CODE = 28
    CONNS = 29
    INSTANCE = 30


class Skind(IntEnum):
    MESSAGE = 1
    PRESENCE = 2
    IQ = 3
    PUBLISH = 4
    CALL = 5
    CONTROL = 6


class Code(IntEnum):
    OK = 0
    BAD_REQUEST = 1
    NOT_FOUND = 2
    CONFLICT = 3
    UNAVAILABLE = 4
    INTERNAL = 5


STR, BYTES, U8, U32, I32, U64 = "str", "bytes", "u8", "u32", "i32", "u64"

# tag -> (form, max length for str/bytes, repeatable); as ipc.c's field_rules.
FIELDS = {
    Tag.KIND: (STR, 32, False),
    Tag.PID: (U32, 0, False),
    Tag.WORKER: (U32, 0, False),
    Tag.EPOCH: (U64, 0, False),
    Tag.REASON: (STR, MAX_SHORT, False),
    Tag.ADDRESS: (STR, MAX_ADDRESS, False),
    Tag.CONN: (U64, 0, False),
    Tag.TARGET: (U64, 0, True),
    Tag.SKIND: (U8, 0, False),
    Tag.TYPE: (STR, 64, False),
    Tag.ID: (STR, MAX_SHORT, False),
    Tag.FROM: (STR, MAX_ADDRESS, False),
    Tag.TO: (STR, MAX_ADDRESS, False),
    Tag.BODY: (BYTES, MAX_MESSAGE, False),
    Tag.SUBJECT: (BYTES, MAX_MESSAGE, False),
    Tag.THREAD: (STR, MAX_SHORT, False),
    Tag.SHOW: (STR, 16, False),
    Tag.STATUS: (BYTES, MAX_MESSAGE, False),
    Tag.PRIORITY: (I32, 0, False),
    Tag.TOPIC: (STR, 65535, False),
    Tag.PAYLOAD: (BYTES, MAX_MESSAGE, False),
    Tag.QOS: (U8, 0, False),
    Tag.RETAIN: (U8, 0, False),
    Tag.NATIVE: (BYTES, MAX_MESSAGE, False),
    Tag.REQ_ID: (U32, 0, False),
    Tag.OP: (STR, 64, False),
    Tag.ARG: (BYTES, MAX_MESSAGE, True),
    Tag.CODE: (U32, 0, False),
    Tag.CONNS: (U32, 0, False),
    Tag.INSTANCE: (U64, 0, False),
}

_STANZA_FIELDS = {
    Tag.SKIND, Tag.TYPE, Tag.ID, Tag.FROM, Tag.TO, Tag.BODY, Tag.SUBJECT, Tag.THREAD, Tag.SHOW,
    Tag.STATUS, Tag.PRIORITY, Tag.TOPIC, Tag.PAYLOAD, Tag.QOS, Tag.RETAIN, Tag.NATIVE, Tag.TARGET,
    Tag.WORKER, Tag.CONN, Tag.REASON,
}

# type -> (allowed tags, required tags); as ipc.c's type_rules.
RULES = {
    Type.LINK_HELLO: ({Tag.KIND, Tag.PID, Tag.INSTANCE}, {Tag.KIND, Tag.PID}),
    Type.LINK_WELCOME: ({Tag.WORKER, Tag.EPOCH}, {Tag.WORKER, Tag.EPOCH}),
    Type.LINK_HEARTBEAT: ({Tag.CONNS}, set()),
    Type.LINK_REHELLO: ({Tag.REASON}, set()),
    Type.LINK_DISCONNECT: ({Tag.REASON}, set()),
    Type.LINK_BYE: (set(), set()),
    Type.ROUTE_ADD: ({Tag.ADDRESS}, {Tag.ADDRESS}),
    Type.ROUTE_DEL: ({Tag.ADDRESS}, {Tag.ADDRESS}),
    Type.SESSION_ADD: ({Tag.FROM, Tag.CONN, Tag.PRIORITY, Tag.SHOW, Tag.STATUS},
                       {Tag.FROM, Tag.CONN}),
    Type.SESSION_DEL: ({Tag.FROM}, {Tag.FROM}),
    Type.INTEREST_ADD: ({Tag.TOPIC}, {Tag.TOPIC}),
    Type.INTEREST_DEL: ({Tag.TOPIC}, {Tag.TOPIC}),
    Type.STANZA: (_STANZA_FIELDS, {Tag.SKIND}),
    Type.REQUEST: ({Tag.TO, Tag.REQ_ID, Tag.OP, Tag.ARG, Tag.WORKER},
                   {Tag.TO, Tag.REQ_ID, Tag.OP}),
    Type.RESPONSE: ({Tag.WORKER, Tag.REQ_ID, Tag.CODE, Tag.REASON, Tag.ARG},
                    {Tag.WORKER, Tag.REQ_ID, Tag.CODE}),
}

_WIDTH = {U8: 1, U32: 4, I32: 4, U64: 8}
_PACK = {U8: ">B", U32: ">I", I32: ">i", U64: ">Q"}


class DecodeError(ValueError):
    """The bytes break the contract; the message says how, as ipc.c would."""


def _tag_for(name):
    """Keyword name -> Tag: 'from_' -> Tag.FROM, 'req_id' -> Tag.REQ_ID."""
    return Tag[name.rstrip("_").upper()]


def field(tag, value):
    """One encoded field. No checks: tests use it to build broken input too."""
    form = FIELDS[Tag(tag)][0] if tag in Tag._value2member_map_ else BYTES
    if isinstance(value, int) and not isinstance(value, bool) and form in _PACK:
        data = struct.pack(_PACK[form], value)
    elif isinstance(value, str):
        data = value.encode()
    else:
        data = bytes(value)
    return struct.pack(">BI", int(tag), len(data)) + data


def raw_msg(mtype, body):
    """A message with a given body (already encoded fields)."""
    return struct.pack(">BI", int(mtype), len(body)) + body


def msg(mtype, /, **fields):
    """One encoded message; fields by keyword (see the module doc)."""
    body = b""
    for name, value in fields.items():
        if value is None:
            continue
        tag = _tag_for(name)
        if FIELDS[tag][2]:
            for v in value:
                body += field(tag, v)
        else:
            body += field(tag, value)
    return raw_msg(mtype, body)


def frame(*msgs):
    """A frame of encoded messages."""
    return bytes([VERSION]) + b"".join(msgs)


class Msg:
    """A decoded message: .type, .fields {Tag: value}, .raw (the encoded
    body); fields by tag name (m.worker, m.body, m.from_, m.type_, m.target).
    Absent single fields read as None, absent repeatable ones as [].
    Strings decode to str, bytes stay bytes."""

    def __init__(self, type_, fields, raw):
        self.type = type_
        self.fields = fields
        self.raw = raw

    def __getattr__(self, name):
        try:
            tag = _tag_for(name)
        except KeyError:
            raise AttributeError(name) from None
        if FIELDS[tag][2]:
            return self.fields.get(tag, [])
        return self.fields.get(tag)

    def has(self, tag):
        return Tag(tag) in self.fields

    def __repr__(self):
        inner = ", ".join(f"{t.name.lower()}={v!r}" for t, v in self.fields.items())
        return f"<{self.type.name} {inner}>"


def _decode_value(tag, data):
    form, max_len, _ = FIELDS[tag]
    if form in _WIDTH:
        if len(data) != _WIDTH[form]:
            raise DecodeError(f"bad {form} field width")
        return struct.unpack(_PACK[form], data)[0]
    if form == STR and b"\0" in data:
        raise DecodeError("NUL inside a string field")
    if len(data) > max_len:
        raise DecodeError("field too long")
    if form == STR:
        try:
            return data.decode()
        except UnicodeDecodeError:
            # The C side checks bytes only; keep them readable for tests.
            return data.decode("latin-1")
    return bytes(data)


def decode_message(type_byte, body):
    if type_byte not in Type._value2member_map_:
        raise DecodeError("unknown message type")
    type_ = Type(type_byte)
    allowed, required = RULES[type_]
    fields = {}
    pos = 0
    while pos < len(body):
        if len(body) - pos < 5:
            raise DecodeError("truncated field header")
        tag_byte, length = struct.unpack_from(">BI", body, pos)
        pos += 5
        if len(body) - pos < length:
            raise DecodeError("truncated field value")
        if tag_byte not in Tag._value2member_map_ or Tag(tag_byte) not in allowed:
            raise DecodeError("field not allowed in this message type")
        tag = Tag(tag_byte)
        value = _decode_value(tag, body[pos:pos + length])
        pos += length
        if FIELDS[tag][2]:
            fields.setdefault(tag, []).append(value)
        elif tag in fields:
            raise DecodeError("duplicate field")
        else:
            fields[tag] = value
    if not required <= set(fields):
        raise DecodeError("required field missing")
    if Tag.SKIND in fields and not 1 <= fields[Tag.SKIND] <= max(Skind):
        raise DecodeError("unknown stanza kind")
    if Tag.QOS in fields and fields[Tag.QOS] > 2:
        raise DecodeError("QoS out of range")
    if Tag.RETAIN in fields and fields[Tag.RETAIN] > 1:
        raise DecodeError("retain flag out of range")
    if Tag.CODE in fields and fields[Tag.CODE] > max(Code):
        raise DecodeError("unknown response code")
    return Msg(type_, fields, bytes(body))


def decode(data):
    """Every message of a frame, or DecodeError."""
    data = bytes(data)
    if not data:
        raise DecodeError("empty frame")
    if len(data) > MAX_FRAME:
        raise DecodeError("frame too large")
    if data[0] != VERSION:
        raise DecodeError("unsupported frame version")
    out, pos = [], 1
    while pos < len(data):
        if len(data) - pos < 5:
            raise DecodeError("truncated message header")
        type_byte, length = struct.unpack_from(">BI", data, pos)
        if length > MAX_MESSAGE:
            raise DecodeError("message too large")
        if len(data) - pos - 5 < length:
            raise DecodeError("truncated message body")
        out.append(decode_message(type_byte, data[pos + 5:pos + 5 + length]))
        pos += 5 + length
    return out
