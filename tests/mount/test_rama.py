"""The cluster backend (Rama, seed 002) on real mounts: modules/ and their
microbatch topologies driven through a `rama` CLI, here tests/fake-rama, which
records every call in $FAKE_RAMA_DIR/calls and keeps the cluster's state there
(see the script). The daemon runs with --brokers from the broker fixture, as
it always has a broker; Kafka plays no part in these commands."""

import errno
import json
import os
import select
import subprocess
import threading
import time

import pytest

from conftest import (REPO, LEAF_STATUS_KEYS, RFC3339_MS, SLOW, UUID, command_lines, kv,
                      parse_status, read, read_word, status_dict, wait_until, write_state)

FAKE = REPO / "tests" / "fake-rama"
# what the daemon runs on its own, not for a write
BACKGROUND = ("moduleStatus", "taskGroupsStatus")
MODULE_FILES = ["depots", "log", "options", "pstates", "scale", "status", "task-groups",
                "topologies"]
MODULE_STATUS_KEYS = ["module", "last_command", "last_error", "scale", "checked_at",
                      "exit_status", "error", "output"]


@pytest.fixture
def rama(tmp_path, broker, ctlfs):
    """Factory: rama(*args) -> (daemon, fake dir). The daemon uses fake-rama as
    its CLI, with FAKE_RAMA_DIR in its environment."""
    fake = tmp_path / "fake-rama"
    fake.mkdir(exist_ok=True)
    env = dict(os.environ, FAKE_RAMA_DIR=str(fake))

    def make(*args, db=None, mnt=None, extra_env=None):
        d = ctlfs(f"--brokers={broker.bootstrap}", f"--rama-cli={FAKE}", *args,
                  db=db, mnt=mnt, env=dict(env, **(extra_env or {})))
        return d, fake
    make.env = env
    return make


def calls(fake, command=None):
    """The fake's recorded calls (argv lists), oldest first."""
    try:
        text = (fake / "calls").read_text()
    except FileNotFoundError:
        return []
    out = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [c for c in out if command is None or c["argv"][0] == command]


def ended_pids(fake):
    try:
        text = (fake / "ended").read_text()
    except FileNotFoundError:
        return set()
    return {json.loads(line)["pid"] for line in text.splitlines() if line.strip()}


def declare_topology(d, module="m1", topo="t1"):
    mod = d.path("modules", module)
    if not mod.exists():
        os.mkdir(mod)
    os.mkdir(mod / "topologies" / topo)
    return mod / "topologies" / topo


def write_errno(path, data):
    with pytest.raises(OSError) as ei:
        write_state(path, data)
    return ei.value.errno


def module_status(mod):
    """The module's status: (keys in order, dict, output lines)."""
    text = read(mod / "status")
    head, sep, output = text.partition("output:\n")
    assert sep, f"no `output:` line in:\n{text}"
    items = parse_status(head)
    lines = [ln for ln in output.splitlines()]
    assert all(ln.startswith("  ") for ln in lines), f"output lines not indented:\n{text}"
    return [k for k, _ in items] + ["output"], dict(items), [ln[2:] for ln in lines]


# ---------------------------------------------------------------- the tree

