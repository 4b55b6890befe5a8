"""Seed 003 (CDAP's runtime monitor) on real mounts: the metrics a runtime's
feedback carries are kept per resource (the `metrics` file, the root `metrics`
exposition, the SQLite file, across a restart), bounded and refused with a
reason; and `kill`, CDAP's forceful stop, for lifecycle runtimes (flows).

Feedback is produced with kcat, an independent Kafka client, in the message
format of docs/manual.md; the flows are driven by the real agent."""

import errno
import os
import signal
import sqlite3
import subprocess

import pytest

from conftest import (SLOW, command_lines, issued_id, kcat_consume, kcat_produce, kv, read,
                      read_word, status_dict, wait_until, write_state)
from test_watch import InotifyWatch


def _report(broker, resource, metrics, runtime="rt1", state="running"):
    kcat_produce(broker.bootstrap, f"ctlfs.{runtime}.feedback", resource,
                 {"resource": resource, "state": state, "metrics": metrics})


def _series(d):
    """{(runtime, resource, name): value} from the root `metrics` file."""
    out = {}
    for line in read(d.path("metrics")).splitlines():
        if line.startswith("ctlfs_reported_metric{"):
            labels, _, value = line[len("ctlfs_reported_metric{"):].rpartition("} ")
            lab = dict(part.split("=", 1) for part in labels.split(","))
            out[tuple(lab[k].strip('"') for k in ("runtime", "resource", "name"))] = value
    return out


def _gauge(d, name):
    for line in read(d.path("metrics")).splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ")[1])
    raise AssertionError(f"{name} not in metrics")


def _stored(db, resource):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT s.name, s.value FROM settings s JOIN objects o"
                           " ON o.id = s.object_id WHERE o.name = ? AND s.name LIKE 'metric.%'",
                           (resource,)).fetchall()
    finally:
        con.close()
    return dict(rows)


def _declare(d, runtime="rt1", *resources):
    os.mkdir(d.path("runtimes", runtime))
    for r in resources:
        os.mkdir(d.path("runtimes", runtime, r))


# ---------------------------------------------------------------- metrics

def test_feedback_metrics_are_kept_shown_exported_and_stored(broker, ctlfs):
    args = (f"--brokers={broker.bootstrap}",)
    d = ctlfs(*args)
    _declare(d, "rt1", "svc")
    svc = d.path("runtimes", "rt1", "svc")
    assert read(svc / "metrics") == ""      # nothing reported yet

    watch = InotifyWatch(svc / "metrics")
    try:
        _report(broker, "svc", {"records_in": 424242, "lag.ms": 1.5})
        watch.wait_for(svc / "metrics", lambda: "records_in" in read(svc / "metrics"),
                       what="the reported metrics")
    finally:
        watch.close()
    assert read(svc / "metrics") == "lag.ms 1.5\nrecords_in 424242\n"
    assert read_word(svc / "observed") == "running"
    series = _series(d)
    assert series[("rt1", "svc", "records_in")] == "424242"
    assert series[("rt1", "svc", "lag.ms")] == "1.5"

    # a later report carrying only one name: the other keeps its last value
    _report(broker, "svc", {"records_in": 424243})
    wait_until(lambda: "records_in 424243" in read(svc / "metrics"), what="the new value")
    assert read(svc / "metrics") == "lag.ms 1.5\nrecords_in 424243\n"
    assert _stored(d.db, "svc") == {"metric.lag.ms": "1.5", "metric.records_in": "424243"}
    assert "metrics-rejected" not in read(svc / "log")

    # a restart keeps them (they were stored with the feedback's offset)
    d.stop()
    d2 = ctlfs(*args, db=d.db, mnt=d.mnt)
    assert read(d2.path("runtimes", "rt1", "svc", "metrics")) == \
        "lag.ms 1.5\nrecords_in 424243\n"
    assert _series(d2)[("rt1", "svc", "records_in")] == "424243"
    # and the feedback is not read again: no second copy, nothing rejected
    assert _gauge(d2, "ctlfs_reported_metrics_rejected_total") == 0


