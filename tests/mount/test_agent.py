"""ctlfs-agent as a Kafka client, without a mount: every partition of its
command topic read, its position in each kept across a restart, its feedback
keyed by resource in murmur2's partition, and its partitions found once a
broker that was down at its start is back. Commands are produced with kcat,
an independent client, to the partition each resource's key hashes to."""

import json
import subprocess
import re
import threading
import time
import uuid
from pathlib import Path

from conftest import (AGENT_BIN, BROKER_BIN, EXIT_TIMEOUT, PARTITIONS, START_TIMEOUT,
                      java_partition, kcat_consume, kcat_produce, wait_until)

# one resource per partition of the 4 (java_partition: a 0, d 1, svc 2, f 3)
BY_PARTITION = ["a", "d", "svc", "f"]
APPLIED = re.compile(r"\bapplied id=(\S+) resource=(\S+) verb=(\S+)")


def command(resource, verb):
    return {"id": str(uuid.uuid4()), "runtime": "rt1", "resource": resource, "verb": verb,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "issued_by": {"uid": 0, "user": "root", "pid": 1, "comm": "kcat", "host": "h"}}


def send(bootstrap, resource, verb):
    """A command to RESOURCE in its murmur2 partition; returns its id."""
    cmd = command(resource, verb)
    kcat_produce(bootstrap, "ctlfs.rt1.commands", resource, json.dumps(cmd),
                 partition=java_partition(resource))
    return cmd["id"]


def applied(a):
    """[(id, resource, verb)] the agent applied, in order."""
    text = Path(a.stderr_path).read_text(errors="replace")
    return [m.groups() for m in APPLIED.finditer(text)]


def test_every_partition_read_and_each_position_kept(broker, agent):
    assert [java_partition(r) for r in BY_PARTITION] == list(range(PARTITIONS))
    a = agent(broker.bootstrap, resources=BY_PARTITION)
    ids = {r: send(broker.bootstrap, r, "pause") for r in BY_PARTITION}
    wait_until(lambda: len(applied(a)) == PARTITIONS, what="a command from each partition")
    assert {(i, r, "pause") for r, i in ids.items()} == set(applied(a))

    # each answer is where murmur2 puts its resource's key
    answers = [m for m in kcat_consume(broker.bootstrap, "ctlfs.rt1.feedback")
               if m["value"].get("command_id")]
    assert {m["value"]["command_id"] for m in answers} == set(ids.values())
    for m in kcat_consume(broker.bootstrap, "ctlfs.rt1.feedback"):
        assert m["partition"] == java_partition(m["key"]), m
    assert {m["partition"] for m in answers} == set(range(PARTITIONS))

    # a restart goes on from its position in each partition: nothing applied
    # twice. A resume behind the pauses in each partition shows it read them
    # through (one partition is read in order).
    assert a.stop() == 0
    later = send(broker.bootstrap, "f", "resume")
    b = agent(broker.bootstrap, resources=BY_PARTITION)
    marks = {(send(broker.bootstrap, r, "resume"), r, "resume") for r in BY_PARTITION[:3]}
    want = marks | {(later, "f", "resume")}
    wait_until(lambda: len(applied(b)) >= len(want), what="the four resumes")
    assert set(applied(b)) == want and len(applied(b)) == len(want), applied(b)


def test_partitions_found_once_the_broker_is_back(broker, agent):
    broker.fault("down 1")
    started = {}
    t = threading.Thread(target=lambda: started.setdefault(
        "agent", agent(broker.bootstrap, resources=["svc"])))
    t.start()
    try:
        # the consumer's first lookups of the command topic fail: librdkafka
        # tells its error callback, which logs it
        wait_until(lambda: any(p.name.startswith("agent-rt1")
                               and "#consumer" in p.read_text(errors="replace")
                               for p in Path(broker.stderr_path).parent.iterdir()),
                   timeout=30, what="the agent's consumer meeting the broker down")
    finally:
        broker.fault("up 1")
        t.join(30)
    a = started["agent"]          # "ready": the 4 partitions assigned
    text = Path(a.stderr_path).read_text()
    assert f"consuming ctlfs.rt1.commands partitions={PARTITIONS}" in text, text
    i = send(broker.bootstrap, "svc", "pause")
    wait_until(lambda: applied(a) == [(i, "svc", "pause")], what="svc paused")


