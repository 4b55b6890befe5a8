"""The lifecycle backend (seed 001, elastic.io real-time flows) on real mounts
with the real agent: start and stop with the step lifecycle in between
(starting, running; stopping, stopped; shutting-down, sleeping when an
ordinary flow idles), the `mode` file (ordinary | realtime) that may change
only while the flow is stopped, the mode riding with every command, and kafka
runtimes refusing start/stop."""

import errno
import os
import select
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (RESOURCE_STATUS_KEYS, RUNTIME_STATUS_KEYS, SLOW, _fusermount,
                      command_lines, issued_id, kcat_consume, kv, mounted, parse_status, read,
                      read_word, sh, status_dict, wait_until, whoami, write_state)

FLOW_STATUS_KEYS = RESOURCE_STATUS_KEYS + ["mode"]


def _config(tmp_path, text=""):
    """A config file making runtime `flows` a lifecycle runtime (rt1 stays kafka)."""
    conf = tmp_path / "lifecycle.conf"
    conf.write_text("[runtime flows]\nbackend=lifecycle\n" + text)
    return conf


def _mount(ctlfs, broker, tmp_path, *extra, db=None, mnt=None):
    return ctlfs(f"--brokers={broker.bootstrap}", f"--config={_config(tmp_path)}", *extra,
                 db=db, mnt=mnt)


def _flows(d, *names):
    os.mkdir(d.path("runtimes", "flows"))
    for n in names:
        os.mkdir(d.path("runtimes", "flows", n))
    return [d.path("runtimes", "flows", n) for n in names]


def _flow_agent(agent, bootstrap, names, *extra):
    return agent(bootstrap, "flows", list(names),
                 extra=["--initial-state=stopped", *extra])


def _observed_lines(log_text):
    """(state, fields) of the `observed` events of a log, oldest first."""
    out = []
    for line in log_text.splitlines():
        parts = line.split(" ")
        if len(parts) >= 3 and parts[2] == "observed":
            f = kv(line)
            out.append((f["state"], f))
    return out


def _states_after(log_text, command_id):
    """The states reported for COMMAND_ID, in the order the log has them."""
    return [s for s, f in _observed_lines(log_text) if f.get("command") == command_id]


def _issue(res, verb):
    sh(f"echo {verb} > state", cwd=res)
    return issued_id(res, verb)


def _mode_events(log_text):
    return [ln for ln in log_text.splitlines() if ln.split(" ")[2:3] == ["mode"]]


def _rejected(log_text):
    return [ln for ln in log_text.splitlines() if ln.split(" ")[2:3] == ["rejected"]]


def _commands(bootstrap, runtime="flows"):
    return [m["value"] for m in kcat_consume(bootstrap, f"ctlfs.{runtime}.commands")]


def _set_mode_fails(res, value, err):
    with pytest.raises(OSError) as e:
        write_state(res / "mode", value)
    assert e.value.errno == err, f"mode {value!r}: {e.value}"


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("write_mode", ["durable", "queued"])
def test_start_stop_round_trip_with_the_step_lifecycle(broker, ctlfs, agent, tmp_path,
                                                       write_mode):
    d = _mount(ctlfs, broker, tmp_path, f"--write-mode={write_mode}")
    (f1,) = _flows(d, "f1")
    assert sorted(os.listdir(f1)) == ["log", "metrics", "mode", "observed", "state", "status"]
    # a new flow is inactive until its first start, and ordinary
    assert read(f1 / "state") == "stopped\n"
    assert read(f1 / "mode") == "ordinary\n"
    st = parse_status(read(f1 / "status"))
    assert [k for k, _ in st] == FLOW_STATUS_KEYS
    assert dict(st)["desired"] == "stopped" and dict(st)["mode"] == "ordinary"

    _flow_agent(agent, broker.bootstrap, ["f1"], "--warmup-ms=300")
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="agent's first report")

    start = _issue(f1, "start")
    assert read(f1 / "state") == "running\n"
    wait_until(lambda: status_dict(f1 / "status")["last_command"] == f"{start} start applied",
               what="start applied")
    assert read(f1 / "observed") == "running\n"
    # starting was reported (and logged) before running, both naming the command
    assert _states_after(read(f1 / "log"), start) == ["starting", "running"]
    st = status_dict(f1 / "status")
    assert (st["desired"], st["observed"], st["pending"], st["last_error"]) == \
        ("running", "running", "-", "-")

    stop = _issue(f1, "stop")
    assert read(f1 / "state") == "stopped\n"
    wait_until(lambda: status_dict(f1 / "status")["last_command"] == f"{stop} stop applied",
               what="stop applied")
    assert read(f1 / "observed") == "stopped\n"
    assert _states_after(read(f1 / "log"), stop) == ["stopping", "stopped"]

    rt = parse_status(read(d.path("runtimes", "flows", "status")))
    assert [k for k, _ in rt] == RUNTIME_STATUS_KEYS
    rt = dict(rt)
    assert rt["backend"] == "lifecycle"
    assert (rt["stopped"], rt["running"], rt["sleeping"], rt["shutting-down"]) == \
        ("1", "0", "0", "0")
    # every command to a flow carries its mode
    msgs = _commands(broker.bootstrap)
    assert [(m["verb"], m["mode"]) for m in msgs] == [("start", "ordinary"),
                                                     ("stop", "ordinary")]
    assert [m["id"] for m in msgs] == [start, stop]