def test_bad_metrics_are_refused_with_a_reason_logged_once(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    _declare(d, "rt1", "svc")
    svc = d.path("runtimes", "rt1", "svc")
    bad = {"ok": 7, "bad name": 1, "text": "fast", "flag": True, "x" * 65: 1}
    for n in range(3):        # a heartbeat repeats them
        _report(broker, "svc", dict(bad, ok=7 + n))
    wait_until(lambda: read(svc / "metrics") == "ok 9\n", what="the good metric, last value")
    wait_until(lambda: _gauge(d, "ctlfs_reported_metrics_rejected_total") == 12,
               what="every refusal counted")
    lines = [ln for ln in read(svc / "log").splitlines() if " metrics-rejected " in ln]
    assert len(lines) == 1, lines      # the same refusal is logged once
    reason = kv(lines[0])["reason"]
    for what in ("bad name: name not", "text: not a number", "flag: not a number",
                 "x" * 65 + ": name not"):
        assert what in reason, reason
    assert "offset=" in lines[0]
    # the message itself was used: state and the good metric
    assert read_word(svc / "observed") == "running"
    assert _series(d) == {("rt1", "svc", "ok"): "9"}


def test_metrics_are_bounded_per_resource_and_in_the_export(broker, ctlfs, tmp_path):
    conf = tmp_path / "bounds.conf"
    conf.write_text("[ctlfs]\nmetrics-per-resource=2\nmetrics-series-max=3\n")
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--config={conf}")
    _declare(d, "rt1", "a", "b")
    for res in ("a", "b"):
        _report(broker, res, {"m1": 1, "m2": 2})
    wait_until(lambda: read(d.path("runtimes", "rt1", "b", "metrics")) == "m1 1\nm2 2\n",
               what="b's metrics")
    # a third name is over metrics-per-resource; the two known ones still update
    _report(broker, "a", {"m1": 10, "m3": 3})
    a = d.path("runtimes", "rt1", "a")
    wait_until(lambda: read(a / "metrics") == "m1 10\nm2 2\n", what="a's m1 updated")
    line = [ln for ln in read(a / "log").splitlines() if " metrics-rejected " in ln][-1]
    assert "m3: the resource has 2 metrics (metrics-per-resource)" in kv(line)["reason"]
    # 4 kept, 3 exported: by runtime, resource and name, the same ones every time
    assert _series(d) == {("rt1", "a", "m1"): "10", ("rt1", "a", "m2"): "2",
                          ("rt1", "b", "m1"): "1"}
    assert _gauge(d, "ctlfs_reported_metric_series_dropped") == 1
    # removing a resource forgets its metrics
    os.rmdir(d.path("runtimes", "rt1", "a"))
    assert _series(d) == {("rt1", "b", "m1"): "1", ("rt1", "b", "m2"): "2"}
    assert _stored(d.db, "a") == {}


# ---------------------------------------------------------------- kill

def _flows(ctlfs, broker, tmp_path, *names):
    conf = tmp_path / "flows.conf"
    conf.write_text("[runtime flows]\nbackend=lifecycle\n")
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--config={conf}")
    _declare(d, "flows", *names)
    return d, [d.path("runtimes", "flows", n) for n in names]


def _observed_states(log_text, command_id):
    return [kv(ln)["state"] for ln in log_text.splitlines()
            if ln.split(" ")[2:3] == ["observed"] and kv(ln).get("command") == command_id]


def _issue(res, verb):
    write_state(res / "state", f"{verb}\n")
    return issued_id(res, verb)


def _result(res, cid):
    results = [kv(ln)["result"] for ln in command_lines(read(res / "log"))
               if kv(ln).get("id") == cid]
    return results[-1] if results else None


def test_kill_stops_a_flow_at_once_where_stop_goes_through_stopping(broker, ctlfs, agent,
                                                                     tmp_path):
    d, (f1,) = _flows(ctlfs, broker, tmp_path, "f1")
    agent(broker.bootstrap, "flows", ["f1"],
          extra=["--initial-state=stopped", f"--warmup-ms={int(3000 * SLOW)}"])
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="agent's first report")

    # kill while a start warms up: the start is replaced, the flow stopped at once
    start = _issue(f1, "start")
    wait_until(lambda: read_word(f1 / "observed") == "starting", what="warming up")
    kill = _issue(f1, "kill")
    assert read(f1 / "state") == "stopped\n"
    wait_until(lambda: _result(f1, kill) == "applied", what="kill applied")
    assert read_word(f1 / "observed") == "stopped"
    assert _observed_states(read(f1 / "log"), kill) == ["stopped"]   # no stopping
    wait_until(lambda: _result(f1, start) == "failed", what="the start replaced")
    failed = [ln for ln in command_lines(read(f1 / "log"))
              if kv(ln)["id"] == start and kv(ln)["result"] == "failed"]
    assert f"replaced by command {kill} (kill)" in failed[-1]
    st = status_dict(f1 / "status")
    assert st["last_command"] == f"{kill} kill applied" and st["desired"] == "stopped", st

    # the command on the topic says kill (with the flow's mode), not stop
    msgs = [m["value"] for m in kcat_consume(broker.bootstrap, "ctlfs.flows.commands")]
    assert [(m["verb"], m.get("mode")) for m in msgs][-1] == ("kill", "ordinary")

    # a graceful stop, for comparison, goes through stopping
    start2 = _issue(f1, "start")
    wait_until(lambda: _result(f1, start2) == "applied", what="started again")
    stop = _issue(f1, "stop")
    wait_until(lambda: _result(f1, stop) == "applied", what="stop applied")
    assert _observed_states(read(f1 / "log"), stop) == ["stopping", "stopped"]
    # a killed flow is stopped: its mode may change
    write_state(f1 / "mode", "realtime\n")


