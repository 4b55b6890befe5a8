"""Nothing lost, nothing twice (issue 4): broker outages in both write modes,
daemon restarts (clean and kill -9) with commands in the outbox, and a restart
with feedback in flight. The agent's stderr tells what the runtime applied;
the SQLite store (read-only) tells what the daemon accepted."""

import errno
import os
import re
import sqlite3
import threading
import time
from pathlib import Path

from conftest import (kill_and_reap, SLOW, UUID, _fusermount, command_lines, declare, kcat_consume, kv,
                      mounted, read, read_word, status_dict, wait_until, write_state)

DELIVERY_TIMEOUT = 30.0 * SLOW

APPLIED = re.compile(r"\bapplied id=(\S+) resource=(\S+) verb=(\S+) state=(\S+)( \(no change\))?$")
DUPLICATE = re.compile(r"\bduplicate id=(\S+)")


# ---------------------------------------------------------------- helpers

class AgentLog:
    """What an agent reported on stderr: .applied [(id, resource, verb, state,
    changed)] in order, .duplicates [id]."""

    def __init__(self, agent):
        text = Path(agent.stderr_path).read_text(errors="replace")
        self.applied = []
        self.duplicates = []
        for line in text.splitlines():
            m = APPLIED.search(line)
            if m:
                self.applied.append((m.group(1), m.group(2), m.group(3), m.group(4),
                                     m.group(5) is None))
                continue
            m = DUPLICATE.search(line)
            if m:
                self.duplicates.append(m.group(1))

    def ids(self, resource=None):
        return [a[0] for a in self.applied if resource is None or a[1] == resource]

    def final_state(self, resource, initial="running"):
        states = [a[3] for a in self.applied if a[1] == resource]
        return states[-1] if states else initial