def test_ordinary_flow_sleeps_when_idle_realtime_never(broker, ctlfs, agent, tmp_path):
    d = _mount(ctlfs, broker, tmp_path)
    f1, f2 = _flows(d, "f1", "f2")
    sh("echo realtime > mode", cwd=f2)
    assert read(f2 / "mode") == "realtime\n"
    _flow_agent(agent, broker.bootstrap, ["f1", "f2"], "--warmup-ms=50", "--idle-ms=400")
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="agent's first report")

    # the realtime flow first: by the time the ordinary one has slept, the
    # realtime one has been running idle longer than --idle-ms
    _issue(f2, "start")
    wait_until(lambda: read_word(f2 / "observed") == "running", what="f2 running")
    start1 = _issue(f1, "start")
    wait_until(lambda: read_word(f1 / "observed") == "sleeping", what="f1 sleeping")
    states = [s for s, _ in _observed_lines(read(f1 / "log"))]
    assert states[-4:] == ["starting", "running", "shutting-down", "sleeping"], states
    # the orchestrator's own doing names no command; the start stays applied
    assert _states_after(read(f1 / "log"), start1) == ["starting", "running"]
    assert status_dict(f1 / "status")["last_command"] == f"{start1} start applied"
    assert read(f1 / "state") == "running\n"       # still active: it only sleeps

    assert read(f2 / "observed") == "running\n"
    assert [s for s, _ in _observed_lines(read(f2 / "log"))][-2:] == ["starting", "running"]
    rt = status_dict(d.path("runtimes", "flows", "status"))
    assert (rt["running"], rt["sleeping"]) == ("1", "1")

    # a sleeping flow is active, not stopped: its mode stays as it is
    _set_mode_fails(f1, "realtime\n", errno.EBUSY)
    assert read(f1 / "mode") == "ordinary\n"
    # a start wakes it: warm-up again
    start2 = _issue(f1, "start")
    wait_until(lambda: _states_after(read(f1 / "log"), start2) == ["starting", "running"],
               what="f1 started again")


