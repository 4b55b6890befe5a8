"""Files that behave like files for the tools that watch them (issue 16):
inotifywait with each of the masks modify, attrib and close_write; entr; a
watcher with exactly systemd's PathChanged= mask; node's fs.watch and
fs.watchFile; GNU `tail -F`; and the times `stat` and `ls -l` show, for files
and for directories.

Changes come from the real agent: a pause or resume written to `state` makes
exactly one change of `observed` when the agent's feedback arrives. Every wait
is on an event (a line from the watching tool) with a bound; a condition
without an event (a watch in place, a value read back) uses wait_until.

test_wake_delays_beside_inotifywait measures how long after a change each tool
wakes (from the change's own time, the file's new mtime, to the line the tool
printed), beside `inotifywait -e modify` in the same run, and prints them as
`FIGURES` lines (-s)."""

import calendar
import ctypes
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import threading
import time

import pytest

from conftest import (REPO, SLOW, _live, declare, read, read_word, status_dict, wait_until,
                      write_state)

EVENT_TIMEOUT = 15.0 * SLOW      # bound on any single wake-up we wait for
POLL_MS = 100                    # fs.watchFile's interval, tail's --sleep-interval
CHANGES = 10                     # changes measured per tool for the figures

# systemd's PathChanged= (src/core/path.c, path_spec_watch(): flags_table)
IN_ATTRIB, IN_CLOSE_WRITE = 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
PATH_CHANGED_MASK = (IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE
                     | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)

# A watcher as systemd sets one up for a path unit's PathChanged=FILE: one
# inotify watch on the file with that mask; one line per read() of events
# (systemd triggers the unit once per such batch), the masks in hex.
PATH_CHANGED_WATCHER = r"""
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_CLOEXEC)
if fd < 0 or libc.inotify_add_watch(fd, sys.argv[1].encode(), int(sys.argv[2])) < 0:
    sys.exit("inotify: " + os.strerror(ctypes.get_errno()))
print("ready", flush=True)
while True:
    buf, off, masks = os.read(fd, 4096), 0, []
    while off < len(buf):
        _, mask, _, size = struct.unpack_from("iIII", buf, off)
        masks.append(hex(mask))
        off += 16 + size
    print("woke " + " ".join(masks), flush=True)
"""

# node: fs.watch (inotify through libuv) and fs.watchFile (libuv's stat poller,
# which compares the whole stat: a change of mtime alone is a change).
NODE_WATCHER = r"""
const fs = require('fs');
const [file, ms, what] = process.argv.slice(1);
const out = (s) => process.stdout.write(s + '\n');
if (what.includes('watch,') || what === 'watch')
  fs.watch(file, (type) => out('watch ' + type));
if (what.includes('watchFile'))
  fs.watchFile(file, { interval: Number(ms), bigint: true }, (cur, prev) =>
    out(`watchFile mtime=${cur.mtimeNs} prev_mtime=${prev.mtimeNs} size=${cur.size} ` +
        `prev_size=${prev.size}`));
// fs.watch's inotify watch is in place when it returns. fs.watchFile takes
// its first stat (what it compares with) on libuv's thread pool and tells
// nobody: say ready after five intervals, which that stat needs a tiny part of.
setTimeout(() => out('ready'), what.includes('watchFile') ? 5 * Number(ms) : 0);
"""


# ---------------------------------------------------------------- helpers

def _need(tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed (tools/install-deps.sh installs it)")


class Lines:
    """A watching program; each line it prints is kept with the time it
    arrived (time.time(): the clock of file times, so that it can be set
    against a file's mtime)."""

    def __init__(self, name, argv, cwd=None, stdin_text=None):
        self.name = name
        self.proc = subprocess.Popen(argv, cwd=cwd, text=True, bufsize=1,
                                     stdin=subprocess.PIPE if stdin_text is not None
                                     else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        _live["procs"].append(self.proc)
        if stdin_text is not None:
            self.proc.stdin.write(stdin_text)
            self.proc.stdin.close()
        self.out, self.err = [], []
        self.eof = False
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.out, True),
                         daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False),
                         daemon=True).start()

    def _read(self, stream, sink, is_out):
        try:
            for line in stream:
                t = time.time()
                with self.cond:
                    sink.append((t, line.rstrip("\n")))
                    self.cond.notify_all()
        except (ValueError, OSError):
            pass
        if is_out:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def wait(self, pred=lambda line: True, after=0.0, timeout=EVENT_TIMEOUT, what="a line",
             stderr=False, nth=1):
        """The first (NTH) (time, line) that arrived at or after AFTER and
        satisfies PRED; fails naming WHAT after TIMEOUT seconds without one."""
        sink = self.err if stderr else self.out
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [(t, line) for t, line in sink if t >= after and pred(line)]
                if len(found) >= nth:
                    return found[nth - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.eof and not stderr):
                    got = [line for _, line in sink][-10:]
                    raise AssertionError(
                        f"{self.name}: no {what} within {timeout:.0f}s (exited: "
                        f"{self.proc.poll()}); last lines: {got}; stderr: "
                        f"{[line for _, line in self.err][-5:]}")
                self.cond.wait(left)

    def lines_after(self, after):
        with self.cond:
            return [line for t, line in self.out if t >= after]

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def watchers():
    """Factory: watchers(name, argv, ...) -> Lines. Listed after ctlfs in a
    test's arguments, so that they end before the unmount."""
    made = []

    def make(*args, **kw):
        w = Lines(*args, **kw)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()


