"""Bad input on the client port must never crash or stall the member.

While a second client (an etcdctl put/get loop) keeps working, this sends:
a malformed HTTP/2 preface (the connection is closed); a valid HTTP/2
connection, built frame by frame here, with a garbage protobuf body
(grpc-status 13), an oversized gRPC length prefix (grpc-status 8) and an
unknown method (grpc-status 12), then a valid Put on the same connection;
garbage frames after a valid preface; etcdctl requests over
--max-request-bytes (etcd 3.4's two answers, checked against a real etcd
3.4 run with the same flag: "etcdserver: request is too large" for a raft
entry over the limit, grpc's ResourceExhausted past limit + 512 KiB);
and an empty key ("etcdserver: key is not provided"). The member must still
be alive and serving at the end, and the loop must not have failed once.
"""
import os
import socket
import struct
import tempfile
import threading
import time

import harness

MAX_REQUEST_BYTES = 10000
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# HTTP/2 frame types and flags (RFC 7540).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
SETTINGS_HEADER_TABLE_SIZE = 0x1


def frame(ftype, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream_id & 0x7FFFFFFF) + payload


def hpack_int(value, prefix_bits, first_byte_flags=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = [first_byte_flags | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    return (b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value)


def request_headers(path):
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"127.0.0.1"),
              (b":path", path), (b"content-type", b"application/grpc"), (b"te", b"trailers")]
    return b"".join(hpack_literal(n, v) for n, v in fields)


def grpc_message(payload, length=None):
    return b"\x00" + struct.pack(">I", len(payload) if length is None else length) + payload