def test_mode_switch_needs_a_stopped_flow(broker, ctlfs, agent, tmp_path):
    d = _mount(ctlfs, broker, tmp_path)
    (f1,) = _flows(d, "f1")
    _flow_agent(agent, broker.bootstrap, ["f1"], "--warmup-ms=50")
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="agent's first report")
    start = _issue(f1, "start")
    wait_until(lambda: read_word(f1 / "observed") == "running", what="running")
    n_commands = len(_commands(broker.bootstrap))
    log_before = read(f1 / "log")

    _set_mode_fails(f1, "realtime\n", errno.EBUSY)
    assert read(f1 / "mode") == "ordinary\n"
    st = status_dict(f1 / "status")
    assert "must be stopped first" in st["last_error"], st
    assert "echo stop > state" in st["last_error"], st
    assert st["mode"] == "ordinary"
    new = read(f1 / "log")[len(log_before):]
    rejected = _rejected(new)
    assert len(rejected) == 1, new
    f = kv(rejected[0])
    assert f["input"] == 'mode=realtime' and "stopped" in rejected[0], rejected[0]
    assert _mode_events(read(f1 / "log")) == []
    assert len(_commands(broker.bootstrap)) == n_commands        # nothing sent

    # writing the mode it already has changes nothing, so it is fine while running
    write_state(f1 / "mode", "ordinary\n")
    assert _mode_events(read(f1 / "log")) == []

    _issue(f1, "stop")
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="stopped")
    uid, user = whoami()
    sh("echo realtime > mode", cwd=f1)
    assert read(f1 / "mode") == "realtime\n"
    st = status_dict(f1 / "status")
    assert (st["mode"], st["last_error"]) == ("realtime", "-")
    events = _mode_events(read(f1 / "log"))
    assert len(events) == 1, events
    f = kv(events[0])
    assert (f["from"], f["to"]) == ("ordinary", "realtime")
    assert f["by"] == f"uid:{uid}({user})" and f["comm"] == "sh", events[0]
    # the same again: success, one line in the log all the same
    sh("echo realtime > mode", cwd=f1)
    assert len(_mode_events(read(f1 / "log"))) == 1
    assert len(_mode_events(read(d.path("runtimes", "flows", "log")))) == 1
    assert len(_mode_events(read(d.path("log")))) == 1

    # the runtime learns it with the next command
    start2 = _issue(f1, "start")
    msgs = _commands(broker.bootstrap)
    assert [(m["id"], m["verb"], m["mode"]) for m in msgs] == [
        (start, "start", "ordinary"), (msgs[1]["id"], "stop", "ordinary"),
        (start2, "start", "realtime")]


def test_stopped_means_stop_asked_for_and_nothing_running(broker, ctlfs, agent, tmp_path):
    """The edges of "stopped": desired stopped but the runtime still reporting
    running (it is gone) is not stopped; once its report is stale it is."""
    d = _mount(ctlfs, broker, tmp_path, "--stale-after-ms=1500")
    f1, f2 = _flows(d, "f1", "f2")
    # never started, never reported (observed unknown): stopped
    assert read(f2 / "observed") == "unknown\n"
    write_state(f2 / "mode", "realtime")
    assert read(f2 / "mode") == "realtime\n"

    a = _flow_agent(agent, broker.bootstrap, ["f1"], "--warmup-ms=50", "--heartbeat-ms=200")
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="agent's first report")
    _issue(f1, "start")
    wait_until(lambda: read_word(f1 / "observed") == "running", what="running")
    a.stop()
    _issue(f1, "stop")                       # acknowledged by the broker, never applied
    assert read(f1 / "state") == "stopped\n"
    assert read(f1 / "observed") == "running\n"
    _set_mode_fails(f1, "realtime", errno.EBUSY)
    last_error = status_dict(f1 / "status")["last_error"]
    assert "observed is running" in last_error and "wait until it reads stopped" in last_error
    # the runtime is silent: nothing says a step runs, and it takes the new
    # mode with its next start
    wait_until(lambda: read_word(f1 / "observed") == "stale", what="stale")
    write_state(f1 / "mode", "realtime")
    assert read(f1 / "mode") == "realtime\n"


def test_mode_persists_across_restart(broker, ctlfs, tmp_path):
    d = _mount(ctlfs, broker, tmp_path)
    (f1,) = _flows(d, "f1")
    sh("echo realtime > mode", cwd=f1)
    db, mnt = d.db, d.mnt
    d.stop()
    d2 = _mount(ctlfs, broker, tmp_path, db=db, mnt=mnt)
    f1 = d2.path("runtimes", "flows", "f1")
    assert read(f1 / "mode") == "realtime\n"
    assert status_dict(f1 / "status")["mode"] == "realtime"
    assert len(_mode_events(read(f1 / "log"))) == 1
    sh("echo ordinary > mode", cwd=f1)
    assert read(f1 / "mode") == "ordinary\n"
    assert [kv(ln)["to"] for ln in _mode_events(read(f1 / "log"))] == ["realtime", "ordinary"]


# (a write of 0 bytes never reaches the daemon: the kernel answers it)
@pytest.mark.parametrize("value", ["fast", "\n", "realtime\n\n", "REALTIME", " realtime",
                                   "realtime ", "ordinary\x00", "r" * 65])
