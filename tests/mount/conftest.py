"""Fixtures for the tests on real mounts (see tests/README.md).

Every test gets a watchdog: past CTLFS_TEST_TIMEOUT seconds it kills the
daemons the test started (which aborts any FUSE request the test is blocked
in), lazily unmounts, and fails the test. Every mount is unmounted in teardown,
and a daemon that does not exit with status 0 after `fusermount3 -u` fails the
test (under AddressSanitizer a leak makes the exit status non-zero).

Binaries come from $CTLFS_BUILD_DIR (default <repo>/build).
"""

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("CTLFS_BUILD_DIR", REPO / "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
CTLFS_BIN = BUILD / "tools" / "ctlfs"
BROKER_BIN = BUILD / "tools" / "ctlfs-broker"
AGENT_BIN = BUILD / "tools" / "ctlfs-agent"

# Sanitizer builds are several times slower: scale the bounds, never the logic.
SLOW = float(os.environ.get("CTLFS_TEST_SLOWDOWN", "1"))
TEST_TIMEOUT = float(os.environ.get("CTLFS_TEST_TIMEOUT", "120")) * SLOW
START_TIMEOUT = 20.0 * SLOW      # daemon mounted / broker printed bootstrap / agent ready
EXIT_TIMEOUT = 20.0 * SLOW       # daemon exit after unmount (LSan runs at exit)
WAIT_TIMEOUT = 15.0 * SLOW       # default for wait_until

# A leaf's common keys (a Rama topology has these only); a runtime backend's
# resource adds the drift keys (core/engine/drift.c) after state_source.
LEAF_STATUS_KEYS = ["desired", "observed", "observed_at", "pending",
                    "last_command", "last_error", "heartbeat_age_ms", "reported"]
DRIFT_STATUS_KEYS = ["drift", "drift_since", "reconcile", "reconcile_state",
                     "reconcile_attempts"]
RESOURCE_STATUS_KEYS = LEAF_STATUS_KEYS + DRIFT_STATUS_KEYS
# a resource of a runtime with a runtime-wide state (ctlfs and mia dialects)
FOLLOWER_STATUS_KEYS = LEAF_STATUS_KEYS + ["state_source"] + DRIFT_STATUS_KEYS
# a mia runtime's resources add the ids their commands use
MIA_RESOURCE_STATUS_KEYS = FOLLOWER_STATUS_KEYS + ["mia_pipeline_id", "mia_artifact_id"]
RUNTIME_STATUS_KEYS = ["backend", "dialect", "desired", "observed", "pending",
                       "last_command", "last_error", "command_topic", "feedback_topic",
                       "command_topic_check", "feedback_topic_check",
                       "feedback_offset", "command_offset", "resources",
                       "running", "paused", "pausing", "resuming", "starting",
                       "stopping", "stopped", "unknown", "stale",
                       "sleeping", "shutting-down",
                       "last_heartbeat", "access", "activity", "silent_ms"]
RUNTIME_FILES = ["log", "observed", "state", "status"]   # sorted
RESOURCE_FILES = ["log", "metrics", "observed", "state", "status"]   # sorted
ROOT_STATUS_KEYS = ["version", "brokers", "broker_link", "db", "write_mode",
                    "pending_commands", "uptime_s", "tree_topic", "tree_topic_check",
                    "topics_not_as_configured", "access"]
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# ---------------------------------------------------------------- helpers

def wait_until(fn, timeout=WAIT_TIMEOUT, interval=0.02, what=None):
    """Polls FN until it returns a truthy value, which is returned. Only for
    conditions that have no event to wait on. Fails after TIMEOUT seconds,
    naming WHAT (or FN) and the last value or exception seen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except OSError as e:          # the object may not exist yet
            last = e
        if time.monotonic() >= deadline:
            name = what or getattr(fn, "__name__", repr(fn))
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {name}; "
                                 f"last value: {last!r}")
        time.sleep(interval)


def read(path):
    """The whole content of PATH as text."""
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def read_word(path):
    return read(path).rstrip("\n")


def parse_status(text):
    """`key: value` lines -> list of (key, value), order kept."""
    assert text.endswith("\n"), f"status does not end with a newline: {text!r}"
    items = []
    for line in text.splitlines():
        assert ": " in line or line.endswith(":"), f"not a `key: value` line: {line!r}"
        key, _, value = line.partition(":")
        items.append((key, value.strip()))
    return items


def status_dict(path):
    return dict(parse_status(read(path)))


def issued_id(res, verb):
    """The id of the command a write of VERB to RES's state just issued, as
    `status` names it. Not the log's last command line: a report settling an
    older command (superseded=yes) may already follow the new one there."""
    last_id, last_verb = status_dict(res / "status")["last_command"].split()[:2]
    assert last_verb == verb, f"last_command is {last_id} {last_verb}, not a {verb}"
    return last_id


def write_state(path, data):
    """One write() of DATA (bytes or str) at offset 0, like `echo` does, without
    O_TRUNC. Returns the number of bytes written; raises OSError."""
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, os.O_WRONLY)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def sh(cmd, timeout=None, check=True, **kw):
    """Runs CMD with /bin/sh -c, as a user would type it. Returns the
    CompletedProcess (text mode)."""
    p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True,
                       timeout=timeout or (30 * SLOW), **kw)
    if check:
        assert p.returncode == 0, (f"`{cmd}` exited {p.returncode}\n"
                                   f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def kcat_consume(bootstrap, topic, partition=None, timeout=None):
    """Every message of TOPIC (PARTITION, or all of them) from the beginning,
    as a list of dicts from `kcat -J` (keys: partition, offset, key, payload,
    headers, ...), with 'value' = the payload decoded as JSON when it is JSON.
    Messages of several partitions come in the order they were produced (by
    timestamp, then partition and offset)."""
    part = [] if partition is None else ["-p", str(partition)]
    cmd = ["kcat", "-C", "-b", bootstrap, "-t", topic, *part,
           "-o", "beginning", "-e", "-J", "-q"]
    p = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=timeout or (30 * SLOW))
    if p.returncode != 0:
        if "Unknown topic" in p.stderr or "UNKNOWN_TOPIC" in p.stderr:
            return []
        raise AssertionError(f"kcat failed ({p.returncode}): {p.stderr}")
    out = []
    for line in p.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        try:
            msg["value"] = json.loads(msg.get("payload") or "null")
        except ValueError:
            msg["value"] = None
        out.append(msg)
    out.sort(key=lambda m: (m.get("ts", 0), m["partition"], m["offset"]))
    return out


def handled(offsets):
    """How many messages a runtime status's `feedback_offset` or
    `command_offset` ("0:16 2:4": the last offset handled per partition, "-"
    none) says were read, from offset 0 of each partition."""
    if offsets == "-":
        return 0
    return sum(int(last) + 1 for _, last in (p.split(":") for p in offsets.split()))


PARTITIONS = 4   # what the mock cluster gives an auto-created topic


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as the
    Java clients' and kafkajs's default partitioners hash keys."""
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    n4 = len(data) // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[4 * n4:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def java_partition(key: str, n=PARTITIONS) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % n


def kcat_produce(bootstrap, topic, key, value, timeout=None, headers=(), partition=0):
    """Produces one message (VALUE str or JSON-able) to PARTITION, with the
    ctlfs-version header and HEADERS ([(name, value)])."""
    if not isinstance(value, str):
        value = json.dumps(value)
    extra = [a for name, v in headers for a in ("-H", f"{name}={v}")]
    p = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", str(partition),
                        "-k", key, "-H", "ctlfs-version=1", *extra],
                       input=value, capture_output=True, text=True,
                       timeout=timeout or (30 * SLOW))
    assert p.returncode == 0, f"kcat -P failed: {p.stderr}"


