"""A daemon started while its broker is down reconnects once the broker is back
(issue: about 1 start in 20 never did). Each trial starts a fresh broker and a
fresh daemon whose broker cannot be reached, brings the broker back, and checks
the three things that must recover, each on its own:

  link      `status` says broker_link: up (the producer's broker connection)
  consumer  the agent's heartbeats reach the daemon (observed == running): the
            consumer fetches from the feedback topic
  producer  a durable `pause` is acknowledged and the agent applies it: the
            producer delivers to the command topic

Two forms of "broker down" alternate:

  down-up   ctlfs-broker runs, `down 1` before the daemon starts, `up 1` after
            (the mock broker closes its connections and refuses new ones)
  absent    nothing listens on the bootstrap port when the daemon starts; a
            broker and a TCP relay on that port start later (ctlfs-broker has
            no port option: the relay stands for a broker restarted on the
            same port, its metadata then names the broker's own port)

  restart   a daemon that knew its broker, its topics and positions is
            restarted while the broker is down, with a command in its outbox

CTLFS_RECONNECT_TRIALS sets the number of trials (default 50, about 2.5 s each;
tests/run runs 10). The daemon's bus watchdog (core/base/bus.c) makes a client
anew after 5 s without a broker connection while the broker answers, within
RECOVER_S: a trial that needed it still passes, and says so (`watchdog`).
CTLFS_RECONNECT_DEBUG=1 runs the daemons with CTLFS_KAFKA_DEBUG=all and keeps
their trace (stdout: GLib writes DEBUG there) as ctlfs.stdout in each trial's
folder; the test prints the failing ones' paths. A `FIGURES` line (-s) gives
the counts per component and the recovery times.

The trials rarely need the watchdog, so a second test makes it act every
time: the daemon's bootstrap server is a relay that holds every connection
(accepted, never answered) until both clients were made anew, as a stuck
client would see a broker that answers; the new clients must then resume
where the old ones stopped."""

import os
import random
import socket
import statistics
import threading
import time

import pytest

from conftest import (kill_and_reap, SLOW, Broker, Daemon, _fusermount, handled, kv, mounted, read,
                      status_dict, wait_until, write_state)
from test_faults import AgentLog

TRIALS = int(os.environ.get("CTLFS_RECONNECT_TRIALS", "50"))
DEBUG = os.environ.get("CTLFS_RECONNECT_DEBUG", "") not in ("", "0")
# A healthy trial recovers within about a second; past this a component is
# counted as not recovered (the failure: never).
RECOVER_S = 10.0 * SLOW
SEED = int(os.environ.get("CTLFS_RECONNECT_SEED", str(int(time.time()))))


