"""`metrics` on real mounts: read with a real Prometheus parser
(prometheus_client.parser, Debian's python3-prometheus-client), driven with
real traffic (durable and queued writes, refused writes, malformed feedback
via kcat, an agent stopped and restarted, the broker taken down), and
checked number by number. Timing values are never asserted: only counts.
Also the shipped exporter for the node exporter's textfile collector
(tools/ctlfs-metrics-export) against a real mount."""

import errno
import math
import os
import stat
import subprocess
import time

import pytest

from conftest import (REPO, SLOW, declare, kcat_produce, read, status_dict, wait_until,
                      write_state)

parser = pytest.importorskip("prometheus_client.parser",
                             reason="python3-prometheus-client (tools/install-deps.sh)")

FAMILIES = [            # every family, in the order `metrics` prints them (by name)
    ("ctlfs_broker_up", "gauge"),
    ("ctlfs_build_info", "gauge"),
    ("ctlfs_commands_total", "counter"),
    ("ctlfs_drift_objects", "gauge"),
    ("ctlfs_feedback_discovered_total", "counter"),
    ("ctlfs_feedback_messages_total", "counter"),
    ("ctlfs_feedback_rejected_total", "counter"),
    ("ctlfs_messages_unused_total", "counter"),
    ("ctlfs_objects", "gauge"),
    ("ctlfs_outbox_commands", "gauge"),
    ("ctlfs_pending_commands", "gauge"),
    ("ctlfs_refused_total", "counter"),
    ("ctlfs_rejected_writes_total", "counter"),
    ("ctlfs_reported_metric", "gauge"),
    ("ctlfs_reported_metric_series_dropped", "gauge"),
    ("ctlfs_reported_metrics_rejected_total", "counter"),
    ("ctlfs_stale_objects", "gauge"),
    ("ctlfs_start_time_seconds", "gauge"),
    ("ctlfs_write_duration_seconds", "histogram"),
]
HIST = "ctlfs_write_duration_seconds"
EXPORT = REPO / "tools" / "ctlfs-metrics-export"
DELIVERY_TIMEOUT = 30.0 * SLOW


class Scrape:
    """One read of `metrics`, checked for the format and parsed."""

    def __init__(self, text):
        self.text = text
        check_format(text)
        self.families = list(parser.text_string_to_metric_families(text))
        self.samples = {}
        for fam in self.families:
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                assert key not in self.samples, f"sample twice: {key}"
                self.samples[key] = s.value

    def get(self, name, **labels):
        """The value of sample NAME with exactly LABELS; 0 for a labelled
        counter series not yet printed (ctlfs_commands_total prints a
        verb/result pair once it happened)."""
        key = (name, tuple(sorted(labels.items())))
        if key not in self.samples and name == "ctlfs_commands_total":
            return 0
        assert key in self.samples, f"no sample {name}{labels} in:\n{self.text}"
        return self.samples[key]

    def histogram(self, **labels):
        """[(le, cumulative count)], sum, count of the write duration series."""
        buckets = []
        for fam in self.families:
            if fam.name != HIST:
                continue
            assert fam.type == "histogram"
            for s in fam.samples:
                rest = {k: v for k, v in s.labels.items() if k != "le"}
                if s.name == HIST + "_bucket" and rest == labels:
                    buckets.append((float(s.labels["le"]), s.value))
        return buckets, self.get(HIST + "_sum", **labels), self.get(HIST + "_count", **labels)


