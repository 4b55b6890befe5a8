"""Watching (issue 4): the scripts operators write against the tree.
`inotifywait -m` on logs, `observed` and the root `status`; `tail -f` and
`tail -n 20` on a log; poll() on `status` and `observed`. Every wait is on an
event (an inotifywait line, a tail line, poll()) with a bound, or on a
condition with wait_until."""

import errno
import os
import queue
import select
import subprocess
import time

import pytest

from conftest import (SLOW, _live, _reader_thread, command_lines, declare, kv, read,
                      read_word, sh, status_dict, wait_until, write_state)

EVENT_TIMEOUT = 15.0 * SLOW     # bound on any single wake-up we wait for


# ---------------------------------------------------------------- helpers

class InotifyWatch:
    """`inotifywait -m -e modify PATH...`, as a script would run it. Each event
    is one stdout line "EVENTS<TAB>PATH"; next() returns (path, events)."""

    def __init__(self, *paths):
        self.paths = [str(p) for p in paths]
        self.proc = subprocess.Popen(
            ["inotifywait", "-m", "-e", "modify", "--format", "%e\t%w", *self.paths],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        _live["procs"].append(self.proc)
        # inotifywait says on stderr when its watches are in place
        err = []
        while True:
            line = self.proc.stderr.readline()
            if not line:
                self.close()
                raise AssertionError(f"inotifywait {self.paths} did not start: {''.join(err)}")
            err.append(line)
            if "Watches established" in line:
                break
        self._q = queue.Queue()
        self.seen = []
        _reader_thread(self.proc.stdout, self._q, self.seen)

    def next(self, timeout=EVENT_TIMEOUT):
        """The next event as (path, events), or None when none came in TIMEOUT."""
        try:
            line = self._q.get(timeout=timeout)
        except queue.Empty:
            return None
        assert line is not None, f"inotifywait exited ({self.proc.poll()})"
        events, _, path = line.rstrip("\n").partition("\t")
        return path, events.split(",")

    def wait_for(self, path, cond=lambda: True, timeout=EVENT_TIMEOUT, what="an event"):
        """Waits for a MODIFY on PATH after which COND() holds. Fails naming
        WHAT after TIMEOUT seconds without one."""
        path = str(path)
        deadline = time.monotonic() + timeout
        got = []
        while True:
            left = deadline - time.monotonic()
            ev = self.next(max(0.0, left)) if left > 0 else None
            if ev is None:
                raise AssertionError(f"no IN_MODIFY on {path} with {what} within "
                                     f"{timeout:.0f}s; events seen meanwhile: {got}")
            got.append(ev)
            if ev[0] == path and "MODIFY" in ev[1] and cond():
                return got

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for s in (self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def inotify():
    """Factory: inotify(*paths) -> InotifyWatch with its watches in place.
    Listed after ctlfs in a test's arguments, so it ends before the unmount."""
    made = []

    def make(*paths):
        w = InotifyWatch(*paths)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()


class Tail:
    """`tail ARGS... FILE` running in the background; line() is its next line."""

    def __init__(self, args, path):
        self.proc = subprocess.Popen(["tail", *args, str(path)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        _live["procs"].append(self.proc)
        self._q = queue.Queue()
        _reader_thread(self.proc.stdout, self._q)

    def line(self, timeout=EVENT_TIMEOUT, what="a line"):
        try:
            line = self._q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"tail printed no {what} within {timeout:.0f}s")
        assert line is not None, f"tail exited {self.proc.poll()}: {self.proc.stderr.read()}"
        return line

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()


def _steady(res):
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")


# ---------------------------------------------------------------- inotify on logs

def test_command_wakes_inotify_watchers_of_resource_runtime_and_root_logs(
        broker, ctlfs, agent, inotify):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    agent(broker.bootstrap, heartbeat_ms=0)     # no heartbeats: nothing else changes
    _steady(res)
    logs = [res / "log", d.path("runtimes", "rt1", "log"), d.path("log")]
    before = {p: read(p) for p in logs}
    w = inotify(*logs)

    write_state(res / "state", "pause\n")
    cmd_id = status_dict(res / "status")["last_command"].split()[0]

    pending = {str(p) for p in logs}
    seen = []
    deadline = time.monotonic() + EVENT_TIMEOUT
    while pending:
        ev = w.next(max(0.0, deadline - time.monotonic()))
        assert ev is not None, (f"no IN_MODIFY on {sorted(pending)} within "
                                f"{EVENT_TIMEOUT:.0f}s of a pause; events: {seen}")
        seen.append(ev)
        if "MODIFY" in ev[1]:
            pending.discard(ev[0])
    # ...and what woke them is the command, appended to each of the three
    for p in logs:
        text = read(p)
        assert text.startswith(before[p]), f"{p} is not append-only"
        new = command_lines(text[len(before[p]):], "pause")
        assert any(kv(ln).get("id") == cmd_id for ln in new), \
            f"{p}: no command line for {cmd_id} among the new lines:\n{text[len(before[p]):]}"


# ---------------------------------------------------------------- tail

def test_tail_f_prints_new_lines_of_a_resource_log(broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    agent(broker.bootstrap, heartbeat_ms=0)
    _steady(res)
    write_state(res / "state", "pause\n")      # some history for tail to skip
    wait_until(lambda: read(res / "observed") == "paused\n", what="observed == paused")
    write_state(res / "state", "resume\n")
    wait_until(lambda: status_dict(res / "status")["last_command"].endswith(" applied"),
               what="the resume applied")
    before = read(res / "log")
    old = before.splitlines()
    assert len(old) >= 4, before

    # -n 1: the one old line tail prints tells us it reached the end of the file
    t = Tail(["-n", "1", "-f"], res / "log")
    try:
        first = t.line(what="old line (the last one)")
        assert first == old[-1] + "\n", f"tail -n 1 printed {first!r}, not the last line"

        write_state(res / "state", "pause\n")
        wait_until(lambda: read(res / "observed") == "paused\n", what="observed == paused")
        write_state(res / "state", "resume\n")
        wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")
        wait_until(lambda: status_dict(res / "status")["last_command"].endswith(" applied"),
                   what="the second resume applied")
        after = read(res / "log")
        assert after.startswith(before), "the log is not append-only"
        new = after[len(before):].splitlines(keepends=True)
        # the two commands: sent, then applied, each; two observed changes
        assert len(command_lines("".join(new), "pause")) >= 1, new
        assert len(command_lines("".join(new), "resume")) >= 1, new
        got = [t.line(what=f"new line {i + 1} of {len(new)}") for i in range(len(new))]
    finally:
        t.close()
    assert got == new, ("tail -f printed something other than the lines appended "
                        f"while it ran\n tail: {got}\n  log: {new}")
    # nothing that was already there was printed again
    assert not set(got) & {ln + "\n" for ln in old}


def test_tail_n_20_on_a_long_history(broker, ctlfs):
    """20,000 rejected writes give 20,000 distinct lines in one resource's log;
    `tail -n 20` must print exactly its last 20 lines, and the size the file
    claims must be the number of bytes it reads."""
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    n = 20000
    fd = os.open(res / "state", os.O_WRONLY)
    try:
        for i in range(n):
            try:
                os.write(fd, b"bogus%d\n" % i)
                raise AssertionError(f"write of bogus{i} succeeded")
            except OSError as e:
                assert e.errno == errno.EINVAL, e
    finally:
        os.close(fd)

    log = res / "log"
    full = sh(f"cat '{log}'").stdout
    lines = full.splitlines(keepends=True)
    rejected = [ln for ln in lines if ln.split(" ")[2] == "rejected"]
    assert len(rejected) == n, f"{len(rejected)} rejected lines for {n} bad writes"
    assert "bogus%d" % (n - 1) in lines[-1], lines[-1]
    last20 = sh(f"tail -n 20 '{log}'").stdout
    assert last20 == "".join(lines[-20:]), \
        f"tail -n 20 differs from the last 20 lines of cat:\n{last20}\n---\n{''.join(lines[-20:])}"
    wc = int(sh(f"wc -c < '{log}'").stdout)
    size = os.stat(log).st_size
    assert wc == size == len(full.encode("utf-8", "surrogateescape")), \
        f"wc -c {wc}, st_size {size}, cat {len(full.encode('utf-8', 'surrogateescape'))} bytes"
    assert int(sh(f"wc -l < '{log}'").stdout) == len(lines)
    # the runtime's and the root's log have them too, and their size is right
    for p in (d.path("runtimes", "rt1", "log"), d.path("log")):
        # (topic checks that timed out meanwhile may have logged after it:
        # two lines per topic in the root log, one in the runtime's)
        tail = sh(f"tail -n 20 '{p}'").stdout.splitlines(keepends=True)
        assert lines[-1] in tail, f"{p}: last lines {tail!r}, the resource log's {lines[-1]!r}"
        after = tail[tail.index(lines[-1]) + 1:]
        assert all(" topic-checked " in ln for ln in after), (p, after)
        assert int(sh(f"wc -c < '{p}'").stdout) == os.stat(p).st_size, p


# ---------------------------------------------------------------- stale, broker link

def test_stale_and_recovered_wake_inotify_watcher_of_observed(broker, ctlfs, agent, inotify):
    stale_ms = int(1500 * SLOW)
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--stale-after-ms={stale_ms}")
    res = declare(d)
    rt_status = d.path("runtimes", "rt1", "status")
    a = agent(broker.bootstrap, heartbeat_ms=200)
    _steady(res)
    w = inotify(res / "observed")

    a.stop()
    w.wait_for(res / "observed", lambda: read_word(res / "observed") == "stale",
               timeout=stale_ms / 1000 + EVENT_TIMEOUT, what="observed == stale")
    st = status_dict(res / "status")
    assert st["observed"] == "stale", st                   # "as observed reads" (manual)
    assert st["reported"] == "running", st                 # the last known state stays
    # and the log line that says it went stale names it too
    stale = [ln for ln in read(res / "log").splitlines() if ln.split(" ")[2] == "stale"]
    assert stale and kv(stale[-1]).get("last") == "running", stale
    rt = status_dict(rt_status)
    assert (rt["stale"], rt["running"]) == ("1", "0"), rt

    agent(broker.bootstrap, heartbeat_ms=200)
    w.wait_for(res / "observed", lambda: read_word(res / "observed") == "running",
               what="observed == running again")
    rt = status_dict(rt_status)
    assert (rt["stale"], rt["running"]) == ("0", "1"), rt
    assert status_dict(res / "status")["observed"] == "running"


def test_broker_link_down_and_up_wake_watcher_of_root_status(broker, ctlfs, inotify):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    status = d.path("status")
    wait_until(lambda: status_dict(status)["broker_link"] == "up", what="broker_link: up")
    w = inotify(status)

    broker.fault("down 1")
    w.wait_for(status, lambda: status_dict(status)["broker_link"] == "down",
               what="broker_link: down")
    broker.fault("up 1")
    w.wait_for(status, lambda: status_dict(status)["broker_link"] == "up",
               what="broker_link: up again")


# ---------------------------------------------------------------- poll()

def test_poll_on_status_wakes_on_command_and_heartbeats_do_not_wake_observed(
        broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    hb_ms = 200
    agent(broker.bootstrap, heartbeat_ms=hb_ms)
    _steady(res)
    rt_status = d.path("runtimes", "rt1", "status")

    # a command wakes a poll() on the resource's status
    fd = os.open(res / "status", os.O_RDONLY)
    try:
        assert b"desired: running\n" in os.read(fd, 4096)     # sysfs: read, then poll
        p = select.poll()
        p.register(fd, select.POLLPRI | select.POLLERR)
        write_state(res / "state", "pause\n")
        events = p.poll(int(EVENT_TIMEOUT * 1000))
        assert events, "poll() on status not woken by a pause command"
        assert events[0][1] & (select.POLLPRI | select.POLLERR), events
        assert b"desired: paused\n" in os.pread(fd, 4096, 0)
    finally:
        os.close(fd)
    wait_until(lambda: read(res / "observed") == "paused\n", what="observed == paused")
    # settled: the command applied; from now on only heartbeats arrive
    wait_until(lambda: status_dict(res / "status")["last_command"].endswith(" applied"),
               what="the pause applied")

    fd = os.open(res / "observed", os.O_RDONLY)
    try:
        assert os.read(fd, 4096) == b"paused\n"
        hb_before = status_dict(rt_status)["last_heartbeat"]
        p = select.poll()
        p.register(fd, select.POLLPRI | select.POLLERR)
        # the one bounded wait without an event: no event IS the assertion
        events = p.poll(3 * hb_ms)
        hb_after = status_dict(rt_status)["last_heartbeat"]
        assert not events, (f"poll() on observed woken by heartbeats that changed "
                            f"nothing: {events}; observed={os.pread(fd, 64, 0)!r}")
        assert os.pread(fd, 4096, 0) == b"paused\n"
    finally:
        os.close(fd)
    # heartbeats did arrive meanwhile, so the quiet poll() means something
    assert hb_after != hb_before, \
        f"no heartbeat in {3 * hb_ms} ms (last_heartbeat stayed {hb_before})"
