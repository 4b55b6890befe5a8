#!/usr/bin/python3
"""A single-node Kafka-protocol server that answers only what librdkafka's
Admin API path needs, for tests of ctlfs's [topics] checks (core/base/
topic-admin.c). librdkafka's mock cluster (ctlfs-broker, the embedded broker)
implements neither CreateTopics nor DescribeConfigs; this does, and nothing
else: no Produce, Fetch, ListOffsets or groups (ctlfs's producer and consumer
find no use for it, which the tests of topic checks do not need).

APIs advertised (ApiVersions), all but ApiVersions v3 non-flexible:
  ApiVersions      (18) v0-3  (v3: flexible body, response header v0)
  Metadata          (3) v0-8  all topics (null list; v0: empty list) or named
                              ones; an unknown name gets UNKNOWN_TOPIC_OR_PARTITION
                              (no auto-creation, as auto.create.topics.enable=false);
                              this node is the only broker and the controller
  CreateTopics     (19) v0-4  partitions -1 -> 3, replication factor -1 -> 1;
                              TOPIC_ALREADY_EXISTS, INVALID_REPLICATION_FACTOR
                              (> 1 broker), INVALID_PARTITIONS, INVALID_CONFIG
                              (an unknown topic config), validate_only honoured
  DescribeConfigs  (32) v0-2  a topic's configs: those set, and the broker
                              defaults of the others (cleanup.policy=delete,
                              retention.ms=604800000, ...); UNKNOWN_TOPIC_OR_PARTITION
A request for any other API closes its connection (as Kafka does with a
request it cannot parse), after a line on stderr.

Usage:
  kafka_admin_broker.py [--host 127.0.0.1] [--port 0]
                        [--topic NAME:PARTITIONS[:k=v;k=v]]...
                        [--created-meanwhile NAME:PARTITIONS[:k=v;k=v]]...
                        [--metadata-error NAME:CODE]...
                        [--refuse-create [topic|cluster]] [--refuse-describe]
                        [--state FILE]
Prints `bootstrap=HOST:PORT` on stdout once listening, then one line per topic
a CreateTopics request made:
  created NAME partitions=N replication-factor=R configs=k=v;k=v
--state FILE is rewritten (atomically) at start and after each CreateTopics:
  {"topics": {NAME: {"partitions": N, "replication_factor": R,
                     "configs": {k: v},
                     "origin": "option"|"meanwhile"|"CreateTopics"}},
   "create_requests": [{"version": V, "validate_only": B, "timeout_ms": T,
                        "topics": [{"name", "partitions", "replication_factor",
                                    "configs": {k: v}, "error": CODE}]}]}
--created-meanwhile: a topic that another client creates between a client's
metadata request and its CreateTopics: absent from Metadata until a
CreateTopics names it, which then finds it existing (TOPIC_ALREADY_EXISTS).
--metadata-error: Metadata lists topic NAME with error CODE and no partitions
(5, LEADER_NOT_AVAILABLE, is what a broker answers for a topic whose leaders
are not elected yet, e.g. just created); DescribeConfigs still describes it
when it exists.
--refuse-create answers every CreateTopics topic with TOPIC_AUTHORIZATION_FAILED
(29), or CLUSTER_AUTHORIZATION_FAILED (31) with `cluster`; --refuse-describe
answers DescribeConfigs with TOPIC_AUTHORIZATION_FAILED.
Commands on stdin, one a line, each answered by one line on stdout:
  topic NAME:PARTITIONS[:k=v;k=v]   -> "ok topic ..." or "error: ..."
It exits 0 at stdin's EOF (like ctlfs-broker) or on SIGTERM/SIGINT.

Python 3 standard library only."""

import argparse
import json
import os
import signal
import socketserver
import struct
import sys
import threading

# ---------------------------------------------------------------- constants

API_METADATA = 3
API_API_VERSIONS = 18
API_CREATE_TOPICS = 19
API_DESCRIBE_CONFIGS = 32