def test_declare_modules_and_topologies(rama):
    d, fake = rama()
    assert sorted(os.listdir(d.path("modules"))) == []
    os.mkdir(d.path("modules", "m1"))
    mod = d.path("modules", "m1")
    assert sorted(os.listdir(mod)) == MODULE_FILES
    topo = declare_topology(d, "m1", "t1")
    assert sorted(os.listdir(topo)) == ["log", "observed", "options", "state", "status"]
    assert read(topo / "state") == "running\n"
    assert read(topo / "observed") == "unknown\n"    # no call has run on it yet
    assert read(mod / "scale") == "-\n"
    # names as for runtimes; nothing but topologies/ can be made in a module
    for bad in ("a b", "x" * 129, "a:b", "a\x01"):
        with pytest.raises(OSError) as ei:
            os.mkdir(d.path("modules", bad))
        assert ei.value.errno == errno.EINVAL, bad
    with pytest.raises(OSError) as ei:
        os.mkdir(mod / "other")
    assert ei.value.errno == errno.EPERM
    with pytest.raises(OSError) as ei:
        os.mkdir(d.path("modules", "m1"))
    assert ei.value.errno == errno.EEXIST
    # rmdir: not while the module has topologies; its topologies/ never alone
    with pytest.raises(OSError) as ei:
        os.rmdir(mod)
    assert ei.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as ei:
        os.rmdir(mod / "topologies")
    assert ei.value.errno == errno.EPERM
    os.rmdir(topo)
    os.rmdir(mod)
    assert os.listdir(d.path("modules")) == []
    # the module's log told the story, and the root log has it all
    root = read(d.path("log"))
    assert " modules/m1 created " in root and " modules/m1/topologies/t1 created " in root
    assert " modules/m1 removed " in root and " modules/m1/topologies/t1 removed " in root
    # runtimes are untouched
    assert os.listdir(d.path("runtimes")) == []
    assert "modules/" in read(d.path("README"))


# ---------------------------------------------------------------- pause / resume

def test_pause_resume_round_trip(rama):
    d, fake = rama()
    topo = declare_topology(d)
    mod = d.path("modules", "m1")
    write_state(topo / "state", "pause\n")
    # durable: the CLI has exited 0 when write() returns
    assert calls(fake, "pauseTopology")[-1]["argv"] == ["pauseTopology", "m1", "t1"]
    assert read(topo / "state") == "paused\n"
    assert read(topo / "observed") == "paused\n"
    items = parse_status(read(topo / "status"))
    assert [k for k, _ in items] == LEAF_STATUS_KEYS
    st = dict(items)
    assert st["desired"] == "paused" and st["observed"] == "paused"
    assert RFC3339_MS.match(st["observed_at"])
    assert st["pending"] == "-" and st["last_error"] == "-"
    assert st["heartbeat_age_ms"] == "-"
    cmd_id, verb, result = st["last_command"].split()
    assert UUID.match(cmd_id) and (verb, result) == ("pause", "applied")
    lines = command_lines(read(topo / "log"), "pause")
    assert [kv(ln)["result"] for ln in lines] == ["queued", "applied"]
    assert all(kv(ln)["id"] == cmd_id for ln in lines)
    assert kv(lines[1])["exit"] == "0"
    assert "Topology t1 of module m1 is paused" in lines[1]
    # the module's log and the root's hold the topology's lines too
    assert lines[1] in read(mod / "log")
    assert lines[1] in read(d.path("log"))

    write_state(topo / "state", "resume")
    assert calls(fake, "resumeTopology")[-1]["argv"] == ["resumeTopology", "m1", "t1"]
    assert read(topo / "state") == "running\n"
    assert read(topo / "observed") == "running\n"
    assert status_dict(topo / "status")["last_command"].endswith(" resume applied")


def test_pausing_a_paused_topology_runs_the_cli_again(rama):
    d, fake = rama()
    topo = declare_topology(d)
    write_state(topo / "state", "pause\n")
    write_state(topo / "state", "pause\n")     # Rama treats it as a no-op; so does the fake
    assert [c["argv"] for c in calls(fake, "pauseTopology")] == [["pauseTopology", "m1", "t1"]] * 2
    assert read(topo / "observed") == "paused\n"
    results = [kv(ln)["result"] for ln in command_lines(read(topo / "log"), "pause")]
    assert results == ["queued", "applied", "queued", "applied"]


def test_start_and_stop_are_not_supported(rama):
    d, fake = rama()
    topo = declare_topology(d)
    for verb in ("start\n", "stop"):
        assert write_errno(topo / "state", verb) == errno.EOPNOTSUPP
    assert calls(fake, "pauseTopology") == [] and calls(fake, "resumeTopology") == []
    assert read(topo / "state") == "running\n"
    log = read(topo / "log")
    assert log.count(" rejected ") == 2, log
    assert "pause and resume only" in status_dict(topo / "status")["last_error"]
    # bad verbs: EINVAL, nothing run
    for bad in ("\n", "Paused", "pause\n\n", "x" * 65):
        assert write_errno(topo / "state", bad) == errno.EINVAL, bad
    assert calls(fake, "pauseTopology") == []