def check_format(text):
    """Every family has # HELP and # TYPE before its samples, families come in
    name order and each once, every sample belongs to the family above it."""
    assert text.endswith("\n"), "metrics does not end with a newline"
    helped, typed = [], []
    current = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert len(line.split(" ", 3)) == 4 and line.split(" ", 3)[3], f"empty HELP: {line}"
            helped.append(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert helped and helped[-1] == name, f"# TYPE {name} without its # HELP first"
            typed.append((name, kind))
            current = (name, kind)
        else:
            assert not line.startswith("#") and line, f"unexpected line {line!r}"
            assert current, f"sample before any # TYPE: {line!r}"
            sample = line.split("{", 1)[0].split(" ", 1)[0]
            name, kind = current
            allowed = {name} if kind != "histogram" else {
                name + "_bucket", name + "_sum", name + "_count"}
            assert sample in allowed, f"{sample} under # TYPE {name} {kind}"
    assert typed == FAMILIES, f"families differ:\n{typed}"


def check_histogram(m, mode, ok, error):
    """Both series of MODE: cumulative buckets, ascending bounds ending in
    +Inf, +Inf == _count == the number of writes answered."""
    for result, want in (("ok", ok), ("error", error)):
        buckets, total, count = m.histogram(mode=mode, result=result)
        assert len(buckets) >= 10, buckets
        bounds = [le for le, _ in buckets]
        assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), bounds
        assert math.isinf(bounds[-1]), "no +Inf bucket"
        assert bounds[0] <= 0.0005 and 5 < bounds[-2] <= 10, f"bounds {bounds}"
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), f"{result} buckets not cumulative: {counts}"
        assert counts[-1] == count == want, \
            f"{mode}/{result}: +Inf {counts[-1]}, _count {count}, {want} writes answered"
        assert total >= 0 and (total > 0) == (count > 0), f"_sum {total} for {count} writes"
    # nothing is observed under the other mode
    other = "queued" if mode == "durable" else "durable"
    assert not [k for k in m.samples if ("mode", other) in k[1]], f"series for mode={other}"


def scrape(d):
    return Scrape(read(d.path("metrics")))


def value(d, name, **labels):
    return scrape(d).get(name, **labels)


def write_errno(path, data, offset=0):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data.encode(), offset)
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)
    return 0


# ---------------------------------------------------------------- format

def test_metrics_parse_and_start_at_zero(broker, ctlfs):
    before = time.time()
    d = ctlfs(f"--brokers={broker.bootstrap}")
    after = time.time()
    m = scrape(d)
    version = status_dict(d.path("status"))["version"]
    assert m.get("ctlfs_build_info", version=version) == 1
    assert m.get("ctlfs_broker_up") == 1
    assert before - 1 <= m.get("ctlfs_start_time_seconds") <= after + 1
    for name in ("ctlfs_feedback_discovered_total", "ctlfs_feedback_messages_total",
                 "ctlfs_feedback_rejected_total", "ctlfs_rejected_writes_total",
                 "ctlfs_outbox_commands", "ctlfs_pending_commands", "ctlfs_stale_objects"):
        assert m.get(name) == 0, name
    for action in ("command", "declare", "read"):
        assert m.get("ctlfs_refused_total", action=action) == 0
    assert m.get("ctlfs_objects", kind="runtime") == m.get("ctlfs_objects", kind="resource") == 0
    assert not [k for k in m.samples if k[0] == "ctlfs_commands_total"]
    check_histogram(m, "durable", ok=0, error=0)
    # series of a family in label order
    for fam in m.families:
        if fam.type != "histogram":
            keys = [tuple(s.labels.values()) for s in fam.samples]
            assert keys == sorted(keys), f"{fam.name} not sorted: {keys}"
    # nothing happened: the same bytes again (deterministic output)
    assert read(d.path("metrics")) == m.text


# ---------------------------------------------------------------- durable traffic

