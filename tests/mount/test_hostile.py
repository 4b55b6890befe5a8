"""Hostile feedback: whatever arrives on a runtime's feedback topic is counted,
logged, skipped when malformed, never stops the consumer and never creates a
bad name. Produced with kcat onto the real broker, read back through the mount."""

import os
import re
import subprocess
import tempfile
import time

from conftest import RUNTIME_FILES, SLOW, kcat_produce, read, wait_until

TS = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def rejected_count(d):
    m = re.search(r"^ctlfs_feedback_rejected_total (\d+)$", read(d.path("metrics")), re.M)
    assert m, "no ctlfs_feedback_rejected_total in metrics"
    return int(m.group(1))


def produce_raw(bootstrap, topic, key, payload: bytes):
    """One message of arbitrary bytes (no newline), up to 20 MB: kcat reads
    it from a file."""
    assert b"\n" not in payload
    with tempfile.NamedTemporaryFile() as f:
        f.write(payload)
        f.flush()
        p = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", "0", "-k", key,
                            "-X", "message.max.bytes=20000000", "-l", f.name],
                           capture_output=True, timeout=60 * SLOW)
        assert p.returncode == 0, p.stderr


# (key, value) pairs: every one of them must be rejected
HOSTILE = [
    ("junk", b"this is not JSON"),
    ("array", b'["resource", "svc"]'),
    ("types", b'{"resource": 5, "state": "running"}'),
    ("types2", b'{"resource": "t2", "state": ["running"]}'),
    ("nostate", b'{"resource": "nostate"}'),
    ("badstate", b'{"resource": "badstate", "state": "exploded"}'),
    ("slash", b'{"resource": "a/b", "state": "running"}'),
    ("dotdot", b'{"resource": "..", "state": "running"}'),
    ("dot", b'{"resource": ".", "state": "running"}'),
    ("empty", b'{"resource": "", "state": "running"}'),
    ("nul", b'{"resource": "a\\u0000b", "state": "running"}'),
    ("long", b'{"resource": "' + b"x" * 129 + b'", "state": "running"}'),
    ("utf8", b'{"resource": "caf\xc3", "state": "running"}'),
    ("hugeint", b'{"resource": "h1", "state": "running", "ts": 1' + b"0" * 400 + b"}"),
    ("deep", b'{"resource": "deep", "state": "running", "x": ' + b"[" * 100000
     + b"]" * 100000 + b"}"),
    ("dupkey", b'{"resource": "d1", "resource": "d2", "state": "running"}'),
    ("status", b'{"resource": "status", "state": "running"}'),
    ("big", b'{"resource": "big", "state": "running", "message": "' + b"m" * 70000 + b'"}'),
    ("twomb", b'{"resource": "twomb", "state": "running", "message": "'
     + b"m" * (2 * 1024 * 1024) + b'"}'),
]


def test_hostile_feedback_is_counted_logged_skipped(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    os.mkdir(d.path("runtimes", "rt1"))
    topic = "ctlfs.rt1.feedback"
    before = rejected_count(d)
    for key, value in HOSTILE:
        produce_raw(broker.bootstrap, topic, key, value)
    # a well-formed report after all of them: once it shows, every message
    # before it in the partition has been handled
    kcat_produce(broker.bootstrap, topic, "good",
                 {"resource": "good", "state": "paused", "ts": TS,
                  "message": "é" * 2000, "unknown_field": {"x": 1}})
    rt = d.path("runtimes", "rt1")
    wait_until(lambda: "good" in os.listdir(rt) and read(rt / "good" / "observed") == "paused\n",
               timeout=60 * SLOW, what="runtimes/rt1/good paused from feedback")
    assert sorted(os.listdir(rt)) == sorted(RUNTIME_FILES + ["good"])
    assert rejected_count(d) - before == len(HOSTILE)
    log = read(rt / "log")
    lines = [ln for ln in log.splitlines() if " feedback-rejected " in ln]
    assert len(lines) == len(HOSTILE), "\n".join(lines)
    assert all(" reason=" in ln for ln in lines)
    assert any("2097" in ln and "limit" in ln for ln in lines), "2 MB message not named"
    # the good report's long message is kept in the log, cut to a bounded length
    [obs] = [ln for ln in read(rt / "good" / "log").splitlines() if " observed " in ln]
    # (the log escapes bytes outside printable ASCII: é is \303\251)
    assert obs.count("\\303\\251") == 512, obs[:300]
    # 512 characters of at most 4 bytes, each escaped as 4 characters, plus the rest
    assert max(len(ln) for ln in log.splitlines()) < 512 * 16 + 1024


def test_a_10mb_message_is_rejected_and_consumption_goes_on(broker, ctlfs):
    """librdkafka's mock broker does not serve the message after a 10 MB one in
    the same partition (kcat cannot read it either; a real broker refuses
    messages over 1 MB by default), so consumption is shown going on in another
    runtime's topic, which the same consumer reads."""
    d = ctlfs(f"--brokers={broker.bootstrap}")
    for rt in ("rt1", "rt2"):
        os.mkdir(d.path("runtimes", rt))
    produce_raw(broker.bootstrap, "ctlfs.rt1.feedback", "tenmb",
                b'{"resource": "tenmb", "state": "running", "message": "'
                + b"m" * (10 * 1024 * 1024) + b'"}')
    wait_until(lambda: " feedback-rejected " in read(d.path("runtimes", "rt1", "log")),
               timeout=60 * SLOW, what="the 10 MB message rejected")
    [line] = [ln for ln in read(d.path("runtimes", "rt1", "log")).splitlines()
              if " feedback-rejected " in ln]
    assert "10485" in line and "limit" in line and len(line) < 300, line
    assert rejected_count(d) == 1
    kcat_produce(broker.bootstrap, "ctlfs.rt2.feedback", "svc",
                 {"resource": "svc", "state": "paused", "ts": TS})
    wait_until(lambda: read(d.path("runtimes", "rt2", "svc", "observed")) == "paused\n",
               what="rt2's feedback applied after rt1's 10 MB message")
    assert sorted(os.listdir(d.path("runtimes", "rt1"))) == RUNTIME_FILES


def test_unknown_resources_by_the_thousand_are_capped(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}", "--discover-max=1000")
    os.mkdir(d.path("runtimes", "rt1"))
    os.mkdir(d.path("runtimes", "rt1", "declared"))
    n = 3000
    lines = "\n".join(f'r{i}\t{{"resource":"r{i}","state":"running","ts":"{TS}"}}'
                      for i in range(n))
    p = subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "ctlfs.rt1.feedback",
                        "-p", "0", "-K", "\t"], input=lines + "\n", capture_output=True,
                       text=True, timeout=60 * SLOW)
    assert p.returncode == 0, p.stderr
    kcat_produce(broker.bootstrap, "ctlfs.rt1.feedback", "declared",
                 {"resource": "declared", "state": "paused", "ts": TS})
    rt = d.path("runtimes", "rt1")
    wait_until(lambda: read(rt / "declared" / "observed") == "paused\n", timeout=60 * SLOW,
               what="the declared resource's report after 3000 unknown ones")
    names = set(os.listdir(rt)) - set(RUNTIME_FILES)
    assert len(names) == 1000                      # the cap, counting the declared one
    assert "declared" in names
    assert all(re.fullmatch(r"r\d+", x) for x in names - {"declared"})
    assert rejected_count(d) == n - 999
    # a declared resource still takes commands and the consumer is alive
    assert read(rt / "status").count("\n") > 5
