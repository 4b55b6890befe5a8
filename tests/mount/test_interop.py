"""Interoperability: a runtime written with kafkajs (tests/interop/runtime.js,
an independent Kafka client, written from docs/manual.md alone) driven through
a real mount, beside ctlfs-agent. The runtime's resources are named so that
their keys hash (murmur2) to partitions other than 0: a daemon or runtime that
reads partition 0 only fails here. Figures are printed (pytest -s) as
`FIGURES name: key=value ...` lines.

kafkajs is installed once per session with npm (the version package-lock.json
pins) into BUILD/interop/node_modules; node and npm come from
tools/install-deps.sh."""

import json
import os
import queue
import re
import select
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (BUILD, REPO, SLOW, START_TIMEOUT, _live, _next_line, _reader_thread,
                      _stderr_tail, _stop, command_lines, declare, kcat_consume, kv, read,
                      read_word, status_dict, wait_until, write_state)
from test_partitions import PARTITIONS, java_partition

INTEROP = REPO / "tests" / "interop"
JS_START_TIMEOUT = START_TIMEOUT + 10 * SLOW   # a consumer group joins in about 3 s
ROUND_TRIPS = 20                               # per runtime, for the figures


# ---------------------------------------------------------------- kafkajs

def _pinned_version():
    return json.loads((INTEROP / "package.json").read_text())["dependencies"]["kafkajs"]