def inotify_watches(pid):
    """How many inotify watches process PID holds (/proc/PID/fdinfo)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                n += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            pass
    return n


def inotifywait(watchers, path, mask):
    """`inotifywait -m -e MASK PATH` with its watch in place."""
    _need("inotifywait")
    w = watchers(f"inotifywait -e {mask}",
                 ["inotifywait", "-m", "-e", mask, "--format", "%e", str(path)])
    w.wait(lambda line: "Watches established" in line, stderr=True,
           what="'Watches established'")
    return w


def entr(watchers, res):
    """`ls observed | entr -n -p cat observed` in RES: -n needs no TTY, -p
    runs cat only on a change. entr says nothing when its watch is in place:
    that is read from /proc."""
    _need("entr")
    w = watchers("entr", ["entr", "-n", "-p", "cat", "observed"], cwd=res,
                 stdin_text="observed\n")
    wait_until(lambda: inotify_watches(w.proc.pid) >= 1, what="entr's inotify watch")
    return w


def entr_waiting(w):
    """Waits until entr is back in its wait for events. entr drops events that
    come within 50 ms of its utility's end (its guard against a utility that
    changes what it watches; the same on a local file): it then polls its
    inotify fd with a 50 ms timeout, and only the wait without a timeout
    (poll(2), timeout -1) takes a change. /proc/PID/syscall shows which."""
    def idle():
        with open(f"/proc/{w.proc.pid}/syscall") as f:
            fields = f.read().split()
        return fields[0] == "7" and fields[3] == "0xffffffff"
    wait_until(idle, interval=0.005, what="entr waiting for events (poll without timeout)")


def path_changed(watchers, path):
    w = watchers("PathChanged mask", ["/usr/bin/python3", "-c", PATH_CHANGED_WATCHER,
                                      str(path), str(PATH_CHANGED_MASK)])
    w.wait(lambda line: line == "ready", what="ready")
    return w


def last_event_of_change(w, after):
    """The events of one change come as IN_ATTRIB then IN_CLOSE_WRITE, in one
    read() or two: waits for the last, so that none of them is taken for the
    next change's."""
    w.wait(lambda ln: hex(IN_CLOSE_WRITE) in ln.split(), after=after,
           what="IN_CLOSE_WRITE, the last event of a change")


def node(watchers, path, what):
    _need("node")
    w = watchers(f"node {what}", ["node", "-e", NODE_WATCHER, str(path), str(POLL_MS), what])
    w.wait(lambda line: line == "ready", what="ready")
    return w


def tail_F(watchers, path, *opts):
    """GNU `tail -F OPTS... PATH`, once it printed the last line."""
    w = watchers(" ".join(["tail -F", *opts]), ["tail", "-F", "-n", "1", *opts, str(path)])
    w.wait(what="the last line of the log")
    return w