def test_metrics_follow_durable_traffic(broker, ctlfs, agent):
    ack_ms = int(1000 * SLOW)
    stale_ms = int(1500 * SLOW)
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--ack-timeout-ms={ack_ms}",
              f"--stale-after-ms={stale_ms}")
    res = declare(d)                  # rt1/svc: no agent, its commands stay `sent`
    state = res / "state"
    m = scrape(d)
    assert (m.get("ctlfs_objects", kind="runtime"), m.get("ctlfs_objects", kind="resource")) == (1, 1)

    # durable writes: each counted once as sent, each timed as ok
    for _ in range(3):
        assert write_state(state, "pause\n") == 6
        assert write_state(state, "resume\n") == 7
    # refused writes: EINVAL (unknown verb, offset), EOPNOTSUPP (stop on kafka)
    assert write_errno(state, "bogus\n") == errno.EINVAL
    assert write_errno(state, "pause\n", offset=1) == errno.EINVAL
    assert write_errno(state, "stop\n") == errno.EOPNOTSUPP
    m = scrape(d)
    assert m.get("ctlfs_commands_total", verb="pause", result="sent") == 3
    assert m.get("ctlfs_commands_total", verb="resume", result="sent") == 3
    assert [k for k in m.samples if k[0] == "ctlfs_commands_total"] == [
        ("ctlfs_commands_total", (("result", "sent"), ("verb", "pause"))),
        ("ctlfs_commands_total", (("result", "sent"), ("verb", "resume")))]
    assert m.get("ctlfs_rejected_writes_total") == 3
    assert m.get("ctlfs_refused_total", action="command") == 0
    assert m.get("ctlfs_pending_commands") == 0
    assert m.get("ctlfs_outbox_commands") == 0
    check_histogram(m, "durable", ok=6, error=3)

    # malformed feedback (kcat on the real broker): consumed, rejected
    kcat_produce(broker.bootstrap, "ctlfs.rt1.feedback", "svc", "{this is not JSON")
    wait_until(lambda: value(d, "ctlfs_feedback_rejected_total") == 1,
               what="ctlfs_feedback_rejected_total == 1")
    m = scrape(d)
    assert m.get("ctlfs_feedback_messages_total") == 1
    assert m.get("ctlfs_feedback_discovered_total") == 0

    # an agent reporting on a resource ctlfs does not know: discovered
    os.mkdir(d.path("runtimes", "rt2"))
    a = agent(broker.bootstrap, runtime="rt2", resources=("disc",), heartbeat_ms=200)
    disc = d.path("runtimes", "rt2", "disc")
    wait_until(lambda: read(disc / "observed") == "running\n", what="rt2/disc observed running")
    m = scrape(d)
    assert m.get("ctlfs_feedback_discovered_total") == 1
    assert m.get("ctlfs_feedback_messages_total") >= 2
    assert m.get("ctlfs_feedback_rejected_total") == 1
    assert (m.get("ctlfs_objects", kind="runtime"), m.get("ctlfs_objects", kind="resource")) == (2, 2)
    assert m.get("ctlfs_stale_objects") == 0

    # the agent stops: its resource goes stale, and only it
    a.stop()
    wait_until(lambda: read(disc / "observed") == "stale\n", what="rt2/disc observed stale")
    assert value(d, "ctlfs_stale_objects") == 1
    assert read(res / "observed") == "unknown\n"       # never reported: not stale
    # it comes back: fresh again
    agent(broker.bootstrap, runtime="rt2", resources=("disc",), heartbeat_ms=200)
    wait_until(lambda: read(disc / "observed") == "running\n", what="rt2/disc running again")
    assert value(d, "ctlfs_stale_objects") == 0
    assert value(d, "ctlfs_feedback_discovered_total") == 1     # known now

    # the broker goes down: the link says so, a durable write times out
    broker.fault("down 1")
    wait_until(lambda: value(d, "ctlfs_broker_up") == 0, timeout=DELIVERY_TIMEOUT,
               what="ctlfs_broker_up == 0")
    assert write_errno(state, "pause\n") == errno.ETIMEDOUT
    m = scrape(d)
    assert m.get("ctlfs_commands_total", verb="pause", result="failed") == 1
    assert m.get("ctlfs_commands_total", verb="pause", result="sent") == 3
    assert m.get("ctlfs_pending_commands") == 0
    assert m.get("ctlfs_outbox_commands") == 0          # durable mode has no outbox
    check_histogram(m, "durable", ok=6, error=4)
    broker.fault("up 1")
    wait_until(lambda: value(d, "ctlfs_broker_up") == 1, timeout=DELIVERY_TIMEOUT,
               what="ctlfs_broker_up == 1")
    assert write_state(state, "pause\n") == 6
    m = scrape(d)
    assert m.get("ctlfs_commands_total", verb="pause", result="sent") == 4
    check_histogram(m, "durable", ok=7, error=4)