def decode_int(block, pos, prefix_bits):
    limit = (1 << prefix_bits) - 1
    value = block[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        b = block[pos]
        pos += 1
        value += (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def decode_string(block, pos):
    huffman = bool(block[pos] & 0x80)
    length, pos = decode_int(block, pos, 7)
    return (huffman, block[pos:pos + length]), pos + length


def header_fields(block):
    """The header fields of a block, in order, each (kind, value) where value
    is (huffman, raw bytes) for literals and the static/dynamic index for
    indexed fields. We advertise a header table size of 0, so the server
    never refers to earlier blocks; names are skipped (they may be Huffman
    coded, which this test does not decode); the position tells the field."""
    fields, pos = [], 0
    while pos < len(block):
        b = block[pos]
        if b & 0x80:  # indexed field
            index, pos = decode_int(block, pos, 7)
            fields.append(("indexed", index))
        elif b & 0xC0 == 0x40 or b & 0xF0 in (0x00, 0x10):
            prefix = 6 if b & 0xC0 == 0x40 else 4
            index, pos = decode_int(block, pos, prefix)
            if index == 0:
                _, pos = decode_string(block, pos)
            value, pos = decode_string(block, pos)
            fields.append(("literal", value))
        elif b & 0xE0 == 0x20:  # dynamic table size update
            _, pos = decode_int(block, pos, 5)
        else:
            raise AssertionError("unexpected HPACK byte %#x" % b)
    return fields


class H2:
    """A minimal HTTP/2 client over a raw socket, enough to send gRPC calls
    and read back their frames."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        settings = struct.pack(">HI", SETTINGS_HEADER_TABLE_SIZE, 0)
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))
        self.next_id = 1

    def read_frame(self):
        while len(self.buf) < 9 or len(self.buf) < 9 + struct.unpack(">I", b"\0" + self.buf[:3])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        length = struct.unpack(">I", b"\0" + self.buf[:3])[0]
        ftype, flags = self.buf[3], self.buf[4]
        stream_id = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
        payload = self.buf[9:9 + length]
        self.buf = self.buf[9 + length:]
        if ftype == SETTINGS and not flags & ACK:
            self.sock.sendall(frame(SETTINGS, ACK, 0))
        if ftype == PING and not flags & ACK:
            self.sock.sendall(frame(PING, ACK, 0, payload))
        return ftype, flags, stream_id, payload

    def call(self, path, body, end_stream=True, chunk=None):
        sid = self.next_id
        self.next_id += 2
        self.sock.sendall(frame(HEADERS, END_HEADERS, sid, request_headers(path)))
        chunk = chunk or max(1, len(body))
        pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            self.sock.sendall(frame(DATA, END_STREAM if (last and end_stream) else 0, sid, piece))
        return sid

    def result(self, sid, timeout_s=10):
        """(grpc-status, body bytes) of stream sid; reads until its END_STREAM or RST."""
        deadline = time.monotonic() + timeout_s
        body, status = b"", None
        while time.monotonic() < deadline:
            f = self.read_frame()
            assert f is not None, "connection closed while waiting for stream %d" % sid
            ftype, flags, stream_id, payload = f
            if stream_id != sid:
                continue
            if ftype == DATA:
                body += payload
            elif ftype == HEADERS:
                fields = header_fields(payload)
                literals = [v for kind, v in fields if kind == "literal"]
                # A trailers-only reply is [:status, content-type, grpc-status,
                # grpc-message]; trailers after DATA are [grpc-status].
                if len(fields) >= 3 and fields[0] == ("indexed", 8):  # :status 200
                    status = int(fields[2][1][1])
                elif not fields[0] == ("indexed", 8) and literals:
                    status = int(literals[0][1])
                if flags & END_STREAM:
                    return status, body
            elif ftype == RST_STREAM:
                return status, body
        raise AssertionError("no answer on stream %d within %ds" % (sid, timeout_s))

    def close(self):
        self.sock.close()


def pb_bytes(field, value):
    return bytes([field << 3 | 2]) + varint(len(value)) + value


def varint(n):
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def put_request(key, value):
    return pb_bytes(1, key) + pb_bytes(2, value)


class Loop(threading.Thread):
    """The second client: etcdctl put then get, over and over, until stopped."""

    def __init__(self, endpoint):
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.stop = threading.Event()
        self.ok = 0
        self.failures = []

    def run(self):
        i = 0
        while not self.stop.is_set() and i < 500:
            key, value = "loop-%d" % (i % 20), "v%d" % i
            code, _, err = harness.etcdctl(self.endpoint, "put", key, value, check=False)
            if code != 0:
                self.failures.append(("put", err))
            code, out, err = harness.etcdctl(self.endpoint, "get", key, "--print-value-only",
                                             check=False)
            if code != 0 or out.strip() != value:
                self.failures.append(("get", out, err))
            else:
                self.ok += 1
            i += 1


def expect_closed(sock, timeout_s=10):
    sock.settimeout(timeout_s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return
        if not data:
            return
    raise AssertionError("the server kept a bad connection open")


def main():
    with harness.Member(["--max-request-bytes", str(MAX_REQUEST_BYTES)]) as m:
        loop = Loop(m.endpoint)
        loop.start()
        time.sleep(0.5)

        # 1. A malformed preface: that connection is closed, nothing else.
        s = socket.create_connection(("127.0.0.1", m.port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 100)
        expect_closed(s)
        s.close()
        s = socket.create_connection(("127.0.0.1", m.port), timeout=10)
        s.sendall(os.urandom(4096))
        expect_closed(s)
        s.close()

        # 2. Valid HTTP/2, bad gRPC bodies, then a good call on the same connection.
        h = H2(m.port)
        sid = h.call(b"/etcdserverpb.KV/Put", grpc_message(b"\xff" * 16))
        status, body = h.result(sid)
        assert status == 13, "garbage protobuf: grpc-status %r" % status
        assert body == b""
        # Split across many DATA frames, still garbage.
        sid = h.call(b"/etcdserverpb.KV/Range", grpc_message(b"\x0a\x7f" + b"z" * 10), chunk=3)
        assert h.result(sid)[0] == 13
        # A length prefix past the limit: refused from the prefix alone,
        # while the client has not finished sending.
        sid = h.call(b"/etcdserverpb.KV/Put", grpc_message(b"", length=50 * 1024 * 1024),
                     end_stream=False)
        assert h.result(sid)[0] == 8, "oversized prefix"
        sid = h.call(b"/etcdserverpb.Nope/Nope", grpc_message(b""))
        assert h.result(sid)[0] == 12
        sid = h.call(b"/etcdserverpb.Watch/Watch", b"", end_stream=False)
        assert h.result(sid)[0] == 12, "streaming method must be refused at once"
        sid = h.call(b"/etcdserverpb.KV/Put", grpc_message(put_request(b"raw-key", b"raw-value")),
                     chunk=2)
        status, body = h.result(sid)
        assert status == 0, "valid put after bad input: %r" % status
        assert len(body) > 5 and body[0] == 0, body
        h.close()
        code, out, _ = harness.etcdctl(m.endpoint, "get", "raw-key", "--print-value-only")
        assert out.strip() == "raw-value", out

        # 3. Garbage frames after a valid preface: that connection goes.
        s = socket.create_connection(("127.0.0.1", m.port), timeout=10)
        s.sendall(PREFACE + frame(SETTINGS, 0, 0) + b"\xff\xff\xff\x01\x04\x00\x00\x00\x00" +
                  os.urandom(200))
        expect_closed(s)
        s.close()

        # 4. Requests over --max-request-bytes, through etcdctl (texts as etcd 3.4's).
        tmp = tempfile.mkdtemp(prefix="flotilla-api-")
        for size, want in ((9980, "etcdserver: request is too large"),
                           (600000, "rpc error: code = ResourceExhausted desc = grpc: received "
                                    "message larger than max (600007 vs. %d)"
                            % (MAX_REQUEST_BYTES + 512 * 1024))):
            path = os.path.join(tmp, "value-%d" % size)
            with open(path, "wb") as f:
                f.write(b"a" * size)
            with open(path) as f:
                value = f.read()
            code, out, err = harness.etcdctl(m.endpoint, "put", "k", stdin=value, check=False)
            assert code != 0, "a %d-byte put must be refused" % size
            assert ("Error: " + want) in err, err
        code, out, err = harness.etcdctl(m.endpoint, "put", "small", stdin="a" * 9000)
        assert out.strip() == "OK"

        # 5. An empty key.
        code, out, err = harness.etcdctl(m.endpoint, "put", "", "v", check=False)
        assert code != 0 and "Error: etcdserver: key is not provided" in err, err

        loop.stop.set()
        loop.join(timeout=120)
        assert not loop.is_alive(), "the put/get loop stalled"
        assert not loop.failures, loop.failures[:3]
        assert loop.ok > 0, "the loop never completed a round"
        assert m.proc.poll() is None, "the member died"
        code, out, _ = harness.etcdctl(m.endpoint, "endpoint", "status")
        assert "3.4.0" in out, out
        # --cluster dials the advertised URL: clientv3 then sends
        # "http://host:port" as :authority, which grpc-go (etcd) accepts.
        code, out, err = harness.etcdctl(m.endpoint, "endpoint", "status", "--cluster")
        assert "3.4.0" in out, out + err
        assert m.stop() == 0, "unclean shutdown"
    print("test_api_bad_input: ok (%d loop rounds)" % loop.ok)


if __name__ == "__main__":
    main()