def test_failing_cli_is_eio_with_its_message(rama):
    d, fake = rama()
    topo = declare_topology(d)
    (fake / "fail").write_text("pauseTopology\n")
    assert write_errno(topo / "state", "pause") == errno.EIO
    assert len(calls(fake, "pauseTopology")) == 1
    st = status_dict(topo / "status")
    assert "pauseTopology failed (simulated by fake-rama)" in st["last_error"], st
    assert "exited 1" in st["last_error"]
    assert st["last_command"].endswith(" pause failed")
    assert read(topo / "observed") == "unknown\n"      # nothing succeeded yet
    assert read(topo / "state") == "running\n"         # durable: desired did not move
    failed = [ln for ln in command_lines(read(topo / "log"), "pause") if " result=failed " in ln]
    assert len(failed) == 1 and kv(failed[0])["exit"] == "1"
    assert "simulated by fake-rama" in failed[0]
    # once the cluster takes it again, so does the file
    (fake / "fail").write_text("")
    write_state(topo / "state", "pause")
    assert read(topo / "observed") == "paused\n"
    assert status_dict(topo / "status")["last_error"] == "-"


# ---------------------------------------------------------------- never blocking

def _write_in_thread(path, data):
    box = {}

    def run():
        t0 = time.monotonic()
        try:
            box["n"] = write_state(path, data)
        except OSError as e:
            box["errno"] = e.errno
        box["took"] = time.monotonic() - t0
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_slow_cli_blocks_nothing(rama):
    d, fake = rama()
    topo = declare_topology(d)
    os.mkdir(d.path("modules", "m1", "topologies", "t2"))
    (fake / "delay_ms").write_text(str(int(3000 * SLOW)))
    t, box = _write_in_thread(topo / "state", "pause")
    call = wait_until(lambda: calls(fake, "pauseTopology"), what="pauseTopology started")[0]
    pid = call["pid"]
    # while the child sleeps: reads of any file answer, another topology takes
    # a command, and the topology cannot be removed
    assert read_word(topo / "state") == "running"
    assert status_dict(topo / "status")["pending"] != "-"
    module_status(d.path("modules", "m1"))
    read(d.path("status"))
    (fake / "delay_ms").write_text("")
    write_state(d.path("modules", "m1", "topologies", "t2", "state"), "pause")
    assert read(d.path("modules", "m1", "topologies", "t2", "observed")) == "paused\n"
    with pytest.raises(OSError) as ei:
        os.rmdir(topo)
    assert ei.value.errno == errno.EBUSY
    assert pid not in ended_pids(fake), "the reads above waited for the CLI"
    assert t.is_alive()
    t.join(30 * SLOW)
    assert box.get("n") == 5, box
    assert read(topo / "observed") == "paused\n"


def test_cli_past_the_timeout_is_killed_and_the_write_times_out(rama):
    d, fake = rama("--rama-timeout-ms=500")
    topo = declare_topology(d)
    (fake / "delay_ms").write_text("60000")
    t0 = time.monotonic()
    assert write_errno(topo / "state", "pause") == errno.ETIMEDOUT
    assert time.monotonic() - t0 < 10 * SLOW
    pid = calls(fake, "pauseTopology")[0]["pid"]

    def gone():
        return not os.path.exists(f"/proc/{pid}")   # killed, and reaped by the daemon
    wait_until(gone, what="the timed-out child to be killed and reaped")
    assert pid not in ended_pids(fake)          # killed, never finished
    st = status_dict(topo / "status")
    assert "did not finish within 500 ms" in st["last_error"], st
    assert st["last_command"].endswith(" pause failed")
    assert read(topo / "observed") == "unknown\n"
    wait_until(lambda: " cli-ended " in read(topo / "log"), what="cli-ended line")
    # the topology takes commands again once the child is gone
    (fake / "delay_ms").write_text("")
    write_state(topo / "state", "pause")
    assert read(topo / "observed") == "paused\n"


# ---------------------------------------------------------------- queued mode