def mounted(path):
    """TRUE when PATH is a mount point, from /proc/self/mountinfo (never touches
    the filesystem, so it cannot hang on a stuck daemon)."""
    return _mountinfo_entry(path) is not None


def _mountinfo_entry(path):
    path = os.path.realpath(str(path))
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                mp = fields[4].encode().decode("unicode_escape")
                if mp == path:
                    return fields
    except OSError:
        pass
    return None


def _abort_fuse_connection(path):
    """Best effort: aborts the FUSE connection of the mount at PATH, which
    makes every pending request fail with ENOTCONN. Through fusectl (mounted
    here when it is not), else `umount -f` (FUSE aborts the connection when a
    forced unmount begins)."""
    fields = _mountinfo_entry(path)
    if not fields:
        return
    minor = fields[2].split(":")[1]
    abort = Path(f"/sys/fs/fuse/connections/{minor}/abort")
    if not abort.exists():
        subprocess.run(["mount", "-t", "fusectl", "fusectl", "/sys/fs/fuse/connections"],
                       capture_output=True, timeout=10)
    try:
        abort.write_text("1")
    except OSError:
        subprocess.run(["umount", "-f", str(path)], capture_output=True, timeout=10)


def kill_and_reap(proc, mnt, timeout=10):
    """SIGKILL PROC, a ctlfs serving MNT, and wait for it. A thread of the
    daemon blocked in a request to its own mount (the notify helper's kick,
    fs/notify.c) waits for an answer nobody will give once the main thread is
    gone, and keeps the dead process, and its mount, from ending: the
    connection is then aborted, as an operator would (`umount -f`)."""
    proc.kill()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _abort_fuse_connection(mnt)
        return proc.wait(timeout=timeout)