def test_bad_mode_values_are_einval(broker, ctlfs, tmp_path, value):
    d = _mount(ctlfs, broker, tmp_path)
    (f1,) = _flows(d, "f1")
    _set_mode_fails(f1, value, errno.EINVAL)
    assert read(f1 / "mode") == "ordinary\n"
    log = read(f1 / "log")
    assert len(_rejected(log)) == 1, log
    assert _mode_events(log) == []
    assert status_dict(f1 / "status")["last_error"] != "-"


def test_mode_write_at_an_offset_is_einval(broker, ctlfs, tmp_path):
    d = _mount(ctlfs, broker, tmp_path)
    (f1,) = _flows(d, "f1")
    fd = os.open(f1 / "mode", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            os.pwrite(fd, b"realtime", 3)
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert read(f1 / "mode") == "ordinary\n"
    assert "offset 0" in status_dict(f1 / "status")["last_error"]


def test_watchers_of_mode_and_status_are_woken(broker, ctlfs, tmp_path):
    d = _mount(ctlfs, broker, tmp_path)
    (f1,) = _flows(d, "f1")
    fds = [os.open(f1 / name, os.O_RDONLY) for name in ("mode", "status")]
    try:
        for fd in fds:
            os.read(fd, 4096)
        p = select.poll()
        for fd in fds:
            p.register(fd, select.POLLPRI | select.POLLERR)
        sh("echo realtime > mode", cwd=f1)   # another process, as an operator's shell
        woken = set()
        deadline_ms = int(10_000 * SLOW)
        while len(woken) < 2:
            ev = p.poll(deadline_ms)
            assert ev, f"poll() not woken for {set(fds) - woken}"
            for fd, mask in ev:
                assert mask & select.POLLPRI, mask
                woken.add(fd)
                p.unregister(fd)
        assert os.pread(fds[0], 4096, 0) == b"realtime\n"
        assert b"mode: realtime\n" in os.pread(fds[1], 4096, 0)
    finally:
        for fd in fds:
            os.close(fd)


def test_kafka_runtime_refuses_start_and_stop(broker, ctlfs, agent, tmp_path):
    d = _mount(ctlfs, broker, tmp_path)
    os.mkdir(d.path("runtimes", "rt1"))
    svc = d.path("runtimes", "rt1", "svc")
    os.mkdir(svc)
    assert "mode" not in os.listdir(svc)
    for verb in ("start", "stop"):
        with pytest.raises(OSError) as e:
            write_state(svc / "state", f"{verb}\n")
        assert e.value.errno == errno.EOPNOTSUPP
        assert read(svc / "state") == "running\n"
        last_error = status_dict(svc / "status")["last_error"]
        assert f"verb {verb} not supported by the kafka backend" in last_error, last_error
        assert "pause, resume" in last_error
    assert len(_rejected(read(svc / "log"))) == 2
    assert "mode" not in status_dict(svc / "status")
    assert status_dict(d.path("runtimes", "rt1", "status"))["backend"] == "kafka"
    # pause still works there, and its command carries no mode
    agent(broker.bootstrap, "rt1", ["svc"])
    write_state(svc / "state", "pause\n")
    msgs = _commands(broker.bootstrap, "rt1")
    assert [m["verb"] for m in msgs] == ["pause"] and "mode" not in msgs[0]


def test_backend_lifecycle_for_every_runtime(broker, ctlfs, agent, tmp_path):
    d = ctlfs(f"--brokers={broker.bootstrap}", "--backend=lifecycle")
    os.mkdir(d.path("runtimes", "rt9"))
    os.mkdir(d.path("runtimes", "rt9", "f"))
    f = d.path("runtimes", "rt9", "f")
    assert read(f / "mode") == "ordinary\n"
    agent(broker.bootstrap, "rt9", ["f"], extra=["--initial-state=stopped", "--warmup-ms=0"])
    start = _issue(f, "start")
    wait_until(lambda: status_dict(f / "status")["last_command"] == f"{start} start applied",
               what="start applied")
    # pause and resume are a flow's verbs too
    write_state(f / "state", "pause\n")
    assert read(f / "state") == "paused\n"
    wait_until(lambda: read_word(f / "observed") == "paused", what="paused")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="runs a write as another user: needs root and setpriv")