class Relay:
    """A TCP relay listening on PORT that forwards every connection to
    TARGET_PORT; stands for a broker process started on a fixed port. With
    HOLD, connections are accepted and left unanswered until release(), which
    forwards them (what they sent meanwhile included) and every later one."""

    def __init__(self, port, target_port, hold=False):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.conns = []
        self.threads = []
        self.held = [] if hold else None
        self.lock = threading.Lock()
        self._start(self._accept)

    def _start(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self.lock:
            self.threads.append(t)
        t.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
                if self.held is not None:
                    self.held.append(c)
                    continue
            self._forward(c)

    def hold(self):
        """From now on, new connections are held (those forwarded go on)."""
        with self.lock:
            if self.held is None:
                self.held = []

    def release(self):
        with self.lock:
            held, self.held = self.held or [], None
        for c in held:
            self._forward(c)

    def _forward(self, c):
        try:
            u = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            c.close()
            return
        with self.lock:
            self.conns.append(u)
        for a, b in ((c, u), (u, c)):
            self._start(self._pipe, a, b)

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        """Stops everything; no thread of the relay outlives it (none may
        touch a descriptor number that something else reuses)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes accept()
        except OSError:
            pass
        self.threads[0].join(10)                   # _accept: no new connection now
        with self.lock:
            conns, threads = list(self.conns), self.threads[1:]
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)       # wakes recv()
            except OSError:
                pass
        for t in threads:
            t.join(10)
        self.sock.close()
        for c in conns:
            c.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _within(fn, timeout):
    """Seconds until FN was truthy, or None if it never was within TIMEOUT."""
    t0 = time.monotonic()
    try:
        wait_until(fn, timeout=timeout, interval=0.02)
        return time.monotonic() - t0
    except AssertionError:
        return None


def _link_up(d):
    return status_dict(d.path("status"))["broker_link"] == "up"


def _feedback_read(d):
    """How many messages of rt1's feedback topic the daemon has read."""
    return handled(status_dict(d.path("runtimes", "rt1", "status"))["feedback_offset"])


def _applied(a, verb):
    return verb in [x[2] for x in AgentLog(a).applied]


def run_trial(tmp, n, form, rng, agent_factory):
    """One trial; returns {"form", "failed": [components], "times": {...}, "stderr"}."""
    tmp = tmp / f"t{n}"
    tmp.mkdir()
    env = dict(os.environ)
    if DEBUG:
        env["CTLFS_KAFKA_DEBUG"] = "all"
        env["G_MESSAGES_DEBUG"] = "all"
    broker = relay = a = None
    args = ["--stale-after-ms=60000"]
    if form == "absent":
        port = free_port()
        bootstrap = f"127.0.0.1:{port}"
    else:
        broker = Broker(tmp)
        bootstrap = broker.bootstrap
    if form == "restart":
        args.append("--write-mode=queued")
    d = Daemon(tmp / "mnt", tmp / "ctlfs.db", [f"--brokers={bootstrap}", *args],
               tmp / "ctlfs.stderr", env)
    res = d.path("runtimes", "rt1", "svc")
    failed, times = [], {}
    try:
        if form == "restart":
            # A daemon that knew its broker, its topics and offsets, restarted
            # while the broker is down with a command in its outbox.
            d.start()
            os.makedirs(res)
            a = agent_factory(broker.bootstrap, heartbeat_ms=200)
            wait_until(lambda: read(res / "observed") == "running\n", what="observed running")
            broker.fault("down 1")
            write_state(res / "state", "pause\n")
            d.stop()
            d = Daemon(d.mnt, d.db, d.args, d.stderr_path, env)
        elif broker:
            broker.fault("down 1")
        # The broker comes back at a random point of the daemon's start (its
        # first metadata request, mount, first watches) or of its first
        # reconnection attempts (backoff up to 500 ms).
        up_at = []

        def bring_up():
            nonlocal broker, relay
            time.sleep(delay)   # the scenario's random moment, not a wait for an event
            up_at.append(time.monotonic())
            if form == "absent":
                broker = Broker(tmp)
                relay = Relay(port, int(broker.bootstrap.rsplit(":", 1)[1]))
            else:
                broker.fault("up 1")
        delay = rng.uniform(0, 2.5)
        wait_up = threading.Thread(target=bring_up, daemon=True)
        wait_up.start()
        d.start()
        if form != "restart":
            os.makedirs(res)
        fb0 = _feedback_read(d)
        wait_up.join()
        t_up = up_at[0]
        if a is None:
            a = agent_factory(broker.bootstrap, heartbeat_ms=200)
        t = _within(lambda: _link_up(d), RECOVER_S)
        times["link"] = t
        if t is None:
            failed.append("link")
        # heartbeats every 200 ms move the runtime's feedback offsets
        t = _within(lambda: _feedback_read(d) > fb0,
                    max(1.0, RECOVER_S - (time.monotonic() - t_up)))
        times["consumer"] = t
        if t is None:
            failed.append("consumer")
        t0 = time.monotonic()
        if form == "restart":
            # the outbox's pause, sent by the producer once the broker is back
            if not _within(lambda: _applied(a, "pause"), RECOVER_S):
                failed.append("producer(outbox not delivered)")
        else:
            try:
                write_state(res / "state", "pause\n")
                if not _within(lambda: _applied(a, "pause"), RECOVER_S):
                    failed.append("producer(not applied)")
            except OSError as e:
                failed.append(f"producer({os.strerror(e.errno)})")
        times["producer"] = time.monotonic() - t0
        times["total"] = time.monotonic() - t_up
        times["up_after_start"] = delay
        a.stop()
        d.stop()
        if "making it anew" in d.stderr():
            times["watchdog"] = 1.0
    finally:
        if DEBUG:
            # GLib writes DEBUG messages (librdkafka's trace) to stdout
            (tmp / "ctlfs.stdout").write_text("".join(d.stdout_lines))
        if "wait_up" in locals():
            wait_up.join()
        if d.proc is not None and d.proc.poll() is None:
            kill_and_reap(d.proc, d.mnt)
        if mounted(d.mnt):
            _fusermount(["-uz"], d.mnt)
        d._close()
        if relay:
            relay.close()
        if broker:
            broker.close()
    return {"form": form, "failed": failed, "times": times, "stderr": tmp / "ctlfs.stdout"}


FORMS = os.environ.get("CTLFS_RECONNECT_FORMS", "down-up,absent,restart").split(",")


@pytest.mark.timeout(max(120, 30 * TRIALS))
def test_daemon_started_with_broker_down_reconnects_every_time(tmp_path, agent):
    rng = random.Random(SEED)
    print(f"\nCTLFS_RECONNECT_SEED={SEED} trials={TRIALS}")
    results = []
    t0 = time.monotonic()
    for n in range(TRIALS):
        form = FORMS[n % len(FORMS)]
        r = run_trial(tmp_path, n, form, rng, agent)
        results.append(r)
        tm = " ".join(f"{k}={v:.2f}" if v is not None else f"{k}=never"
                      for k, v in r["times"].items())
        print(f"trial {n} {form}: {'FAILED ' + ','.join(r['failed']) if r['failed'] else 'ok'} {tm}"
              + (f" stderr={r['stderr']}" if r["failed"] and DEBUG else ""))
    bad = [r for r in results if r["failed"]]
    by = {}
    for r in bad:
        for c in r["failed"]:
            by[c] = by.get(c, 0) + 1
    totals = [r["times"]["total"] for r in results if "total" in r["times"]]
    spread = (f"total median {statistics.median(totals):.2f}s max {max(totals):.2f}s"
              if totals else "no totals")
    print(f"FIGURES reconnect: {TRIALS - len(bad)}/{TRIALS} recovered, failures by component "
          f"{by or '{}'}, watchdog acted in "
          f"{sum(1 for r in results if 'watchdog' in r['times'])}, {spread}, "
          f"{time.monotonic() - t0:.1f}s")
    assert not bad, (f"{len(bad)} of {TRIALS} trials did not recover: "
                     + "; ".join(f"#{results.index(r)} {r['form']} {','.join(r['failed'])}"
                                 for r in bad))


def _observed_positions(log_text):
    """(partition, offset) of each `observed` event of a resource's log."""
    out = []
    for line in log_text.splitlines():
        parts = line.split(" ")
        if len(parts) > 2 and parts[2] == "observed":
            f = kv(line)
            out.append((f.get("partition"), int(f["offset"])))
    return out


def _janitor_counted(d):
    return read(d.path("log")).count("silence=counted")


@pytest.mark.timeout(120)
def test_watchdog_makes_stuck_clients_anew_and_they_resume(tmp_path, broker, ctlfs, agent):
    """Both clients of a daemon restarted with its broker held (connections
    accepted, never answered) are made anew; once the broker answers, the new
    producer delivers what the old one had queued (once), and the new
    consumer reads every partition from its stored position: no feedback
    handled twice, every partition read to its end (the janitor counts)."""
    port = free_port()
    relay = Relay(port, int(broker.bootstrap.rsplit(":", 1)[1]))
    args = (f"--brokers=127.0.0.1:{port}", "--write-mode=queued", "--stale-after-ms=60000",
            "--expire-after-ms=60000")
    env = dict(os.environ)
    if DEBUG:
        env["CTLFS_KAFKA_DEBUG"] = "all"
        env["G_MESSAGES_DEBUG"] = "all"
    d = None
    try:
        d = ctlfs(*args, env=env)
        res = d.path("runtimes", "rt1", "svc")
        os.makedirs(res)
        a = agent(broker.bootstrap, heartbeat_ms=200)
        wait_until(lambda: read(res / "observed") == "running\n", what="observed running")
        write_state(res / "state", "pause\n")
        wait_until(lambda: read(res / "observed") == "paused\n", what="observed paused")
        wait_until(lambda: _janitor_counted(d) >= 1, what="the janitor counting")
        d.stop()

        relay.hold()
        d = ctlfs(*args, db=d.db, mnt=d.mnt, env=env)
        counted = _janitor_counted(d)
        read_before = _feedback_read(d)
        write_state(res / "state", "resume\n")   # the outbox, and the stuck producer's queue
        wait_until(lambda: all(f"kafka {c}: no broker connection" in d.stderr()
                               for c in ("producer", "consumer")),
                   timeout=20 * SLOW, what="both clients made anew")
        assert not _link_up(d)
        assert broker.proc.poll() is None, "ctlfs-broker is gone: nothing to reconnect to"
        relay.release()

        wait_until(lambda: _link_up(d), what="broker_link up")
        wait_until(lambda: _applied(a, "resume"), what="the outbox's resume applied")
        wait_until(lambda: read(res / "observed") == "running\n", what="observed running")
        wait_until(lambda: _feedback_read(d) > read_before, what="feedback read again")
        wait_until(lambda: _janitor_counted(d) > counted, what="the janitor counting again")
        log = AgentLog(a)
        assert [v for _, _, v in log.applied] == ["pause", "resume"], log.applied
        assert not log.duplicates, log.duplicates
        seen = _observed_positions(read(res / "log"))
        assert len(seen) == len(set(seen)), f"feedback handled twice: {seen}"
        stderr = d.stderr()
        assert stderr.count("making it anew") == 2, stderr
        d.stop()
    finally:
        relay.close()
        if DEBUG and d:
            (tmp_path / "ctlfs.stdout").write_text("".join(d.stdout_lines))