def threads_of(pid):
    """Each thread's name, wait channel and kernel stack, to say where a
    process that does not end is stuck."""
    out = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        def get(name):
            try:
                return (task / name).read_text().strip()
            except OSError as e:
                return f"({e.strerror})"
        out.append(f"{task.name} {get('comm')} wchan={get('wchan')}\n{get('stack')}")
    return "\n".join(out)


def test_sigterm_ends_the_agent_with_its_broker_gone(broker, agent):
    """The README's order: the agent backgrounded, then the mount (and its
    embedded broker) gone, then `kill %1`: the agent ends, status 0, without
    waiting on a broker that will not answer."""
    a = agent(broker.bootstrap, heartbeat_ms=100)
    i = send(broker.bootstrap, "svc", "pause")
    wait_until(lambda: applied(a) == [(i, "svc", "pause")], what="svc paused")
    assert broker.close() == 0
    # heartbeats now queue for a broker that is gone
    start = time.monotonic()
    a.proc.terminate()
    try:
        rc = a.proc.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError("the agent did not end after SIGTERM; its threads:\n"
                             + threads_of(a.proc.pid)) from None
    took = time.monotonic() - start
    a.stopped = True
    assert rc == 0, Path(a.stderr_path).read_text()
    text = Path(a.stderr_path).read_text()
    assert "signal: stopping" in text and "stopped" in text, text
    print(f"agent exit after SIGTERM with the broker gone: {took * 1000:.0f} ms")


def test_quiet_and_log_file_keep_the_terminal_clean(broker, tmp_path):
    """Backgrounded with `&`, the agent must not write over the terminal:
    --quiet prints nothing (not even "ready") unless something is wrong;
    --log-file sends what it would print to a file."""
    log = tmp_path / "agent.log"
    procs = [subprocess.Popen([str(AGENT_BIN), f"--brokers={broker.bootstrap}", "--runtime=rt1",
                               f"--resource={r}", *extra],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for r, extra in (("a", ["--quiet"]), ("d", [f"--log-file={log}"]))]
    try:
        ia, idd = send(broker.bootstrap, "a", "pause"), send(broker.bootstrap, "d", "pause")
        # both applied, as their feedback says (the quiet one says nothing itself)
        def reported():
            return {m["value"].get("command_id") for m in
                    kcat_consume(broker.bootstrap, "ctlfs.rt1.feedback") if m["value"]}
        wait_until(lambda: {ia, idd} <= reported(), what="both commands applied")
        wait_until(lambda: f"applied id={idd}" in log.read_text(), what="the log file's line")
    finally:
        for p in procs:
            p.terminate()
        outs = [p.communicate(timeout=EXIT_TIMEOUT) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    (q_out, q_err), (l_out, l_err) = outs
    assert (q_out, q_err) == ("", ""), (q_out, q_err)
    assert (l_out, l_err) == ("ready\n", ""), (l_out, l_err)
    assert "stopped" in log.read_text()


def test_broker_in_the_background_with_no_stdin():
    """`ctlfs-broker --no-stdin &`: stdin at its end (a script's `&` gives
    /dev/null) does not end it; it serves until SIGTERM, then exits 0."""
    p = subprocess.Popen([str(BROKER_BIN), "--no-stdin"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("bootstrap="), line
        bootstrap = line.strip().split("=", 1)[1]
        kcat_produce(bootstrap, "ctlfs.bg.feedback", "k", "{}")
        assert [m["key"] for m in kcat_consume(bootstrap, "ctlfs.bg.feedback")] == ["k"]
        assert p.poll() is None
    finally:
        p.terminate()
        out, err = p.communicate(timeout=EXIT_TIMEOUT)
    assert p.returncode == 0, err