def abort_connection(mnt):
    """umount(MNT_FORCE) on a FUSE mount aborts its connection: every request
    waiting on it fails. Called here, not through umount(8): a forked child
    would inherit the hung writers' descriptors, and its closing them would
    wait on the hung mount too."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(str(mnt).encode(), 1)   # MNT_FORCE; the mount stays, dead


def mtime_ns(path):
    return os.stat(path).st_mtime_ns


def mount_quiet(broker, ctlfs, agent, *extra):
    """A mount with one resource and its agent, settled: no heartbeats and
    no staleness, so that only our commands change anything."""
    d = ctlfs(f"--brokers={broker.bootstrap}", "--stale-after-ms=600000", *extra)
    res = declare(d)
    agent(broker.bootstrap, heartbeat_ms=0)
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")
    return d, res


def toggle(res):
    """Pauses a running resource or resumes a paused one: one change of
    `observed` follows, when the agent's feedback arrives. Returns the time
    of the write and the value `observed` will take."""
    verb, want = (("pause", "paused") if read_word(res / "observed") == "running"
                  else ("resume", "running"))
    t = time.time()
    write_state(res / "state", verb + "\n")
    return t, want


def changed(ref, res, t, want):
    """Waits for REF (inotifywait -e modify on observed) to report the change
    that followed a write at T, checks the value, and returns the change's
    time (observed's mtime, in seconds)."""
    ref.wait(lambda line: line == "MODIFY", after=t, what=f"MODIFY for {want}")
    assert read_word(res / "observed") == want
    return mtime_ns(res / "observed") / 1e9


def figures(name, **kw):
    print(f"\nFIGURES {name}: " + " ".join(f"{k}={v}" for k, v in kw.items()))


# ---------------------------------------------------------------- inotify masks

def test_inotifywait_wakes_with_each_mask(broker, ctlfs, agent, watchers):
    """modify, attrib and close_write each wake their own inotifywait, once
    per change, and what it then reads is the new value."""
    d, res = mount_quiet(broker, ctlfs, agent)
    masks = {"modify": "MODIFY", "attrib": "ATTRIB", "close_write": "CLOSE_WRITE,CLOSE"}
    w = {m: inotifywait(watchers, res / "observed", m) for m in masks}
    for _ in range(3):
        t, want = toggle(res)
        for m, event in masks.items():
            _, line = w[m].wait(after=t, what=f"event for observed == {want}")
            assert line == event, f"inotifywait -e {m} reported {line!r}"
            assert read_word(res / "observed") == want
    # one event of each kind per change, nothing else
    for m, event in masks.items():
        assert w[m].lines_after(0) == [event] * 3, f"inotifywait -e {m}: {w[m].lines_after(0)}"


def test_systemd_path_changed_mask_wakes(broker, ctlfs, agent, watchers):
    """A watch with exactly the mask systemd gives PathChanged=FILE
    (IN_CLOSE_WRITE|IN_ATTRIB|..., no IN_MODIFY) wakes on every change, and
    only with events of that mask."""
    d, res = mount_quiet(broker, ctlfs, agent)
    w = path_changed(watchers, res / "observed")
    for i in range(4):
        t, want = toggle(res)
        w.wait(lambda ln: ln.startswith("woke"), after=t,
               what=f"wake-up {i + 1} of 4 (observed == {want})")
        assert read_word(res / "observed") == want
        last_event_of_change(w, t)
    masks = {int(m, 16) for ln in w.lines_after(0) if ln.startswith("woke")
             for m in ln.split()[1:]}
    assert masks <= {IN_ATTRIB, IN_CLOSE_WRITE}, [hex(m) for m in masks]
    assert masks == {IN_ATTRIB, IN_CLOSE_WRITE}, f"not both events: {[hex(m) for m in masks]}"


# ---------------------------------------------------------------- entr

def test_entr_runs_once_per_change_of_observed(broker, ctlfs, agent, watchers):
    """`ls observed | entr -n -p cat observed` prints the new value after each
    of 4 changes: 4 of 4, each once (entr gathers the events of one change)."""
    d, res = mount_quiet(broker, ctlfs, agent)
    e = entr(watchers, res)
    ref = inotifywait(watchers, res / "observed", "modify")
    wanted = []
    for i in range(4):
        entr_waiting(e)
        t, want = toggle(res)
        wanted.append(want)
        since = changed(ref, res, t, want)
        e.wait(lambda ln: ln == want, after=since, what=f"run {i + 1} of 4 (cat: {want})")
    # a fifth change: entr's output up to it holds exactly one run per change
    entr_waiting(e)
    t, want = toggle(res)
    since = changed(ref, res, t, want)
    e.wait(lambda ln: ln == want, after=since, what="run 5")
    assert [ln for _, ln in e.out][:-1] == wanted, \
        f"entr ran {len(e.out) - 1} times for 4 changes: {[ln for _, ln in e.out]}"


# ---------------------------------------------------------------- node

def test_node_fs_watch_wakes_on_every_change(broker, ctlfs, agent, watchers):
    """fs.watch (libuv's inotify mask has IN_MODIFY and IN_ATTRIB) calls back
    twice per change, once for each."""
    d, res = mount_quiet(broker, ctlfs, agent)
    w = node(watchers, res / "observed", "watch")
    for i in range(4):
        t, want = toggle(res)
        _, line = w.wait(lambda ln: ln.startswith("watch "), after=t,
                         what=f"fs.watch event {i + 1} of 4 (observed == {want})")
        assert line == "watch change", line
        assert read_word(res / "observed") == want
        second_fs_watch_event(w, t)
    assert w.lines_after(0) == ["ready"] + ["watch change"] * 8


def second_fs_watch_event(w, after):
    w.wait(lambda ln: ln.startswith("watch "), after=after, nth=2,
           what="fs.watch's second event of the change")


def test_node_fs_watchFile_sees_a_change_of_equal_size(broker, ctlfs, watchers, tmp_path):
    """fs.watchFile polls stat(): a change that keeps the size must show in
    mtime. A lifecycle flow's `state` goes running -> stopped -> running,
    8 bytes each (the broker acknowledges; no agent is needed). The flow is
    started once first: the first start of a flow that was never commanded
    shows `running` without a change event (desired was stored as running
    when the flow was made), so it moves no time (a known gap, reported)."""
    conf = tmp_path / "lifecycle.conf"
    conf.write_text("[runtime flows]\nbackend=lifecycle\n")
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--config={conf}")
    os.mkdir(d.path("runtimes", "flows"))
    os.mkdir(d.path("runtimes", "flows", "f1"))
    state = d.path("runtimes", "flows", "f1", "state")
    assert read(state) == "stopped\n"
    write_state(state, "start\n")
    assert read(state) == "running\n"
    w = node(watchers, state, "watchFile")
    for i, (verb, want) in enumerate([("stop", "stopped"), ("start", "running")] * 2):
        before = os.stat(state)
        t = time.time()
        write_state(state, verb + "\n")
        _, line = w.wait(lambda ln: ln.startswith("watchFile"), after=t,
                         what=f"fs.watchFile callback {i + 1} of 4 ({verb})")
        f = dict(kv.split("=") for kv in line.split()[1:])
        assert f["size"] == f["prev_size"] == "8", line
        assert int(f["mtime"]) > int(f["prev_mtime"]), line
        assert int(f["prev_mtime"]) == before.st_mtime_ns, (line, before.st_mtime_ns)
        assert read(state) == want + "\n"


# ---------------------------------------------------------------- tail -F

@pytest.mark.parametrize("opts", [(), ("--sleep-interval=0.1",)],
                         ids=["default", "sleep-interval-0.1"])
def test_tail_F_follows_new_log_lines(broker, ctlfs, agent, watchers, opts):
    """GNU tail does not use inotify on FUSE (a "remote" file system to it):
    it polls, every second unless told otherwise. Either way it prints each
    line the log gets, once."""
    d, res = mount_quiet(broker, ctlfs, agent)
    before = read(res / "log")
    t = tail_F(watchers, res / "log", *opts)
    assert t.out[0][1] == before.splitlines()[-1]
    for i in range(3):
        at, want = toggle(res)
        t.wait(lambda ln: f" observed state={want} " in ln, after=at,
               what=f"the observed line {i + 1} of 3 (state={want})")
    after = read(res / "log")
    new = after[len(before):].splitlines()
    # every new line, in order, once (tail may still be printing the last)
    t.wait(lambda ln: ln == new[-1], what="the last new line")
    assert [ln for _, ln in t.out[1:]] == new


# ---------------------------------------------------------------- stat, ls -l

def test_stat_times_are_those_of_the_last_change(broker, ctlfs, agent, watchers):
    """`stat -c %Y` advances with each change of a file, and only then;
    ctime == mtime; a log's mtime is the time of its last line."""
    d, res = mount_quiet(broker, ctlfs, agent)
    obs, state = res / "observed", res / "state"
    ref = inotifywait(watchers, obs, "modify")
    t0 = time.time()
    m0 = mtime_ns(obs)
    t, want = toggle(res)
    since = changed(ref, res, t, want)
    m1 = mtime_ns(obs)
    assert m1 > m0 and t0 * 1e9 < m1 <= time.time() * 1e9, (m0, m1, t0)
    # what users type: seconds (%Y) and the full time (%.9Y), mtime and ctime
    out = subprocess.run(["stat", "-c", "%Y %.9Y %.9Z", str(obs)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert int(out[0]) == m1 // 10**9 and out[1] == out[2] == f"{m1 // 10**9}.{m1 % 10**9:09d}", (out, m1)
    # `state` changed when the command was accepted, before `observed`; and
    # not again since
    m_state = mtime_ns(state)
    assert m_state <= m1
    # the log's last line carries the time (ms) of the change that wrote it
    last = read(res / "log").splitlines()[-1]
    ts = last.split(" ")[0]
    line_ms = (calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) * 1000
               + int(ts[20:23]))
    log_ms = mtime_ns(res / "log") // 10**6
    assert 0 <= log_ms - line_ms <= 20 * SLOW, (last, log_ms)
    # another change: the files it touched move, the runtime's directory
    # (no child came or went) does not
    t, want = toggle(res)
    assert changed(ref, res, t, want) > since
    assert mtime_ns(obs) > m1 and mtime_ns(state) > m_state
    assert mtime_ns(d.path("runtimes", "rt1")) < m0


def test_ls_l_shows_a_directory_change_when_a_child_comes_or_goes(broker, ctlfs, agent):
    """A directory's mtime is the time a child was last made or removed: by
    mkdir/rmdir, and by feedback naming a resource ctlfs did not know."""
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d, "rt1", None)
    runtimes = d.path("runtimes")

    def ls_time(name):
        out = subprocess.run(["ls", "-l", "--time-style=+%s.%N", str(runtimes)],
                             capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            f = line.split()
            if f[-1] == name:
                return float(f[-2])
        raise AssertionError(f"{name} not in ls -l:\n{out}")

    t0 = ls_time("rt1")
    os.mkdir(runtimes / "rt1" / "svc")
    t1 = ls_time("rt1")
    assert t1 > t0, f"ls -l: rt1's time stayed {t0} after mkdir rt1/svc"
    assert abs(t1 - time.time()) < 5 * SLOW
    os.rmdir(runtimes / "rt1" / "svc")
    t2 = ls_time("rt1")
    assert t2 > t1, f"ls -l: rt1's time stayed {t1} after rmdir rt1/svc"
    # a resource made by feedback (the agent reports `found`, never declared)
    agent(broker.bootstrap, resources=("found",), heartbeat_ms=0)
    wait_until(lambda: (runtimes / "rt1" / "found").is_dir(), what="rt1/found discovered")
    t3 = ls_time("rt1")
    assert t3 > t2, f"ls -l: rt1's time stayed {t2} after feedback made rt1/found"
    # the new directory's own time is when it was made
    assert t2 < os.stat(runtimes / "rt1" / "found").st_mtime <= t3


def test_times_after_a_restart_are_the_mount_time(broker, ctlfs, agent, tmp_path):
    """Times are kept in memory: after a restart a file that has not changed
    since shows the time of the mount (never an older one)."""
    d, res = mount_quiet(broker, ctlfs, agent)
    db, mnt = d.db, d.mnt
    d.stop()
    before = time.time_ns()
    d2 = ctlfs(f"--brokers={broker.bootstrap}", "--stale-after-ms=600000", db=db, mnt=mnt)
    after = time.time_ns()
    times = {p: mtime_ns(res / p) for p in ("state", "status", "log")}
    times["dir"] = mtime_ns(res)
    assert len(set(times.values())) == 1, times
    assert before <= times["dir"] <= after, (before, times, after)
    assert d2


# ---------------------------------------------------------------- the daemon's children

def test_cli_children_start_while_watched_files_are_kicked(broker, ctlfs, watchers, tmp_path):
    """The helper holds a watched file open for its events while the daemon
    forks the Rama CLI (a write to a module's `scale` runs it, and changes
    `scale`, `status` and `log`, all watched). The child inherits that
    descriptor and closes it at exec: that close must not wait for the daemon
    (the first close of a mount sent a FLUSH, which the daemon, waiting for
    the exec, never answered: a deadlock). Writers on four modules at once keep
    a spawn waiting behind every kick. Were a write to hang, the connection is
    aborted so that the test fails instead of wedging the host."""
    fake = tmp_path / "fake-rama"
    fake.mkdir()
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--rama-cli={REPO / 'tests' / 'fake-rama'}",
              env=dict(os.environ, FAKE_RAMA_DIR=str(fake)))
    mods = [d.path("modules", f"m{i}") for i in range(4)]
    for m in mods:
        os.mkdir(m)
    w = [inotifywait(watchers, m / f, "close_write") for m in mods for f in ("scale", "log")]
    errors = []

    def writes(mod):
        try:
            for i in range(15):
                write_state(mod / "scale", f"workers={1 + i % 2}\n")
        except OSError as e:
            errors.append(e)
    threads = [threading.Thread(target=writes, args=(m,), daemon=True) for m in mods]
    for t in threads:
        t.start()
    deadline = time.monotonic() + EVENT_TIMEOUT * 2
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        abort_connection(d.mnt)
        pytest.fail("a write to scale hung while the helper kicked watched files")
    assert not errors, errors
    assert all(read(m / "scale") == "workers=1\n" for m in mods)
    for x in w:     # and the watchers heard the changes
        x.wait(lambda ln: ln.startswith("CLOSE_WRITE"), what="a CLOSE_WRITE")


# ---------------------------------------------------------------- delays

def test_wake_delays_beside_inotifywait(broker, ctlfs, agent, watchers):
    """Every tool at once on one resource, CHANGES changes of `observed`: each
    wakes for each change; how long after the change (its mtime) each printed
    its line, median and worst, beside inotifywait -e modify's."""
    d, res = mount_quiet(broker, ctlfs, agent)
    obs = res / "observed"
    ref = inotifywait(watchers, obs, "modify")
    tools = {  # name -> (Lines, is this its line for a change to WANT?)
        "inotifywait -e modify": (ref, lambda ln, want: ln == "MODIFY"),
        "inotifywait -e attrib": (inotifywait(watchers, obs, "attrib"),
                                  lambda ln, want: ln == "ATTRIB"),
        "inotifywait -e close_write": (inotifywait(watchers, obs, "close_write"),
                                       lambda ln, want: ln.startswith("CLOSE_WRITE")),
        "PathChanged mask": (path_changed(watchers, obs),
                             lambda ln, want: ln.startswith("woke")),
        "entr -n -p": (entr(watchers, res), lambda ln, want: ln == want),
        "node fs.watch": (node(watchers, obs, "watch"),
                          lambda ln, want: ln.startswith("watch ")),
        f"node fs.watchFile {POLL_MS}ms": (node(watchers, obs, "watchFile"),
                                           lambda ln, want: ln.startswith("watchFile")),
        "tail -F": (tail_F(watchers, res / "log"),
                    lambda ln, want: f" observed state={want} " in ln),
        "tail -F -s 0.1": (tail_F(watchers, res / "log", "--sleep-interval=0.1"),
                           lambda ln, want: f" observed state={want} " in ln),
    }
    delays = {name: [] for name in tools}
    phase = random.Random(16)
    for i in range(CHANGES):
        entr_waiting(tools["entr -n -p"][0])
        # Not a wait for anything: the pollers (tail every second, fs.watchFile
        # every 100 ms) would otherwise see each change just after the poll
        # that printed the last one, always their worst case. A random pause
        # spreads the changes over their phase, as a user's changes are.
        time.sleep(phase.uniform(0.0, 1.0))
        t, want = toggle(res)
        since = changed(ref, res, t, want)
        for name, (w, pred) in tools.items():
            at, _ = w.wait(lambda ln: pred(ln, want), after=t,
                           what=f"wake-up for change {i + 1} of {CHANGES} ({want})")
            delays[name].append(at - since)
        # the tools that get two events per change: both, before the next
        last_event_of_change(tools["PathChanged mask"][0], t)
        second_fs_watch_event(tools["node fs.watch"][0], t)
    print(f"\nwake delay after a change of observed ({CHANGES} changes, ms from its mtime)")
    print(f"{'tool':<28} {'woke':>6} {'median':>8} {'max':>8}")
    for name, ds in delays.items():
        ms = sorted(x * 1000 for x in ds)
        print(f"{name:<28} {len(ms):>3}/{CHANGES:<2} {statistics.median(ms):>8.1f} "
              f"{ms[-1]:>8.1f}")
        figures(re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_"), n=len(ms),
                p50_ms=f"{statistics.median(ms):.1f}", max_ms=f"{ms[-1]:.1f}")
    # tail polls (every second, or as told); everything else is woken
    for name, ds in delays.items():
        bound = 1.0 + 1.0 * SLOW if name == "tail -F" else 1.0 * SLOW
        assert statistics.median(ds) < bound, f"{name}: median {statistics.median(ds):.3f}s"
    assert status_dict(res / "status")["observed"] == read_word(obs)