def test_kill_kills_the_process_where_stop_terminates_it(broker, ctlfs, agent, tmp_path):
    """--apply=signal:PID: stop sends SIGTERM, which a process may catch to
    shut down; kill sends SIGKILL, which it cannot."""
    d, (f1, f2) = _flows(ctlfs, broker, tmp_path, "f1", "f2")
    # a process that ignores SIGTERM, as a runtime busy shutting down might
    stubborn = subprocess.Popen(["/bin/sh", "-c", "trap '' TERM; while :; do sleep 1; done"])
    try:
        agent(broker.bootstrap, "flows", ["f1", "f2"], apply=f"signal:{stubborn.pid}")
        wait_until(lambda: read_word(f1 / "observed") == "running", what="agent's report")
        stop = _issue(f1, "stop")
        wait_until(lambda: _result(f1, stop) == "applied", what="stop applied")
        assert stubborn.poll() is None      # SIGTERM ignored: still there
        kill = _issue(f2, "kill")
        wait_until(lambda: _result(f2, kill) == "applied", what="kill applied")
        assert stubborn.wait(timeout=10 * SLOW) == -signal.SIGKILL
        assert read_word(f2 / "observed") == "stopped"
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
            stubborn.wait()


def test_kill_is_refused_where_the_backend_has_no_such_thing(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    _declare(d, "rt1", "svc")
    svc = d.path("runtimes", "rt1", "svc")
    with pytest.raises(OSError) as e:
        write_state(svc / "state", "kill\n")
    assert e.value.errno == errno.EOPNOTSUPP
    assert "verb kill not supported by the kafka backend" in \
        status_dict(svc / "status")["last_error"]
    assert read(svc / "state") == "running\n"
    # and kill is no word for a whole runtime either
    with pytest.raises(OSError) as e:
        write_state(d.path("runtimes", "rt1", "state"), "kill\n")
    assert e.value.errno in (errno.EINVAL, errno.EOPNOTSUPP)


def test_kill_reaches_an_exec_hook_as_its_own_verb(broker, ctlfs, agent, tmp_path):
    """With --apply=exec:CMD the hook runs as `CMD kill`, CTLFS_VERB=kill: a
    bridge can call the system's own kill (CDAP's /v1/runtime/program/kill)."""
    d, (f1,) = _flows(ctlfs, broker, tmp_path, "f1")
    calls = tmp_path / "calls"
    hook = tmp_path / "hook"
    hook.write_text(f'#!/bin/sh\necho "$1 $CTLFS_VERB $CTLFS_MODE" >> "{calls}"\n')
    hook.chmod(0o755)
    agent(broker.bootstrap, "flows", ["f1"], apply=f"exec:{hook}")
    wait_until(lambda: read_word(f1 / "observed") == "running", what="agent's first report")
    kill = _issue(f1, "kill")
    wait_until(lambda: _result(f1, kill) == "applied", what="kill applied")
    assert calls.read_text() == "kill kill ordinary\n"
    assert read_word(f1 / "observed") == "stopped"