# api key -> (min, max) advertised
SUPPORTED = {
    API_METADATA: (0, 8),
    API_API_VERSIONS: (0, 3),
    API_CREATE_TOPICS: (0, 4),
    API_DESCRIBE_CONFIGS: (0, 2),
}

NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40
INVALID_REQUEST = 42
TOPIC_AUTHORIZATION_FAILED = 29
CLUSTER_AUTHORIZATION_FAILED = 31

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4

SOURCE_DYNAMIC_TOPIC = 1
SOURCE_DEFAULT = 5

NODE_ID = 1
CLUSTER_ID = "ctlfs-fake-admin"
DEFAULT_PARTITIONS = 3
DEFAULT_REPLICATION_FACTOR = 1

# Topic configs a broker knows, with Apache Kafka 3.x's defaults. A config
# outside this list is refused by CreateTopics (INVALID_CONFIG), as Kafka does.
TOPIC_CONFIG_DEFAULTS = {
    "cleanup.policy": "delete",
    "compression.type": "producer",
    "delete.retention.ms": "86400000",
    "file.delete.delay.ms": "60000",
    "flush.messages": "9223372036854775807",
    "flush.ms": "9223372036854775807",
    "follower.replication.throttled.replicas": "",
    "index.interval.bytes": "4096",
    "leader.replication.throttled.replicas": "",
    "max.compaction.lag.ms": "9223372036854775807",
    "max.message.bytes": "1048588",
    "message.downconversion.enable": "true",
    "message.format.version": "3.0-IV1",
    "message.timestamp.difference.max.ms": "9223372036854775807",
    "message.timestamp.type": "CreateTime",
    "min.cleanable.dirty.ratio": "0.5",
    "min.compaction.lag.ms": "0",
    "min.insync.replicas": "1",
    "preallocate": "false",
    "retention.bytes": "-1",
    "retention.ms": "604800000",
    "segment.bytes": "1073741824",
    "segment.index.bytes": "10485760",
    "segment.jitter.ms": "0",
    "segment.ms": "604800000",
    "unclean.leader.election.enable": "false",
}