def test_mode_follows_the_command_policy(broker, ctlfs, tmp_path):
    top = Path(tempfile.mkdtemp(prefix="ctlfs-lifecycle-"))
    os.chmod(top, 0o755)
    try:
        conf = _config(tmp_path, "[access]\ncommand=root\n")
        d = ctlfs(f"--brokers={broker.bootstrap}", f"--config={conf}", "-o", "allow_other",
                  mnt=top / "mnt")
        (f1,) = _flows(d, "f1")
        # refused at open, before anything is written
        script = ("import errno, os\n"
                  "try:\n    fd = os.open('mode', os.O_WRONLY)\n"
                  "    os.write(fd, b'realtime\\n')\n    print('written')\n"
                  "except OSError as e:\n    print(errno.errorcode[e.errno])\n")
        p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            "/usr/bin/python3", "-c", script], cwd=f1, capture_output=True,
                           text=True, timeout=30 * SLOW)
        assert p.stdout.strip() == "EACCES", (p.stdout, p.stderr)
        assert read(f1 / "mode") == "ordinary\n"
        assert "access policy" in status_dict(f1 / "status")["last_error"]
        refused = [ln for ln in read(f1 / "log").splitlines()
                   if ln.split(" ")[2:3] == ["refused"]]
        assert len(refused) == 1 and kv(refused[0])["request"] == "open mode", refused
        d.stop()
    finally:
        if mounted(top / "mnt"):
            _fusermount(["-uz"], top / "mnt")
        shutil.rmtree(top, ignore_errors=True)


def test_a_start_that_failed_leaves_the_flow_stopped(broker, ctlfs, tmp_path):
    """desired changes when a command takes effect: a durable start the broker
    never acknowledged leaves a new flow stopped, and its mode switchable."""
    d = _mount(ctlfs, broker, tmp_path, f"--ack-timeout-ms={int(1000 * SLOW)}")
    (f1,) = _flows(d, "f1")
    broker.fault("down 1")
    with pytest.raises(OSError) as e:
        write_state(f1 / "state", "start\n")
    assert e.value.errno == errno.ETIMEDOUT
    assert read(f1 / "state") == "stopped\n"
    assert status_dict(f1 / "status")["desired"] == "stopped"

    # The writer hears ETIMEDOUT on the engine's timer; the message stays with
    # the producer (EBUSY: "still on its way") until librdkafka gives up on it
    # a moment later, under load sometimes after the next write.
    def mode_written():
        try:
            write_state(f1 / "mode", "realtime\n")
            return True
        except OSError as err:
            if err.errno != errno.EBUSY:
                raise
            return False
    wait_until(mode_written, what="the mode switchable once the start is given up")
    assert read(f1 / "mode") == "realtime\n"
    broker.fault("up 1")


def test_another_hosts_mode_change_arrives_with_its_next_command(broker, ctlfs, agent,
                                                                  tmp_path):
    """Two admin hosts: a mode changed on one reaches the other with the next
    command to the flow (every command carries it), logged there as that
    host's change and before the command; the other host's own commands then
    carry it too."""
    a = _mount(ctlfs, broker, tmp_path)
    b = _mount(ctlfs, broker, tmp_path)
    [fa] = _flows(a, "f1")
    fb = Path(b.path("runtimes", "flows", "f1"))
    wait_until(lambda: fb.is_dir(), what="f1 declared on host b")
    _flow_agent(agent, broker.bootstrap, ["f1"])
    write_state(fa / "mode", "realtime\n")        # never started: stopped
    assert read_word(fb / "mode") == "ordinary"   # a mode change alone sends nothing
    started = _issue(fa, "start")
    wait_until(lambda: read_word(fb / "mode") == "realtime", what="realtime on host b")
    lines = read(fb / "log").splitlines()
    modes = [i for i, ln in enumerate(lines) if ln.split(" ")[2:3] == ["mode"]]
    cmds = [i for i, ln in enumerate(lines)
            if ln.split(" ")[2:3] == ["command"] and kv(ln).get("id") == started]
    assert len(modes) == 1 and cmds and modes[0] < cmds[0], lines
    f = kv(lines[modes[0]])
    assert (f["from"], f["to"]) == ("ordinary", "realtime"), f
    assert f["host"] == kv(lines[cmds[0]])["host"], (f, lines[cmds[0]])
    wait_until(lambda: read_word(fb / "observed") == "running", what="f1 running on host b")
    stopped = _issue(fb, "stop")
    msgs = _commands(broker.bootstrap)
    mine = [m for m in msgs if m and m.get("id") == stopped]
    assert mine and mine[0]["mode"] == "realtime", msgs