def test_queued_mode_returns_once_stored_and_runs_after_restart(rama):
    d, fake = rama("--write-mode=queued")
    topo = declare_topology(d)
    (fake / "delay_ms").write_text(str(int(2000 * SLOW)))
    write_state(topo / "state", "pause")
    # returned before the CLI finished: desired moved, observed did not yet
    assert read(topo / "state") == "paused\n"
    assert not ended_pids(fake) or all(c["argv"][0] in BACKGROUND
                                       for c in calls(fake) if c["pid"] in ended_pids(fake))
    assert read(topo / "observed") == "unknown\n"
    # a second command while the first is queued or running: EBUSY, not run
    assert write_errno(topo / "state", "resume") == errno.EBUSY
    rejected = [ln for ln in read(topo / "log").splitlines() if " rejected " in ln]
    assert len(rejected) == 1 and "still queued or running" in rejected[0], rejected
    wait_until(lambda: read(topo / "observed") == "paused\n", what="queued pause applied")
    results = [kv(ln)["result"] for ln in command_lines(read(topo / "log"), "pause")]
    assert results == ["queued", "applied"]
    assert calls(fake, "resumeTopology") == []

    # the outbox: a command still queued (its CLI killed as the daemon stops)
    # runs at the next start
    (fake / "delay_ms").write_text(str(int(60000 * SLOW)))
    write_state(topo / "state", "resume")
    wait_until(lambda: calls(fake, "resumeTopology"), what="resumeTopology started")
    d.stop()
    (fake / "delay_ms").write_text("")
    d2, _ = rama("--write-mode=queued", db=d.db, mnt=d.mnt)
    topo = d2.path("modules", "m1", "topologies", "t1")
    wait_until(lambda: read(topo / "observed") == "running\n", what="queued resume run again")
    assert len(calls(fake, "resumeTopology")) == 2
    assert status_dict(topo / "status")["last_command"].endswith(" resume applied")


# ---------------------------------------------------------------- module status

def test_module_status_shows_module_status_and_wakes_watchers(rama):
    d, fake = rama("--rama-refresh-ms=300")
    topo = declare_topology(d)
    mod = d.path("modules", "m1")
    wait_until(lambda: "Topology t1" not in read(mod / "status")
               and module_status(mod)[1]["checked_at"] != "-", what="first moduleStatus")
    keys, st, out = module_status(mod)
    assert keys == MODULE_STATUS_KEYS
    assert st["module"] == "m1" and st["exit_status"] == "0" and st["error"] == "-"
    assert RFC3339_MS.match(st["checked_at"])
    assert out[0] == "Module: m1"
    # a command is followed by a check: the output shows the topology paused
    fd = os.open(mod / "status", os.O_RDONLY)
    try:
        os.read(fd, 4096)
        p = select.poll()
        p.register(fd, select.POLLPRI | select.POLLERR)
        write_state(topo / "state", "pause")
        assert p.poll(5000 * SLOW), "poll() on status was not woken"
    finally:
        os.close(fd)
    wait_until(lambda: "Topology t1: paused" in module_status(mod)[2],
               what="moduleStatus after pause")
    # a change made on the cluster behind our back shows on the next refresh,
    # and inotify watchers hear it
    w = subprocess.Popen(["inotifywait", "-q", "-e", "modify", "-t", str(int(20 * SLOW)),
                          str(mod / "status")], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)   # let inotifywait set its watch (it prints nothing when ready with -q)
    subprocess.run([str(FAKE), "pauseTopology", "m1", "t9"], env=rama.env, check=True,
                   capture_output=True)
    assert w.wait(30 * SLOW) == 0, "inotifywait saw no IN_MODIFY on status"
    wait_until(lambda: "Topology t9: paused" in module_status(mod)[2], what="refresh")
    changes = [ln for ln in read(mod / "log").splitlines() if " module-status " in ln]
    assert any("Topology t9: paused" in ln for ln in changes)
    # one line per change, not one per check
    n = len(changes)
    time.sleep(1.0)
    assert len([ln for ln in read(mod / "log").splitlines() if " module-status " in ln]) == n