# ---------------------------------------------------------------- queued: the outbox

def test_metrics_outbox_in_queued_mode(broker, ctlfs):
    args = [f"--brokers={broker.bootstrap}", "--write-mode=queued"]
    d = ctlfs(*args)
    state = declare(d) / "state"
    assert write_state(state, "pause\n") == 6
    wait_until(lambda: value(d, "ctlfs_commands_total", verb="pause", result="sent") == 1,
               timeout=DELIVERY_TIMEOUT, what="the first queued command sent")
    m = scrape(d)
    assert m.get("ctlfs_outbox_commands") == 0
    check_histogram(m, "queued", ok=1, error=0)

    broker.fault("down 1")
    wait_until(lambda: value(d, "ctlfs_broker_up") == 0, timeout=DELIVERY_TIMEOUT,
               what="ctlfs_broker_up == 0")
    for i, verb in enumerate(["resume\n", "pause\n", "resume\n"]):
        assert write_state(state, verb) == len(verb)
        # the write returned: its command is stored, and the broker is down
        assert value(d, "ctlfs_outbox_commands") == i + 1
    assert write_errno(state, "bogus\n") == errno.EINVAL     # refused: never in the outbox
    m = scrape(d)
    assert m.get("ctlfs_outbox_commands") == 3
    assert m.get("ctlfs_pending_commands") == 3
    assert m.get("ctlfs_commands_total", verb="resume", result="sent") == 0
    check_histogram(m, "queued", ok=4, error=1)

    # across a restart the outbox is counted from the store
    d.stop()
    d = ctlfs(*args, db=d.db, mnt=d.mnt)
    m = scrape(d)
    assert m.get("ctlfs_outbox_commands") == 3
    assert m.get("ctlfs_pending_commands") == 3
    check_histogram(m, "queued", ok=0, error=0)            # counters start at 0
    # (a daemon started while its broker is down may not reconnect once it is
    # up again: bring the broker back first, as test_persistence does)
    d.stop()
    broker.fault("up 1")
    d = ctlfs(*args, db=d.db, mnt=d.mnt)
    wait_until(lambda: value(d, "ctlfs_outbox_commands") == 0, timeout=DELIVERY_TIMEOUT,
               what="ctlfs_outbox_commands back to 0")
    m = scrape(d)
    assert m.get("ctlfs_broker_up") == 1
    assert m.get("ctlfs_pending_commands") == 0
    assert m.get("ctlfs_commands_total", verb="resume", result="sent") == 2
    assert m.get("ctlfs_commands_total", verb="pause", result="sent") == 1


# ---------------------------------------------------------------- the textfile exporter

def test_metrics_export_for_the_textfile_collector(broker, ctlfs, tmp_path):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    outdir = tmp_path / "node-exporter"
    outdir.mkdir()
    prom = outdir / "ctlfs.prom"
    prom.write_text("old\n")
    p = subprocess.run([str(EXPORT), str(d.path("metrics")), str(prom)],
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert p.returncode == 0, p.stderr
    assert os.listdir(outdir) == ["ctlfs.prom"], "a temporary file was left behind"
    assert stat.S_IMODE(os.stat(prom).st_mode) == 0o644   # the prometheus user reads it
    exported = Scrape(prom.read_text())
    assert exported.text == read(d.path("metrics"))       # quiet daemon: the same bytes
    assert exported.get("ctlfs_objects", kind="resource") == 1

    # ctlfs gone: no stale numbers left for the collector, and an error
    d.stop()
    p = subprocess.run([str(EXPORT), str(d.path("metrics")), str(prom)],
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert p.returncode != 0
    assert "ctlfs-metrics-export" in p.stderr, p.stderr
    assert os.listdir(outdir) == [], os.listdir(outdir)