def _installed_version(modules):
    try:
        return json.loads((modules / "kafkajs" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="session")
def kafkajs_modules():
    """BUILD/interop/node_modules holding the pinned kafkajs: `npm ci` there
    from tests/interop's package.json and package-lock.json, unless it is
    already installed."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (tools/install-deps.sh installs it)")
    target = BUILD / "interop"
    modules = target / "node_modules"
    if _installed_version(modules) == _pinned_version():
        return modules
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(INTEROP / name, target / name)
    p = subprocess.run(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund",
                        "--loglevel=error"],
                       cwd=target, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"npm ci in {target} failed:\n{p.stdout}\n{p.stderr}"
    assert _installed_version(modules) == _pinned_version()
    return modules


class JsRuntime:
    """tests/interop/runtime.js under node, once it printed `ready`."""

    def __init__(self, tmp, modules, bootstrap, runtime, resources, heartbeat_ms):
        self.stderr_path = tmp / f"kafkajs-{runtime}-{id(self)}.stderr"
        self._err = open(self.stderr_path, "w")
        cmd = ["node", str(INTEROP / "runtime.js"), f"--brokers={bootstrap}",
               f"--runtime={runtime}", f"--heartbeat-ms={heartbeat_ms}"]
        cmd += [f"--resource={r}" for r in resources]
        env = dict(os.environ, NODE_PATH=str(modules))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, bufsize=1, env=env)
        _live["procs"].append(self.proc)
        self._q = queue.Queue()
        _reader_thread(self.proc.stdout, self._q)
        t0 = time.monotonic()
        line = _next_line(self._q, JS_START_TIMEOUT, "runtime.js ready", self.proc,
                          self.stderr_path)
        assert line == "ready", f"first line of runtime.js: {line!r}"
        self.start_s = time.monotonic() - t0

    def stderr(self):
        return Path(self.stderr_path).read_text(errors="replace")

    def stop(self):
        rc = _stop(self.proc, signal.SIGTERM, timeout=20 * SLOW)
        self._err.close()
        return rc


@pytest.fixture
def kafkajs(tmp_path, kafkajs_modules):
    """Factory: kafkajs(bootstrap, runtime, resources, heartbeat_ms=1000) ->
    JsRuntime. Teardown stops each and fails the test unless it exited 0."""
    made = []

    def make(bootstrap, runtime, resources, heartbeat_ms=1000):
        r = JsRuntime(tmp_path, kafkajs_modules, bootstrap, runtime, resources, heartbeat_ms)
        made.append(r)
        return r
    yield make
    bad = []
    for r in made:
        rc = r.stop()
        if rc != 0:
            bad.append(f"runtime.js exited {rc}" + _stderr_tail(r.stderr_path))
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------- helpers

def off_zero(*names):
    """NAMES, each checked to hash to a partition other than 0."""
    for n in names:
        assert java_partition(n) != 0, n
    return names


def wait_observed(path, want, timeout=15.0 * SLOW):
    """Waits for `observed` at PATH to read WANT, woken by poll() (POLLPRI, the
    sysfs convention) rather than by polling the file. Returns the time it
    read WANT (time.monotonic())."""
    fd = os.open(path, os.O_RDONLY)
    try:
        p = select.poll()
        p.register(fd, select.POLLPRI | select.POLLERR)
        deadline = time.monotonic() + timeout
        while True:
            if os.pread(fd, 64, 0).decode() == want + "\n":
                return time.monotonic()
            left = deadline - time.monotonic()
            assert left > 0, f"{path} never read {want!r} (last {os.pread(fd, 64, 0)!r})"
            p.poll(int(left * 1000))
    finally:
        os.close(fd)


def round_trip(res, verb, want):
    """Seconds from the write of VERB to `observed` reading WANT."""
    fd = os.open(res / "observed", os.O_RDONLY)
    os.read(fd, 64)                       # sysfs: read, then poll
    os.close(fd)
    t0 = time.monotonic()
    write_state(res / "state", verb + "\n")
    return wait_observed(res / "observed", want) - t0


def figures(name, **kw):
    print(f"\nFIGURES {name}: " + " ".join(f"{k}={v}" for k, v in kw.items()))


def summary_ms(samples):
    ms = sorted(s * 1000 for s in samples)
    return dict(n=len(ms), p50_ms=f"{statistics.median(ms):.1f}",
                p90_ms=f"{ms[int(0.9 * (len(ms) - 1))]:.1f}", max_ms=f"{ms[-1]:.1f}")


# ---------------------------------------------------------------- tests

def test_kafkajs_runtime_pause_resume_on_every_partition(broker, ctlfs, kafkajs):
    names = off_zero("svc", "ingest", "billing")
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d, "rt1", None)
    for n in names:
        os.mkdir(d.path("runtimes", "rt1", n))
    js = kafkajs(broker.bootstrap, "rt1", names, heartbeat_ms=500)
    for n in names:
        wait_until(lambda n=n: read(d.path("runtimes", "rt1", n, "observed")) == "running\n",
                   what=f"{n}: the runtime's initial report")

    svc = d.path("runtimes", "rt1", "svc")
    write_state(svc / "state", "pause\n")
    wait_observed(svc / "observed", "paused")
    st = status_dict(svc / "status")
    [sent] = command_lines(read(svc / "log"), "pause")[:1]
    pause_id = kv(sent)["id"]
    assert int(kv(sent)["partition"]) == java_partition("svc"), sent
    assert (st["desired"], st["observed"], st["reported"]) == ("paused",) * 3, st
    wait_until(lambda: status_dict(svc / "status")["pending"] == "-", what="pending -")
    st = status_dict(svc / "status")
    assert st["last_command"] == f"{pause_id} pause applied", st
    assert st["last_error"] == "-", st
    for n in names[1:]:
        assert read_word(d.path("runtimes", "rt1", n, "observed")) == "running"

    write_state(svc / "state", "resume\n")
    wait_observed(svc / "observed", "running")
    wait_until(lambda: status_dict(svc / "status")["last_command"].endswith(" resume applied"),
               what="resume applied")
    log = read(svc / "log")
    results = [(kv(ln)["verb"], kv(ln)["result"]) for ln in command_lines(log)]
    assert results == [("pause", "sent"), ("pause", "applied"),
                       ("resume", "sent"), ("resume", "applied")], log
    observed = [kv(ln) for ln in log.splitlines() if " observed " in ln]
    assert [o["state"] for o in observed][-2:] == ["paused", "running"], log
    assert {int(o["partition"]) for o in observed} == {java_partition("svc")}, log

    # The runtime read each command in the partition ctlfs keyed it to...
    applied = [ln for ln in js.stderr().splitlines() if " applied " in ln]
    assert len(applied) == 2, js.stderr()
    assert all(f" resource=svc " in ln and f" partition={java_partition('svc')} " in ln
               for ln in applied), applied
    assert f"id={pause_id} " in applied[0], applied
    # ... and its feedback, keyed by resource with kafkajs's default
    # partitioner, is where murmur2 puts it: never all on partition 0.
    by_partition = {p: kcat_consume(broker.bootstrap, "ctlfs.rt1.feedback", partition=p)
                    for p in range(PARTITIONS)}
    for p, msgs in by_partition.items():
        for m in msgs:
            assert java_partition(m["key"]) == p, (p, m)
            assert m["value"]["resource"] == m["key"], m
            assert m["headers"][:2] == ["ctlfs-version", "1"], m
    used = {p for p, msgs in by_partition.items() if msgs}
    assert used == {java_partition(n) for n in names} and 0 not in used, used
    answers = [m["value"] for m in by_partition[java_partition("svc")]
               if m["value"].get("command_id") == pause_id]
    assert [a["state"] for a in answers] == ["paused"], answers
    # ctlfs read those partitions: its positions name them
    rt = status_dict(d.path("runtimes", "rt1", "status"))
    read_from = {int(x.split(":")[0]) for x in rt["feedback_offset"].split()}
    assert read_from == used, rt
    assert (rt["resources"], rt["running"], rt["paused"]) == ("3", "3", "0"), rt
    # the metrics its feedback carries are kept per resource (seed 003)
    wait_until(lambda: read(svc / "metrics") == "commands_applied 2\n",
               what="svc's commands_applied metric")
    assert read(d.path("runtimes", "rt1", names[1], "metrics")) == "commands_applied 0\n"
    assert 'ctlfs_reported_metric{runtime="rt1",resource="svc",name="commands_applied"} 2' \
        in read(d.path("metrics"))


def test_round_trip_kafkajs_beside_ctlfs_agent(broker, ctlfs, kafkajs, agent):
    """Write to `observed`, alternately pause and resume, through each runtime
    in turn on one mount: kafkajs (rt1) and ctlfs-agent (rt2)."""
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = {"kafkajs": declare(d, "rt1", off_zero("svc")[0]),
           "ctlfs-agent": declare(d, "rt2", "svc")}
    js = kafkajs(broker.bootstrap, "rt1", ["svc"], heartbeat_ms=1000)
    agent(broker.bootstrap, runtime="rt2", resources=("svc",), heartbeat_ms=1000)
    for r in res.values():
        wait_observed(r / "observed", "running")

    samples = {k: [] for k in res}
    for i in range(ROUND_TRIPS):
        verb, want = ("pause", "paused") if i % 2 == 0 else ("resume", "running")
        for who, r in res.items():
            samples[who].append(round_trip(r, verb, want))
    for who, r in res.items():
        wait_until(lambda r=r: status_dict(r / "status")["last_command"].endswith(
            " resume applied"), what=f"{who}: the last resume applied")
        assert len(command_lines(read(r / "log"))) == 2 * ROUND_TRIPS
        figures(f"interop round trip {who}", **summary_ms(samples[who]))
    figures("interop kafkajs start", ready_s=f"{js.start_s:.2f}")
    # both runtimes keyed their feedback alike: murmur2's partition, not 0
    for rt in ("rt1", "rt2"):
        msgs = kcat_consume(broker.bootstrap, f"ctlfs.{rt}.feedback")
        assert msgs and {m["partition"] for m in msgs} == {java_partition("svc")}, (rt, msgs[:3])
    # the comparison is the point of the figures; a bound only catches a runtime
    # that sat out whole fetch waits or heartbeats
    assert statistics.median(samples["kafkajs"]) < 1.0 * SLOW, samples["kafkajs"]


@pytest.mark.parametrize("mode", ["durable", "queued"])
def test_a_burst_from_sixteen_shells_lands_where_the_log_says(broker, ctlfs, kafkajs, mode):
    """Sixteen shells writing pause and resume to one resource at once (up to
    16 commands in flight to the broker; in queued mode through the outbox):
    every command sent is on the topic exactly once, at the partition and
    offset its log line names; the kafkajs runtime applies them in that
    order, so the last one is the one `status` names and observed ends where
    desired says."""
    writers, rounds = 16, 10
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--write-mode={mode}")
    svc = declare(d, "rt1", off_zero("svc")[0])
    js = kafkajs(broker.bootstrap, "rt1", ["svc"], heartbeat_ms=1000)
    wait_observed(svc / "observed", "running")
    shells = [subprocess.Popen(["sh", "-c", f"for i in $(seq {rounds}); do "
                                "echo pause > state && echo resume > state || exit 1; done"],
                               cwd=svc, stderr=subprocess.PIPE, text=True)
              for _ in range(writers)]
    for p in shells:
        _, err = p.communicate(timeout=60 * SLOW)
        assert p.returncode == 0, err

    def placed():
        # the line of the broker's acknowledgement names the place: `sent`,
        # or `applied` when the runtime's answer came first
        return {kv(ln)["id"]: (int(kv(ln)["partition"]), int(kv(ln)["offset"]))
                for ln in command_lines(read(svc / "log")) if "offset" in kv(ln)}
    # a write of the state desired and observed already is answered, not sent
    lines = command_lines(read(svc / "log"))
    unchanged = [ln for ln in lines if kv(ln)["result"] == "unchanged"]
    issued = {kv(ln)["id"] for ln in lines} - {"-"}
    assert len(issued) + len(unchanged) == writers * rounds * 2, lines[-5:]
    wait_until(lambda: set(placed()) == issued, what="every command acknowledged")
    sent = placed()
    on_topic = {m["value"]["id"]: (m["partition"], m["offset"])
                for m in kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")}
    assert on_topic == sent
    last_id = max(sent, key=lambda i: sent[i][1])
    st = status_dict(svc / "status")
    assert st["last_command"].split()[0] == last_id, (st, sent[last_id])
    desired = st["desired"]
    wait_until(lambda: read_word(svc / "observed") == desired
               and status_dict(svc / "status")["pending"] == "-",
               what=f"observed {desired}, nothing pending")
    applied = re.findall(r" applied id=(\S+) ", js.stderr())
    assert applied == sorted(sent, key=lambda i: sent[i][1])