def test_cli_not_found_is_reported_not_a_crash(broker, ctlfs, tmp_path):
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--rama-cli={tmp_path}/no-such-rama")
    topo = declare_topology(d)
    mod = d.path("modules", "m1")
    wait_until(lambda: module_status(mod)[1]["error"] != "-", what="status error")
    st = module_status(mod)[1]
    assert "cannot run" in st["error"] and st["exit_status"] == "-"
    assert " module-status " in read(mod / "log") and "error=" in read(mod / "log")
    assert write_errno(topo / "state", "pause") == errno.EIO
    assert "cannot run" in status_dict(topo / "status")["last_error"]
    assert os.path.ismount(d.mnt)


# ---------------------------------------------------------------- scale

def test_scale(rama):
    d, fake = rama()
    os.mkdir(d.path("modules", "m1"))
    scale = d.path("modules", "m1", "scale")
    write_state(scale, "threads=4 workers=2\n")
    assert calls(fake, "scaleExecutors")[-1]["argv"] == [
        "scaleExecutors", "--module", "m1", "--workers", "2", "--threads", "4"]
    assert read(scale) == "workers=2 threads=4\n"
    write_state(scale, "replicationFactor=3")
    assert calls(fake, "scaleExecutors")[-1]["argv"] == [
        "scaleExecutors", "--module", "m1", "--replicationFactor", "3"]
    assert read(scale) == "replicationFactor=3\n"
    n = len(calls(fake, "scaleExecutors"))
    for bad in ("workers=0", "workers=-1", "workers=x", "workers=", "foo=1",
                "workers=1  threads=2", "workers=1 workers=2", " workers=1", "workers=+1",
                "workers=99999999999", "workers=1 " + "x" * 60):
        assert write_errno(scale, bad) == errno.EINVAL, bad
    assert len(calls(fake, "scaleExecutors")) == n, "a bad value reached the CLI"
    assert read(scale) == "replicationFactor=3\n"
    log = read(d.path("modules", "m1", "log"))
    assert log.count(" rejected ") == 11
    # not at offset 0
    fd = os.open(scale, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as ei:
            os.pwrite(fd, b"workers=1", 3)
        assert ei.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    # failure: EIO, reason in status, value unchanged
    (fake / "fail").write_text("scaleExecutors")
    assert write_errno(scale, "workers=5") == errno.EIO
    assert read(scale) == "replicationFactor=3\n"
    _, st, _ = module_status(d.path("modules", "m1"))
    assert "simulated by fake-rama" in st["last_error"]
    assert st["last_command"].endswith(" scale failed")
    lines = command_lines(read(d.path("modules", "m1", "log")), "scale")
    assert [kv(ln)["result"] for ln in lines] == ["queued", "applied"] * 2 + ["queued", "failed"]
    assert ' args="workers=2 threads=4" ' in lines[1]


# ---------------------------------------------------------------- restart

def test_modules_and_topologies_survive_a_restart(rama):
    d, fake = rama()
    topo = declare_topology(d)
    os.mkdir(d.path("modules", "m1", "topologies", "t2"))
    os.mkdir(d.path("modules", "m2"))
    write_state(topo / "state", "pause")
    write_state(d.path("modules", "m1", "scale"), "workers=3")
    inodes = {p: os.stat(p).st_ino for p in (topo, topo / "state", d.path("modules", "m2"))}
    log = read(d.path("modules", "m1", "log"))
    d.stop()
    d2, _ = rama(db=d.db, mnt=d.mnt)
    assert sorted(os.listdir(d2.path("modules"))) == ["m1", "m2"]
    assert sorted(os.listdir(d2.path("modules", "m1", "topologies"))) == ["t1", "t2"]
    assert {p: os.stat(p).st_ino for p in inodes} == inodes
    assert read(topo / "state") == "paused\n"
    assert read(topo / "observed") == "paused\n"
    assert read(d2.path("modules", "m1", "scale")) == "workers=3\n"
    assert read(d2.path("modules", "m1", "log")).startswith(log)
    assert status_dict(topo / "status")["last_command"].endswith(" pause applied")
    # and it goes on working
    write_state(topo / "state", "resume")
    assert read(topo / "observed") == "running\n"