def _fusermount(args, path, timeout=10):
    try:
        return subprocess.run(["fusermount3", *args, str(path)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _reader_thread(stream, q, sink=None):
    """Pushes each line of STREAM into Q (None at EOF); copies it to SINK."""
    def run():
        try:
            for line in stream:
                if sink is not None:
                    sink.append(line)
                q.put(line)
        except (ValueError, OSError):
            pass
        q.put(None)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _next_line(q, timeout, what, proc=None, stderr_path=None):
    try:
        line = q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"{what}: no output within {timeout:.0f}s"
                             + _stderr_tail(stderr_path))
    if line is None:
        rc = proc.poll() if proc else None
        raise AssertionError(f"{what}: output ended (exit status {rc})"
                             + _stderr_tail(stderr_path))
    return line.rstrip("\n")


def _stderr_tail(path, n=4000):
    if not path:
        return ""
    try:
        data = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    # ASan's shadow-byte legend says nothing about the bug
    data = re.sub(r"Shadow bytes around the buggy address:.*?(?=^==\d+==|\Z)", "",
                  data, flags=re.S | re.M)
    return "\n--- stderr ---\n" + data[-n:]


def _stop(proc, sig=signal.SIGTERM, timeout=10):
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


# Processes of the running test, so that the watchdog can end them.
_live = {"daemons": [], "procs": []}


# ---------------------------------------------------------------- watchdog

class TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _timeout_guard(request):
    """Fails the test after TEST_TIMEOUT seconds. A thread (not only an alarm:
    a signal handler cannot run while the main thread is blocked in a FUSE
    request) first kills the test's daemons, which aborts the request, then
    interrupts the main thread with SIGALRM."""
    marker = request.node.get_closest_marker("timeout")
    limit = float(marker.args[0]) * SLOW if marker else TEST_TIMEOUT
    fired = threading.Event()
    done = threading.Event()
    main = threading.main_thread().ident

    def on_alarm(signum, frame):
        raise TestTimeout(f"test exceeded {limit:.0f}s (hung FUSE operation?)")

    def watchdog():
        if done.wait(limit):
            return
        fired.set()
        signal.pthread_kill(main, signal.SIGALRM)
        # give the handler a moment to run in case the main thread is not stuck
        if done.wait(2):
            return
        for d in list(_live["daemons"]):
            _abort_fuse_connection(d.mnt)
            if d.proc.poll() is None:
                d.proc.kill()
            _fusermount(["-uz"], d.mnt)
        for p in list(_live["procs"]):
            if p.poll() is None:
                p.kill()

    old = signal.signal(signal.SIGALRM, on_alarm)
    t = threading.Thread(target=watchdog, daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join(5)
        signal.signal(signal.SIGALRM, old)
    # the exception from the handler can be swallowed (raised inside a
    # finaliser): the verdict does not depend on it
    if fired.is_set():
        pytest.fail(f"test exceeded {limit:.0f}s; its daemons were killed", pytrace=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test time limit")


# ---------------------------------------------------------------- programs

def _require(path):
    if not path.exists():
        pytest.fail(f"{path} is not built (set CTLFS_BUILD_DIR or run ninja -C build)")


class Broker:
    """A ctlfs-broker process. .bootstrap is "127.0.0.1:PORT[,...]"."""

    def __init__(self, tmp, n_brokers=1):
        _require(BROKER_BIN)
        self.stderr_path = tmp / f"broker-{id(self)}.stderr"
        self._err = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([str(BROKER_BIN), "--brokers", str(n_brokers)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, bufsize=1)
        _live["procs"].append(self.proc)
        self._q = queue.Queue()
        _reader_thread(self.proc.stdout, self._q)
        line = _next_line(self._q, START_TIMEOUT, "ctlfs-broker", self.proc,
                          self.stderr_path)
        assert line.startswith("bootstrap="), f"first line of ctlfs-broker: {line!r}"
        self.bootstrap = line[len("bootstrap="):]
        assert re.match(r"^127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+)*$", self.bootstrap), line

    def fault(self, line, expect_ok=True):
        """Sends a fault command ("down 1", "up 1", "rtt 1 200") and waits for
        its answer, which is returned."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = _next_line(self._q, 10 * SLOW, f"ctlfs-broker answer to {line!r}",
                            self.proc, self.stderr_path)
        if expect_ok:
            assert answer == f"ok {line}", f"ctlfs-broker answered {answer!r} to {line!r}"
        return answer

    def close(self):
        """Ends the broker by closing its stdin (EOF); returns its exit status."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                _stop(self.proc)
        self._err.close()
        return self.proc.returncode


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    yield b
    rc = b.close()
    assert rc == 0, f"ctlfs-broker exited {rc} after stdin EOF" + _stderr_tail(b.stderr_path)


@pytest.fixture
def broker_factory(tmp_path):
    made = []

    def make(n_brokers=1):
        b = Broker(tmp_path, n_brokers)
        made.append(b)
        return b
    yield make
    bad = []
    for b in made:
        rc = b.close()
        if rc != 0:
            bad.append(f"ctlfs-broker exited {rc}" + _stderr_tail(b.stderr_path))
    assert not bad, "\n".join(bad)


class Daemon:
    """A ctlfs process mounted in the foreground (-f)."""

    def __init__(self, mnt, db, args, stderr_path, env=None):
        self.env = env            # the daemon's environment (None: ours)
        self.mnt = Path(mnt)
        self.db = Path(db)
        self.args = list(args)
        self.stderr_path = stderr_path
        self.bootstrap = None
        self.stdout_lines = []
        self.proc = None
        self.checked = False      # exit status already asserted

    def start(self):
        _require(CTLFS_BIN)
        self.mnt.mkdir(parents=True, exist_ok=True)
        cmd = [str(CTLFS_BIN), "-f", f"--db={self.db}", *self.args, str(self.mnt)]
        self._err = open(self.stderr_path, "a")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, bufsize=1, env=self.env)
        _live["daemons"].append(self)
        self._q = queue.Queue()
        _reader_thread(self.proc.stdout, self._q, self.stdout_lines)
        # brokers given on the command line, in -o or in a config file: external
        embedded = not any("brokers" in a or a.startswith("--config") for a in self.args)
        deadline = time.monotonic() + START_TIMEOUT
        if embedded:
            line = _next_line(self._q, START_TIMEOUT, "ctlfs (embedded broker)",
                              self.proc, self.stderr_path)
            while not line.startswith("bootstrap="):
                line = _next_line(self._q, max(0.1, deadline - time.monotonic()),
                                  "ctlfs bootstrap line", self.proc, self.stderr_path)
            self.bootstrap = line[len("bootstrap="):]
        while not mounted(self.mnt):
            if self.proc.poll() is not None:
                raise AssertionError(f"ctlfs exited {self.proc.returncode} before mounting "
                                     f"({' '.join(cmd)})" + _stderr_tail(self.stderr_path))
            if time.monotonic() > deadline:
                raise AssertionError(f"ctlfs did not mount within {START_TIMEOUT:.0f}s"
                                     + _stderr_tail(self.stderr_path))
            time.sleep(0.02)
        # the contract's readiness test; goes through the daemon (INIT done)
        assert os.path.ismount(self.mnt)
        return self

    def unmount(self):
        """`fusermount3 -u MNT`; returns the daemon's exit status. Retries while
        the mount is busy (a process of the test still in it)."""
        if self.proc.poll() is None and mounted(self.mnt):
            deadline = time.monotonic() + 10 * SLOW
            while mounted(self.mnt):
                p = _fusermount(["-u"], self.mnt)
                if p is not None and p.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    _fusermount(["-uz"], self.mnt)
                    break
                time.sleep(0.1)
        try:
            self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            kill_and_reap(self.proc, self.mnt)
            if mounted(self.mnt):
                _fusermount(["-uz"], self.mnt)
            raise AssertionError(f"ctlfs did not exit within {EXIT_TIMEOUT:.0f}s after "
                                 "fusermount3 -u" + _stderr_tail(self.stderr_path))
        finally:
            self._close()
        return self.proc.returncode

    def stop(self):
        """Unmounts and asserts exit status 0 (no leak under ASan)."""
        rc = self.unmount()
        self.checked = True
        assert rc == 0, (f"ctlfs exited {rc} after fusermount3 -u"
                         + _stderr_tail(self.stderr_path))
        assert not mounted(self.mnt)

    def terminate(self):
        """SIGTERM; returns the exit status."""
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            kill_and_reap(self.proc, self.mnt)
        finally:
            if mounted(self.mnt):
                _fusermount(["-uz"], self.mnt)
            self._close()
        return self.proc.returncode

    def _close(self):
        if self in _live["daemons"]:
            _live["daemons"].remove(self)
        try:
            self._err.close()
        except Exception:
            pass

    def stderr(self):
        try:
            return Path(self.stderr_path).read_text(errors="replace")
        except OSError:
            return ""

    def path(self, *parts):
        return self.mnt.joinpath(*parts)


@pytest.fixture
def ctlfs(tmp_path):
    """Factory: ctlfs(*args, db=None, mnt=None, env=None) mounts the daemon in
    the foreground with a fresh db and mount point (or the given ones, to
    remount) and, when ENV is given, that environment; returns a Daemon once
    the mount is usable. Teardown unmounts
    every daemon still mounted and asserts each exited 0."""
    made = []
    counter = [0]

    def make(*args, db=None, mnt=None, env=None):
        counter[0] += 1
        n = counter[0]
        d = Daemon(mnt or tmp_path / f"mnt{n}", db or tmp_path / f"ctlfs{n}.db", args,
                   tmp_path / f"ctlfs{n}.stderr", env)
        made.append(d)
        try:
            return d.start()
        except BaseException:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait(timeout=10)
            if mounted(d.mnt):
                _fusermount(["-uz"], d.mnt)
            d.checked = True
            d._close()
            raise
    yield make

    failures = []
    for d in made:
        if d.checked or d.proc is None:
            continue
        if d.proc.poll() is not None and not mounted(d.mnt):
            rc = d.proc.returncode      # exited by itself (or the test ended it)
            d._close()
        else:
            try:
                rc = d.unmount()
            except AssertionError as e:
                failures.append(str(e))
                continue
        if rc != 0:
            failures.append(f"ctlfs ({d.mnt}) exited {rc}" + _stderr_tail(d.stderr_path))
    for d in made:           # last resort, whatever happened above
        if mounted(d.mnt):
            _fusermount(["-uz"], d.mnt)
    assert not failures, "\n".join(failures)


class Agent:
    def __init__(self, tmp, bootstrap, runtime, resources, heartbeat_ms, apply, extra):
        _require(AGENT_BIN)
        self.stderr_path = tmp / f"agent-{runtime}-{id(self)}.stderr"
        self._err = open(self.stderr_path, "w")
        cmd = [str(AGENT_BIN), f"--brokers={bootstrap}", f"--runtime={runtime}"]
        cmd += [f"--resource={r}" for r in resources]
        if heartbeat_ms is not None:
            cmd.append(f"--heartbeat-ms={heartbeat_ms}")
        if apply is not None:
            cmd.append(f"--apply={apply}")
        cmd += list(extra)
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, bufsize=1)
        _live["procs"].append(self.proc)
        self.lines = []
        self.stopped = False
        self._q = queue.Queue()
        _reader_thread(self.proc.stdout, self._q, self.lines)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            line = _next_line(self._q, max(0.1, deadline - time.monotonic()),
                              "ctlfs-agent ready", self.proc, self.stderr_path)
            if line.strip() == "ready":
                break

    def stop(self):
        """SIGTERM; returns the exit status (0, or -SIGTERM if unhandled)."""
        rc = _stop(self.proc)
        self._err.close()
        self.stopped = True
        return rc


@pytest.fixture
def agent(tmp_path):
    """Factory: agent(bootstrap, runtime="rt1", resources=("svc",),
    heartbeat_ms=None, apply=None, extra=()) -> Agent, once it printed `ready`."""
    made = []

    def make(bootstrap, runtime="rt1", resources=("svc",), heartbeat_ms=None,
             apply=None, extra=()):
        a = Agent(tmp_path, bootstrap, runtime, resources, heartbeat_ms, apply, extra)
        made.append(a)
        return a
    yield make
    bad = []
    for a in made:
        rc = a.proc.returncode if a.stopped else a.stop()
        # >0: the agent reported an error (e.g. a sanitizer); killed by our
        # SIGTERM without a handler is not an agent failure.
        if rc is not None and rc > 0:
            bad.append(f"ctlfs-agent exited {rc}" + _stderr_tail(a.stderr_path))
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------- scenario helpers

def whoami():
    import pwd
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return uid, name


def hostname():
    return socket.gethostname()


def command_lines(log_text, verb=None):
    """The `command` event lines of a log."""
    out = []
    for line in log_text.splitlines():
        parts = line.split(" ")
        if len(parts) >= 3 and parts[2] == "command" and (verb is None or f" verb={verb} " in line + " "):
            out.append(line)
    return out


_KV = re.compile(r'(?:^| )([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def kv(line):
    """key=value fields of a log line -> dict (first occurrence wins); a
    quoted value ("...", C escapes) is given unquoted."""
    d = {}
    rest = " ".join(line.split(" ")[3:])
    for k, v in _KV.findall(rest):
        if v.startswith('"'):
            v = re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)),
                       v[1:-1])
        d.setdefault(k, v)
    return d


def declare(d, runtime="rt1", resource="svc"):
    os.mkdir(d.path("runtimes", runtime))
    if resource:
        os.mkdir(d.path("runtimes", runtime, resource))
    return d.path("runtimes", runtime, resource) if resource else d.path("runtimes", runtime)


def start_expecting_failure(args, mnt, foreground=True):
    """Runs ctlfs with ARGS on MNT expecting it to refuse to start: fails the
    test if it mounted or kept running. Returns the CompletedProcess."""
    mnt.mkdir(exist_ok=True)
    cmd = [str(CTLFS_BIN)] + (["-f"] if foreground else []) + args + [str(mnt)]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        _fusermount(["-u"], mnt)
        pytest.fail(f"{' '.join(cmd)} did not exit (mounted anyway?)")
    was_mounted = mounted(mnt)
    if was_mounted:
        _fusermount(["-u"], mnt)
    assert not was_mounted, f"{' '.join(cmd)} mounted"
    return p