def db_commands(db):
    """[(seq, id, resource, verb, result)] of every stored command, by seq.
    Read-only; safe while the daemon runs (WAL) or after it died."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT seq, id, resource, verb, result FROM commands"
                           " ORDER BY seq").fetchall()
    finally:
        con.close()


def db_integrity(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
    finally:
        con.close()


def kill9(d):
    """kill -9 of the daemon, then the cleanup a user does: fusermount3 -uz of
    the dead mount. The fixture is told not to expect exit status 0."""
    kill_and_reap(d.proc, d.mnt)
    _fusermount(["-uz"], d.mnt)
    assert not mounted(d.mnt), f"{d.mnt} still mounted after fusermount3 -uz"
    d.checked = True
    d._close()


def pending_commands(d):
    return int(status_dict(d.path("status"))["pending_commands"])


def wait_all_applied(a, ids, what):
    """Waits until the agent applied every id of IDS; returns its AgentLog."""
    want = set(ids)

    def done():
        log = AgentLog(a)
        return log if want <= set(log.ids()) else None
    try:
        return wait_until(done, timeout=DELIVERY_TIMEOUT, what=what)
    except AssertionError as e:
        log = AgentLog(a)
        missing = [i for i in ids if i not in set(log.ids())]
        raise AssertionError(f"{e}\n{len(missing)} of {len(ids)} never applied, "
                             f"first: {missing[:5]}") from None


def check_once_in_order(log, stored, what, ordered=True):
    """Every stored command applied exactly once, in seq order (ORDERED; for
    commands to several resources, whose order holds per resource only)."""
    want = [r[1] for r in stored]
    got = log.ids()
    twice = sorted({i for i in got if got.count(i) > 1})
    assert not twice, f"{what}: applied more than once: {twice[:5]}"
    unknown = [i for i in got if i not in set(want)]
    assert not unknown, f"{what}: the agent applied commands the db never stored: {unknown[:5]}"
    if ordered and got != want:
        i = next((k for k, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
        raise AssertionError(f"{what}: applied order differs from issue order at #{i}: "
                             f"applied {got[i:i + 3]}, issued {want[i:i + 3]}")


# ---------------------------------------------------------------- durable

def test_durable_write_with_broker_down_times_out_and_is_never_delivered(broker, ctlfs, agent):
    ack_ms = int(1500 * SLOW)
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--ack-timeout-ms={ack_ms}")
    res = declare(d)
    a = agent(broker.bootstrap)
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")

    broker.fault("down 1")
    t0 = time.monotonic()
    try:
        write_state(res / "state", "pause\n")
        raise AssertionError("write succeeded with the broker down (durable mode)")
    except OSError as e:
        elapsed = time.monotonic() - t0
        assert e.errno == errno.ETIMEDOUT, f"errno {errno.errorcode.get(e.errno)}, not ETIMEDOUT"
    bound = ack_ms / 1000 + 2 * SLOW
    assert elapsed <= bound, f"ETIMEDOUT after {elapsed:.1f}s, ack timeout {ack_ms} ms"

    st = status_dict(res / "status")
    m = re.fullmatch(r"(\S+) pause failed", st["last_command"])
    assert m and UUID.match(m.group(1)), st
    failed_id = m.group(1)
    assert re.search(r"acknowledg|time", st["last_error"], re.I), \
        f"last_error does not mention the timeout: {st['last_error']!r}"
    assert st["pending"] == "-", st
    assert st["desired"] == "running", "a failed durable pause changed the desired state"
    lines = [ln for ln in command_lines(read(res / "log"), "pause") if kv(ln)["id"] == failed_id]
    assert lines and kv(lines[-1])["result"] == "failed", \
        f"no result=failed line for {failed_id}:\n{read(res / 'log')}"

    broker.fault("up 1")
    wait_until(lambda: status_dict(d.path("status"))["broker_link"] == "up",
               timeout=DELIVERY_TIMEOUT, what="broker_link: up")
    write_state(res / "state", "pause\n")      # a later command goes through
    later_id = status_dict(res / "status")["last_command"].split()[0]
    assert later_id != failed_id
    wait_until(lambda: read(res / "observed") == "paused\n", timeout=DELIVERY_TIMEOUT,
               what="observed == paused from the later command")

    ids = [m["value"]["id"] for m in kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")]
    assert failed_id not in ids, f"the command that failed with ETIMEDOUT was published: {ids}"
    assert ids == [later_id], ids
    log = AgentLog(a)
    assert failed_id not in log.ids() and failed_id not in log.duplicates
    assert log.ids() == [later_id]


# ---------------------------------------------------------------- queued, broker outage

def test_queued_writes_during_broker_outage_are_delivered_once_in_order(broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}", "--write-mode=queued")
    res = declare(d)
    a = agent(broker.bootstrap)
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")

    broker.fault("down 1")
    n = 50
    t0 = time.monotonic()
    for i in range(n):
        verb = "pause\n" if i % 2 == 0 else "resume\n"
        assert write_state(res / "state", verb) == len(verb)
    elapsed = time.monotonic() - t0
    # sanity bound: 50 writes that waited for the broker would take minutes
    assert elapsed < 5 * SLOW, f"{n} queued writes took {elapsed:.1f}s with the broker down"
    assert read(res / "state") == "running\n"          # the last one was a resume

    stored = db_commands(d.db)
    assert len(stored) == n, f"{len(stored)} commands stored for {n} accepted writes"
    assert [r[3] for r in stored] == ["pause", "resume"] * (n // 2)
    pending = pending_commands(d)
    assert pending == n, f"pending_commands {pending} while {n} commands wait for the broker"

    broker.fault("up 1")
    log = wait_all_applied(a, [r[1] for r in stored], f"the {n} queued commands applied")
    check_once_in_order(log, stored, "after the broker came back")
    wait_until(lambda: pending_commands(d) == 0, timeout=DELIVERY_TIMEOUT,
               what="pending_commands back to 0")
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")
    assert not AgentLog(a).duplicates, "the broker got a command twice"


# ---------------------------------------------------------------- queued, clean restart

def test_queued_outbox_survives_restart_with_broker_down(broker, ctlfs, agent):
    args = [f"--brokers={broker.bootstrap}", "--write-mode=queued"]
    d = ctlfs(*args)
    res = declare(d)
    a = agent(broker.bootstrap)
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")

    broker.fault("down 1")
    n = 20
    for i in range(n):
        verb = "pause\n" if i % 2 == 0 else "resume\n"
        assert write_state(res / "state", verb) == len(verb)
    d.stop()                        # fusermount3 -u, exit status 0, outbox full
    stored = db_commands(d.db)
    assert len(stored) == n and all(r[4] == "queued" for r in stored), stored

    broker.fault("up 1")
    d2 = ctlfs(*args, db=d.db, mnt=d.mnt)
    log = wait_all_applied(a, [r[1] for r in stored], f"the {n} commands after the restart")
    check_once_in_order(log, stored, "after the restart")
    assert not log.duplicates, f"delivered twice: {log.duplicates}"
    ids = [m["value"]["id"] for m in kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")]
    assert ids == [r[1] for r in stored], "the command topic holds other than each command once"
    wait_until(lambda: pending_commands(d2) == 0, what="pending_commands back to 0")
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")


# ---------------------------------------------------------------- kill -9 mid-stream

class Writer(threading.Thread):
    """Writes N commands round-robin over RESOURCES, alternating pause/resume
    per resource, until N are done or a write fails. .accepted counts the
    successful writes (per resource too); .error is the first failure."""

    def __init__(self, base, resources, n, notify_at=None):
        super().__init__(daemon=True)
        self.base = base
        self.resources = resources
        self.n = n
        self.accepted = 0
        self.per_resource = {r: 0 for r in resources}
        self.error = None
        self.notify_at = notify_at
        self.reached = threading.Event()
        self.stop = threading.Event()

    def verb(self, k):
        return "pause" if k % 2 == 0 else "resume"

    def run(self):
        for i in range(self.n):
            if self.stop.is_set():
                break
            r = self.resources[i % len(self.resources)]
            k = self.per_resource[r]
            try:
                write_state(self.base / r / "state", self.verb(k) + "\n")
            except OSError as e:
                self.error = e
                break
            self.per_resource[r] = k + 1
            self.accepted += 1
            if self.notify_at is not None and self.accepted >= self.notify_at:
                self.reached.set()
        self.reached.set()


def test_kill9_during_stream_of_queued_commands_then_restart(broker, ctlfs, agent):
    args = [f"--brokers={broker.bootstrap}", "--write-mode=queued"]
    d = ctlfs(*args)
    declare(d, resource=None)
    resources = [f"svc{i}" for i in range(4)]
    for r in resources:
        os.mkdir(d.path("runtimes", "rt1", r))
    a = agent(broker.bootstrap, resources=resources)
    base = d.path("runtimes", "rt1")
    for r in resources:
        wait_until(lambda: read(base / r / "observed") == "running\n",
                   what=f"{r} observed == running")

    n = 1000
    w = Writer(base, resources, n, notify_at=n // 2)
    w.start()
    assert w.reached.wait(DELIVERY_TIMEOUT), f"only {w.accepted} writes accepted"
    kill9(d)
    w.join(30 * SLOW)
    assert not w.is_alive(), "a write is still blocked after kill -9 of the daemon"
    accepted = w.accepted
    assert accepted < n, "every write finished before the kill: nothing was cut short"
    assert w.error is not None and w.error.errno in (errno.ENOTCONN, errno.ECONNABORTED), w.error

    crashed_integrity = db_integrity(d.db)
    stored = db_commands(d.db)
    unsent = sum(1 for row in stored if row[4] == "queued")
    by_res = {r: [row for row in stored if row[2] == r] for r in resources}
    # every write that returned success is stored, in order, with its verb
    for r in resources:
        verbs = [row[3] for row in by_res[r]]
        assert w.per_resource[r] <= len(verbs) <= w.per_resource[r] + 1, \
            f"{r}: {w.per_resource[r]} writes accepted, {len(verbs)} stored"
        assert verbs == [w.verb(k) for k in range(len(verbs))], f"{r}: stored verbs out of order"

    d2 = ctlfs(*args, db=d.db, mnt=d.mnt)
    ids = [row[1] for row in stored]
    try:
        wait_all_applied(a, ids, "every stored command applied after the restart")
    finally:
        log = AgentLog(a)
        got = log.ids()
        figures = {
            "writes accepted": accepted,
            "commands stored": len(stored),
            "not recorded as sent at the kill": unsent,
            "received by the agent": len(set(got) & set(ids)),
            "applied twice": len(got) - len(set(got)),
            "duplicates seen by the agent": len(log.duplicates),
            "lost": len(set(ids) - set(got)),
        }
        summary = ", ".join(f"{k}: {v}" for k, v in figures.items())
        print(f"\nkill -9 outage figures: {summary}")
    assert figures["lost"] == 0 and figures["applied twice"] == 0, summary
    for r in resources:
        assert log.ids(r) == [row[1] for row in by_res[r]], \
            f"{r}: applied order differs from issue order ({summary})"
    # Each resource's commands share a partition (keyed by resource), so their
    # order is checked above; between partitions there is none.
    check_once_in_order(log, stored, f"after kill -9 and restart ({summary})", ordered=False)
    assert set(log.duplicates) <= set(ids), "duplicates of commands never stored"
    wait_until(lambda: pending_commands(d2) == 0, timeout=DELIVERY_TIMEOUT,
               what="pending_commands back to 0")
    d2.stop()
    assert crashed_integrity == ["ok"], f"after kill -9: {crashed_integrity}"
    assert db_integrity(d.db) == ["ok"]
    results = {row[4] for row in db_commands(d.db)}
    assert results <= {"sent", "applied"}, f"commands left unsettled: {results}"


# ---------------------------------------------------------------- feedback in flight


def test_kill9_with_feedback_in_flight_neither_loses_nor_reapplies_feedback(
        broker, ctlfs, agent):
    args = [f"--brokers={broker.bootstrap}"]
    d = ctlfs(*args)
    declare(d, resource=None)
    resources = ["svc0", "svc1"]
    for r in resources:
        os.mkdir(d.path("runtimes", "rt1", r))
    a = agent(broker.bootstrap, resources=resources, heartbeat_ms=50)
    base = d.path("runtimes", "rt1")
    for r in resources:
        wait_until(lambda: read(base / r / "observed") == "running\n",
                   what=f"{r} observed == running")

    # durable writes, one after the other: the stream lasts until the kill,
    # so commands, their feedback and heartbeats are all flowing then
    w = Writer(base, resources, 100000)
    w.start()
    wait_until(lambda: len(AgentLog(a).applied) >= 100 or not w.is_alive(),
               timeout=DELIVERY_TIMEOUT, what="100 commands applied by the agent")
    assert w.is_alive(), f"the writer stopped before the kill: {w.error}"
    kill9(d)
    w.join(30 * SLOW)
    assert not w.is_alive(), "a write is still blocked after kill -9 of the daemon"

    ctlfs(*args, db=d.db, mnt=d.mnt)
    # the writer died with the daemon: once the agent applied every published
    # command, its final state is known
    sent = [m["value"]["id"] for m in kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")]
    wait_all_applied(a, sent, "every published command applied")
    log = AgentLog(a)
    for r in resources:
        final = log.final_state(r)
        wait_until(lambda: read_word(base / r / "observed") == final,
                   what=f"{r} observed == {final}, the agent's final state")

    for r in resources:
        lines = [ln for ln in read(base / r / "log").splitlines()
                 if ln.split(" ")[2] == "observed" and "offset" in kv(ln)]
        offsets = [int(kv(ln)["offset"]) for ln in lines]
        twice = sorted({o for o in offsets if offsets.count(o) > 1})
        assert not twice, (f"{r}: feedback applied twice across the restart, offsets "
                           f"{twice[:10]}")
        assert offsets == sorted(offsets), f"{r}: observed lines go back in the feedback topic"
        # each change the agent made comes back exactly once, with its command
        by_cmd = {}
        for ln in lines:
            c = kv(ln).get("command")
            if c:
                by_cmd[c] = by_cmd.get(c, 0) + 1
        changes = [x[0] for x in log.applied if x[1] == r and x[4]]
        lost = [c for c in changes if by_cmd.get(c, 0) == 0]
        again = [c for c in changes if by_cmd.get(c, 0) > 1]
        assert not again, f"{r}: feedback of {len(again)} commands applied twice: {again[:3]}"
        if lost:        # say what the log holds around the first one, to explain a failure
            agent_rows = [x for x in log.applied if x[0] == lost[0]]
            near = [ln for ln in read(base / r / "log").splitlines() if lost[0] in ln]
        assert not lost, (f"{r}: feedback of {len(lost)} of {len(changes)} commands lost "
                          f"across the restart: {lost[:3]}; the agent: {agent_rows}; "
                          f"the log: {near}; observed lines around: "
                          f"{[ln for ln in lines][-5:] if not near else ''}")