def _final_results(log_text):
    """command id -> its last result in the log."""
    out = {}
    for ln in command_lines(log_text):
        out[kv(ln)["id"]] = kv(ln)["result"]
    return out


def test_a_command_during_warm_up_settles_the_one_it_replaces(broker, ctlfs, agent,
                                                               tmp_path):
    """A second start during the warm-up: both end applied once the flow runs.
    A stop during the warm-up: the start ends failed, saying it was replaced,
    the stop applied. No command stays `sent`."""
    d = _mount(ctlfs, broker, tmp_path)
    (f1,) = _flows(d, "f1")
    _flow_agent(agent, broker.bootstrap, ["f1"], f"--warmup-ms={int(2000 * SLOW)}")
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="agent's first report")

    first = _issue(f1, "start")
    wait_until(lambda: read_word(f1 / "observed") == "starting", what="warming up")
    second = _issue(f1, "start")
    wait_until(lambda: _final_results(read(f1 / "log")).get(first) == "applied"
               and _final_results(read(f1 / "log")).get(second) == "applied",
               what="both starts applied")
    assert read_word(f1 / "observed") == "running"

    stop = _issue(f1, "stop")
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="stopped")
    third = _issue(f1, "start")
    wait_until(lambda: read_word(f1 / "observed") == "starting", what="warming up again")
    stop2 = _issue(f1, "stop")
    wait_until(lambda: _final_results(read(f1 / "log")).get(third) == "failed",
               what="the replaced start failed")
    log = read(f1 / "log")
    results = _final_results(log)
    assert results[stop] == "applied" and results[stop2] in ("sent", "applied"), log
    failed = [ln for ln in command_lines(read(f1 / "log")) if kv(ln)["id"] == third
              and kv(ln)["result"] == "failed"]
    assert f"replaced by command {stop2} (stop)" in failed[-1], failed
    wait_until(lambda: _final_results(read(f1 / "log")).get(stop2) == "applied",
               what="the stop applied")
    st = status_dict(f1 / "status")
    assert st["last_command"] == f"{stop2} stop applied" and st["last_error"] == "-", st


def test_state_takes_back_what_it_reads(broker, ctlfs, agent, tmp_path):
    """Configuration tools write the content they want: `state` takes the
    states it reads (stopped, running, paused) as well as the verbs; running
    is a start for a stopped flow and a resume for a paused one."""
    d = ctlfs(f"--brokers={broker.bootstrap}", "--backend=lifecycle")
    os.mkdir(d.path("runtimes", "rt9"))
    os.mkdir(d.path("runtimes", "rt9", "f"))
    f = d.path("runtimes", "rt9", "f")
    agent(broker.bootstrap, "rt9", ["f"], extra=["--initial-state=stopped", "--warmup-ms=0"])
    wait_until(lambda: read_word(f / "observed") == "stopped", what="the agent's first report")
    # the state it is desired and reported in: answered, nothing sent
    write_state(f / "state", "stopped\n")
    assert read(f / "state") == "stopped\n"
    line = command_lines(read(f / "log"))[-1]
    assert (kv(line)["verb"], kv(line)["result"]) == ("stop", "unchanged"), line
    assert status_dict(f / "status")["last_command"] == "-"
    for value, verb in (("running\n", "start"), ("paused", "pause"), ("running", "resume")):
        write_state(f / "state", value)
        assert read(f / "state") == value.strip() + "\n"
        assert status_dict(f / "status")["last_command"].split()[1] == verb, value
        wait_until(lambda: read_word(f / "observed") == value.strip(), what=value.strip())
    # what `cat` reads goes back unchanged
    sh('echo "$(cat state)" > state', cwd=f)
    assert read(f / "state") == "running\n"