def log(msg):
    print(f"kafka_admin_broker: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- wire format

class Reader:
    """Kafka primitive types from a request body."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"request truncated at byte {self.pos} (+{n})")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int8(self):
        return struct.unpack(">b", self._take(1))[0]

    def int16(self):
        return struct.unpack(">h", self._take(2))[0]

    def int32(self):
        return struct.unpack(">i", self._take(4))[0]

    def boolean(self):
        return self.int8() != 0

    def uvarint(self):
        shift = value = 0
        while True:
            b = self._take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise ValueError("varint too long")

    def nullable_string(self):
        n = self.int16()
        if n < 0:
            return None
        return self._take(n).decode("utf-8")

    def string(self):
        s = self.nullable_string()
        if s is None:
            raise ValueError("null where a string is required")
        return s

    def compact_nullable_string(self):
        n = self.uvarint()
        return None if n == 0 else self._take(n - 1).decode("utf-8")

    def array(self, item):
        """None for a null array (length -1)."""
        n = self.int32()
        if n < 0:
            return None
        return [item(self) for _ in range(n)]

    def tagged_fields(self):
        for _ in range(self.uvarint()):
            self.uvarint()                   # tag
            self._take(self.uvarint())       # its data


class Writer:
    """Kafka primitive types into a response body."""

    def __init__(self):
        self.parts = []

    def bytes(self):
        return b"".join(self.parts)

    def int8(self, v):
        self.parts.append(struct.pack(">b", v))

    def int16(self, v):
        self.parts.append(struct.pack(">h", v))

    def int32(self, v):
        self.parts.append(struct.pack(">i", v))

    def boolean(self, v):
        self.int8(1 if v else 0)

    def uvarint(self, v):
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out.append(b | 0x80)
            else:
                out.append(b)
                break
        self.parts.append(bytes(out))

    def nullable_string(self, s):
        if s is None:
            self.int16(-1)
            return
        b = s.encode("utf-8")
        self.int16(len(b))
        self.parts.append(b)

    string = nullable_string

    def array(self, items, write_item):
        self.int32(len(items))
        for it in items:
            write_item(self, it)

    def int32_array(self, values):
        self.array(values, Writer.int32)

    def compact_array(self, items, write_item):
        self.uvarint(len(items) + 1)
        for it in items:
            write_item(self, it)

    def no_tagged_fields(self):
        self.uvarint(0)


# ---------------------------------------------------------------- cluster state

def parse_configs(text):
    """"k=v;k=v" -> {k: v} (blank parts skipped)."""
    out = {}
    for part in (text or "").split(";"):
        part = part.strip()
        if not part:
            continue
        k, sep, v = part.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"not key=value: {part!r}")
        out[k.strip()] = v.strip()
    return out


def parse_topic_spec(spec):
    """"NAME:PARTITIONS[:k=v;k=v]" -> (name, partitions, configs)."""
    name, sep, rest = spec.partition(":")
    if not name or not sep:
        raise ValueError(f"expected NAME:PARTITIONS[:k=v;k=v], got {spec!r}")
    count, _, configs = rest.partition(":")
    try:
        partitions = int(count)
    except ValueError:
        raise ValueError(f"partition count is not a number: {count!r}") from None
    if partitions < 1:
        raise ValueError(f"partition count must be at least 1: {partitions}")
    configs = parse_configs(configs)
    unknown = sorted(set(configs) - set(TOPIC_CONFIG_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown topic config {unknown[0]}")
    return name, partitions, configs


class Cluster:
    def __init__(self, host, state_path, refuse_create, refuse_describe):
        self.lock = threading.Lock()
        self.host = host
        self.port = None
        self.topics = {}          # name -> dict(partitions, replication_factor, configs, origin)
        self.create_requests = []
        self.state_path = state_path
        self.refuse_create = refuse_create      # None, "topic" or "cluster"
        self.refuse_describe = refuse_describe
        self.out_lock = threading.Lock()
        self.hidden = set()       # --created-meanwhile topics not yet named by CreateTopics
        self.metadata_errors = {}  # topic -> error code in Metadata

    def say(self, line):
        with self.out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def add_topic(self, name, partitions, configs, replication_factor=1, origin="option"):
        with self.lock:
            if name in self.topics:
                raise ValueError(f"topic {name} exists")
            self.topics[name] = {"partitions": partitions,
                                 "replication_factor": replication_factor,
                                 "configs": dict(configs), "origin": origin}
            if origin == "meanwhile":
                self.hidden.add(name)
            self.save_locked()

    def save_locked(self):
        if not self.state_path:
            return
        tmp = f"{self.state_path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"topics": self.topics, "create_requests": self.create_requests},
                      f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.state_path)


# ---------------------------------------------------------------- handlers

def handle_api_versions(cluster, version, body, w):
    if version > 3:
        # KIP-511: an unknown version is answered in v0's form with
        # UNSUPPORTED_VERSION and our list, so that the client can retry.
        w.int16(UNSUPPORTED_VERSION)
        w.array(sorted(SUPPORTED.items()), lambda w, kv: (w.int16(kv[0]), w.int16(kv[1][0]),
                                                          w.int16(kv[1][1])))
        return
    items = sorted(SUPPORTED.items())
    w.int16(NONE)
    if version >= 3:
        def item(w, kv):
            w.int16(kv[0])
            w.int16(kv[1][0])
            w.int16(kv[1][1])
            w.no_tagged_fields()
        w.compact_array(items, item)
        w.int32(0)               # throttle_time_ms
        w.no_tagged_fields()
        return
    w.array(items, lambda w, kv: (w.int16(kv[0]), w.int16(kv[1][0]), w.int16(kv[1][1])))
    if version >= 1:
        w.int32(0)               # throttle_time_ms


def handle_metadata(cluster, version, r, w):
    names = r.array(Reader.string)
    if version >= 4:
        r.boolean()              # allow_auto_topic_creation: never, here
    if version == 0 and names == []:
        names = None             # v0: an empty list means all topics
    with cluster.lock:
        topics = {n: dict(t) for n, t in cluster.topics.items() if n not in cluster.hidden}
        errors = dict(cluster.metadata_errors)
    if version >= 3:
        w.int32(0)               # throttle_time_ms

    def broker(w, _):
        w.int32(NODE_ID)
        w.string(cluster.host)
        w.int32(cluster.port)
        if version >= 1:
            w.nullable_string(None)          # rack
    w.array([None], broker)
    if version >= 2:
        w.nullable_string(CLUSTER_ID)
    if version >= 1:
        w.int32(NODE_ID)                     # controller_id

    def partition(w, index):
        w.int16(NONE)
        w.int32(index)
        w.int32(NODE_ID)                     # leader
        if version >= 7:
            w.int32(0)                       # leader_epoch
        w.int32_array([NODE_ID])             # replicas
        w.int32_array([NODE_ID])             # isr
        if version >= 5:
            w.int32_array([])                # offline replicas

    def topic(w, name):
        t = topics.get(name)
        err = errors.get(name, NONE if t else UNKNOWN_TOPIC_OR_PARTITION)
        w.int16(err)
        w.string(name)
        if version >= 1:
            w.boolean(False)                 # is_internal
        w.array(list(range(t["partitions"])) if t and not err else [], partition)
        if version >= 8:
            w.int32(-2147483648)             # topic_authorized_operations: not asked
    wanted = sorted(set(topics) | set(errors)) if names is None else names
    w.array(wanted, topic)
    if version >= 8:
        w.int32(-2147483648)                 # cluster_authorized_operations


def handle_create_topics(cluster, version, r, w):
    def config(r):
        return (r.string(), r.nullable_string())

    def assignment(r):
        return (r.int32(), r.array(Reader.int32))

    def creatable(r):
        return {"name": r.string(), "partitions": r.int32(),
                "replication_factor": r.int16(), "assignments": r.array(assignment) or [],
                "configs": r.array(config) or []}
    wanted = r.array(creatable) or []
    timeout_ms = r.int32()
    validate_only = r.boolean() if version >= 1 else False

    results = []            # (name, error, message)
    record = {"version": version, "validate_only": validate_only, "timeout_ms": timeout_ms,
              "topics": []}
    created = []
    with cluster.lock:
        for t in wanted:
            name = t["name"]
            configs = {k: v for k, v in t["configs"]}
            partitions = t["partitions"]
            rf = t["replication_factor"]
            if partitions == -1 and not t["assignments"]:
                partitions = DEFAULT_PARTITIONS
            if rf == -1 and not t["assignments"]:
                rf = DEFAULT_REPLICATION_FACTOR
            if t["assignments"]:
                partitions = len(t["assignments"])
                rf = len(t["assignments"][0][1] or [])
            err, msg = NONE, None
            unknown = sorted(k for k in configs if k not in TOPIC_CONFIG_DEFAULTS)
            if cluster.refuse_create == "cluster":
                err, msg = CLUSTER_AUTHORIZATION_FAILED, "Authorization failed."
            elif cluster.refuse_create:
                err, msg = TOPIC_AUTHORIZATION_FAILED, "Authorization failed."
            elif name in cluster.topics:
                cluster.hidden.discard(name)     # --created-meanwhile: there now
                err, msg = TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists."
            elif partitions < 1:
                err, msg = INVALID_PARTITIONS, "Number of partitions must be larger than 0."
            elif rf < 1:
                err, msg = INVALID_REPLICATION_FACTOR, \
                    "Replication factor must be larger than 0."
            elif rf > 1:
                err, msg = INVALID_REPLICATION_FACTOR, \
                    f"Replication factor: {rf} larger than available brokers: 1."
            elif unknown:
                err, msg = INVALID_CONFIG, f"Unknown topic config name: {unknown[0]}"
            elif any(v is None for v in configs.values()):
                err, msg = INVALID_CONFIG, "Null value not supported for topic configs"
            record["topics"].append({"name": name, "partitions": t["partitions"],
                                     "replication_factor": t["replication_factor"],
                                     "configs": configs, "error": err})
            if err == NONE and not validate_only:
                cluster.topics[name] = {"partitions": partitions, "replication_factor": rf,
                                        "configs": configs, "origin": "CreateTopics"}
                created.append((name, partitions, rf, configs))
            results.append((name, err, msg))
        cluster.create_requests.append(record)
        cluster.save_locked()
    for name, partitions, rf, configs in created:
        cfg = ";".join(f"{k}={v}" for k, v in configs.items())
        cluster.say(f"created {name} partitions={partitions} replication-factor={rf} "
                    f"configs={cfg}")

    if version >= 2:
        w.int32(0)               # throttle_time_ms

    def result(w, res):
        name, err, msg = res
        w.string(name)
        w.int16(err)
        if version >= 1:
            w.nullable_string(msg)
    w.array(results, result)


def handle_describe_configs(cluster, version, r, w):
    def resource(r):
        return (r.int8(), r.string(), r.array(Reader.string))
    resources = r.array(resource) or []
    synonyms = r.boolean() if version >= 1 else False
    with cluster.lock:
        topics = {n: dict(t) for n, t in cluster.topics.items()}

    w.int32(0)                   # throttle_time_ms

    def entry(w, e):
        name, value, is_set = e
        w.string(name)
        w.nullable_string(value)
        w.boolean(False)                                   # read_only
        if version == 0:
            w.boolean(not is_set)                          # is_default
        else:
            w.int8(SOURCE_DYNAMIC_TOPIC if is_set else SOURCE_DEFAULT)
        w.boolean(False)                                   # is_sensitive
        if version >= 1:
            syn = []
            if synonyms:
                syn = [(name, value, SOURCE_DYNAMIC_TOPIC if is_set else SOURCE_DEFAULT)]
            w.array(syn, lambda w, s: (w.string(s[0]), w.nullable_string(s[1]), w.int8(s[2])))

    def result(w, res):
        rtype, rname, keys = res
        entries, err, msg = [], NONE, None
        if rtype == RESOURCE_TOPIC:
            t = topics.get(rname)
            if cluster.refuse_describe:
                err, msg = TOPIC_AUTHORIZATION_FAILED, "Authorization failed."
            elif t is None:
                err, msg = UNKNOWN_TOPIC_OR_PARTITION, \
                    "This server does not host this topic-partition."
            else:
                values = dict(TOPIC_CONFIG_DEFAULTS)
                values.update(t["configs"])
                for name in sorted(values):
                    if keys is None or name in keys:
                        entries.append((name, values[name], name in t["configs"]))
        elif rtype == RESOURCE_BROKER:
            pass                                           # no broker configs to tell
        else:
            err, msg = INVALID_REQUEST, f"Unsupported resource type {rtype}"
        w.int16(err)
        w.nullable_string(msg)
        w.int8(rtype)
        w.string(rname)
        w.array(entries, entry)
    w.array(resources, result)


HANDLERS = {
    API_METADATA: handle_metadata,
    API_CREATE_TOPICS: handle_create_topics,
    API_DESCRIBE_CONFIGS: handle_describe_configs,
}

API_NAMES = {API_METADATA: "Metadata", API_API_VERSIONS: "ApiVersions",
             API_CREATE_TOPICS: "CreateTopics", API_DESCRIBE_CONFIGS: "DescribeConfigs"}


# ---------------------------------------------------------------- server

def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class Connection(socketserver.BaseRequestHandler):
    def handle(self):
        cluster = self.server.cluster
        sock = self.request
        peer = "%s:%d" % self.client_address[:2]
        while True:
            head = recv_exact(sock, 4)
            if head is None:
                return
            size = struct.unpack(">i", head)[0]
            if size < 8 or size > 100 * 1024 * 1024:
                log(f"{peer}: bad request size {size}; closing")
                return
            data = recv_exact(sock, size)
            if data is None:
                return
            r = Reader(data)
            api, version, corr = r.int16(), r.int16(), r.int32()
            name = API_NAMES.get(api, f"api {api}")
            lo_hi = SUPPORTED.get(api)
            if lo_hi is None or (api != API_API_VERSIONS
                                 and not lo_hi[0] <= version <= lo_hi[1]):
                log(f"{peer}: {name} v{version} not supported here; closing the connection")
                return
            try:
                # an ApiVersions version past ours is answered without
                # reading further (its header and body may be newer)
                if not (api == API_API_VERSIONS and version > 3):
                    r.nullable_string()                    # client_id
                if api == API_API_VERSIONS and version == 3:
                    r.tagged_fields()                      # request header v2
                w = Writer()
                w.int32(corr)                              # response header v0
                if api == API_API_VERSIONS:
                    handle_api_versions(cluster, version, r, w)
                else:
                    HANDLERS[api](cluster, version, r, w)
            except (ValueError, UnicodeDecodeError, struct.error) as e:
                log(f"{peer}: {name} v{version}: malformed request ({e}); closing")
                return
            log(f"{peer}: {name} v{version} answered")
            out = w.bytes()
            try:
                sock.sendall(struct.pack(">i", len(out)) + out)
            except OSError:
                return


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def stdin_commands(cluster):
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd, _, arg = line.partition(" ")
        try:
            if cmd == "topic":
                name, partitions, configs = parse_topic_spec(arg.strip())
                cluster.add_topic(name, partitions, configs)
            else:
                raise ValueError(f"unknown command {cmd!r}")
            cluster.say(f"ok {line}")
        except ValueError as e:
            cluster.say(f"error: {e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    ap.add_argument("--topic", action="append", default=[], metavar="NAME:PARTITIONS[:k=v;k=v]",
                    help="a topic that exists from the start (repeatable)")
    ap.add_argument("--created-meanwhile", action="append", default=[],
                    metavar="NAME:PARTITIONS[:k=v;k=v]",
                    help="a topic hidden from Metadata until a CreateTopics names it")
    ap.add_argument("--metadata-error", action="append", default=[], metavar="NAME:CODE",
                    help="Metadata lists NAME with error CODE and no partitions")
    ap.add_argument("--refuse-create", nargs="?", const="topic", choices=["topic", "cluster"],
                    help="answer CreateTopics with TOPIC_AUTHORIZATION_FAILED "
                         "(or CLUSTER_AUTHORIZATION_FAILED)")
    ap.add_argument("--refuse-describe", action="store_true",
                    help="answer DescribeConfigs with TOPIC_AUTHORIZATION_FAILED")
    ap.add_argument("--state", metavar="FILE", help="JSON of the topics and CreateTopics requests")
    args = ap.parse_args()

    cluster = Cluster(args.host, args.state, args.refuse_create, args.refuse_describe)
    for spec in args.topic:
        try:
            name, partitions, configs = parse_topic_spec(spec)
            cluster.add_topic(name, partitions, configs)
        except ValueError as e:
            ap.error(f"--topic {spec}: {e}")
    for spec in args.created_meanwhile:
        try:
            name, partitions, configs = parse_topic_spec(spec)
            cluster.add_topic(name, partitions, configs, origin="meanwhile")
        except ValueError as e:
            ap.error(f"--created-meanwhile {spec}: {e}")
    for spec in args.metadata_error:
        name, _, code = spec.rpartition(":")
        if not name or not code.lstrip("-").isdigit():
            ap.error(f"--metadata-error {spec}: expected NAME:CODE")
        cluster.metadata_errors[name] = int(code)
    with cluster.lock:
        cluster.save_locked()

    server = Server((args.host, args.port), Connection)
    server.cluster = cluster
    cluster.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def read_stdin():
        stdin_commands(cluster)
        done.set()
    threading.Thread(target=read_stdin, daemon=True).start()
    cluster.say(f"bootstrap={args.host}:{cluster.port}")
    while not done.wait(1):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
