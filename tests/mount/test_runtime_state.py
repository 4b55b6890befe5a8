"""A runtime's own state (issue 15): `runtimes/RT/state` pauses or resumes
every resource that follows the runtime with one command; a resource's own
command makes it an override, which runtime-wide commands leave alone, and
`inherit` makes it follow again. `runtimes/RT/observed` sums up what the
resources report. Real mounts, the real agent, the real broker."""

import errno
import os

import pytest

from conftest import (kcat_consume, kv, read, read_word, sh, status_dict, wait_until,
                      write_state)
from test_hosts import hosts

RESOURCES = ("a", "b", "c")


def _setup(d, resources=RESOURCES):
    rt = d.path("runtimes", "rt1")
    os.mkdir(rt)
    for r in resources:
        os.mkdir(rt / r)
    return rt


def _commands(broker, rt="rt1"):
    return [m for m in kcat_consume(broker.bootstrap, f"ctlfs.{rt}.commands")
            if isinstance(m["value"], dict)]


def _observed_all(rt, names, state):
    wait_until(lambda: all(read_word(rt / n / "observed") == state for n in names),
               what=f"{', '.join(names)} observed {state}")


def test_runtime_wide_pause_reaches_followers_in_one_message_and_leaves_overrides(
        broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    rt = _setup(d)
    agent(broker.bootstrap, resources=RESOURCES, heartbeat_ms=300)
    assert read(rt / "state") == "running\n"
    # c gets a state of its own: running, said explicitly
    write_state(rt / "c" / "state", "resume\n")
    assert status_dict(rt / "c" / "status")["state_source"] == "override"
    assert status_dict(rt / "a" / "status")["state_source"] == "runtime"
    before = len(_commands(broker))

    write_state(rt / "state", "pause\n")
    assert read(rt / "state") == "paused\n"
    # one message for the whole runtime: no resource named, scope runtime
    wait_until(lambda: len(_commands(broker)) == before + 1, what="the runtime-wide command")
    msgs = _commands(broker)
    assert len(msgs) == before + 1, [m["value"] for m in msgs]
    cmd = msgs[-1]["value"]
    assert cmd["scope"] == "runtime" and "resource" not in cmd, cmd
    assert (cmd["runtime"], cmd["verb"]) == ("rt1", "pause"), cmd
    assert msgs[-1]["key"] == "rt1"
    # the followers pause; the override stays as it was
    assert read(rt / "a" / "state") == read(rt / "b" / "state") == "paused\n"
    assert read(rt / "c" / "state") == "running\n"
    _observed_all(rt, ("a", "b"), "paused")
    wait_until(lambda: read_word(rt / "observed") == "mixed", what="runtime observed mixed")
    assert read_word(rt / "c" / "observed") == "running"
    # the command settles on the runtime once every follower reported it
    wait_until(lambda: status_dict(rt / "status")["pending"] == "-", what="runtime settled")
    st = status_dict(rt / "status")
    assert st["last_command"] == f"{cmd['id']} pause applied", st
    assert (st["desired"], st["observed"]) == ("paused", "mixed"), st
    for n in ("a", "b"):
        line = [ln for ln in read(rt / n / "log").splitlines()
                if " command " in ln and kv(ln).get("id") == cmd["id"]]
        assert line and kv(line[-1])["result"] == "applied", line
        assert kv(line[-1])["scope"] == "runtime", line
        assert status_dict(rt / n / "status")["pending"] == "-"
    # the override follows again: it pauses, with a command of its own
    write_state(rt / "c" / "state", "inherit\n")
    assert read(rt / "c" / "state") == "paused\n"
    assert status_dict(rt / "c" / "status")["state_source"] == "runtime"
    _observed_all(rt, RESOURCES, "paused")
    wait_until(lambda: read_word(rt / "observed") == "paused", what="runtime observed paused")
    wait_until(lambda: status_dict(rt / "c" / "status")["last_command"].endswith(" inherit applied"),
               what="inherit applied")
    assert status_dict(rt / "c" / "status")["pending"] == "-"
    # and the next runtime-wide command reaches it too
    write_state(rt / "state", "running\n")
    _observed_all(rt, RESOURCES, "running")
    assert all(read_word(rt / n / "state") == "running" for n in RESOURCES)


def test_runtime_state_round_trips_and_new_resources_follow_it(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    rt = _setup(d, ("a",))
    write_state(rt / "state", "paused\n")
    sh("cat state > state", cwd=rt)              # what it reads, written back
    assert read(rt / "state") == "paused\n"
    os.mkdir(rt / "late")                        # declared after the pause
    assert read(rt / "late" / "state") == "paused\n"
    assert status_dict(rt / "late" / "status")["state_source"] == "runtime"
    sh("sed -i 's/paused/running/' state", cwd=rt)   # a scratch file renamed over it
    assert [read_word(p) for p in (rt / "state", rt / "a" / "state", rt / "late" / "state")] \
        == ["running"] * 3


def test_runtime_state_and_overrides_survive_a_restart(broker, ctlfs, tmp_path):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    rt = _setup(d)
    write_state(rt / "c" / "state", "resume\n")
    write_state(rt / "state", "pause\n")
    d.stop()
    d.start()
    assert read(rt / "state") == "paused\n"
    assert [read_word(rt / n / "state") for n in RESOURCES] == ["paused", "paused", "running"]
    assert status_dict(rt / "c" / "status")["state_source"] == "override"
    assert status_dict(rt / "a" / "status")["state_source"] == "runtime"


def test_runtime_wide_command_shows_on_other_hosts(broker, ctlfs):
    a, b = hosts(ctlfs, broker, 2)
    rt = _setup(a, ("x", "y"))
    for n in ("x", "y"):
        wait_until(lambda: os.path.isdir(b.path("runtimes", "rt1", n)), what=f"{n} on b")
    write_state(rt / "y" / "state", "resume\n")
    write_state(rt / "state", "pause\n")
    other = b.path("runtimes", "rt1")
    wait_until(lambda: read_word(other / "state") == "paused", what="runtime paused on b")
    wait_until(lambda: read_word(other / "x" / "state") == "paused", what="x paused on b")
    assert read_word(other / "y" / "state") == "running"
    assert status_dict(other / "y" / "status")["state_source"] == "override"
    # the runtime's own command line (y's resume, keyed by y, may sit in
    # another partition and be read after it: the runtime log mixes both)
    line = [ln for ln in read(other / "log").splitlines()
            if ln.split(" ")[1:3] == ["runtimes/rt1", "command"]][-1]
    assert (kv(line)["verb"], kv(line)["result"]) == ("pause", "sent"), line


def test_runtime_wide_message_does_not_grow_with_resources(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    rt = _setup(d, ("a",))
    write_state(rt / "state", "pause\n")
    for i in range(40):
        os.mkdir(rt / f"r{i:03d}")
    write_state(rt / "state", "resume\n")
    wait_until(lambda: len(_commands(broker)) == 2, what="two runtime-wide commands")
    sizes = [len(m["payload"]) for m in _commands(broker)]
    # "pause" and "resume" differ by one byte; 40 more resources add none
    assert sizes[1] - sizes[0] == 1, sizes


def test_runtime_wide_refusals(broker, ctlfs, tmp_path):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    rt = _setup(d, ("a",))
    for value, err in (("inherit\n", errno.EINVAL), ("start\n", errno.EOPNOTSUPP),
                       ("bogus\n", errno.EINVAL)):
        with pytest.raises(OSError) as e:
            write_state(rt / "state", value)
        assert e.value.errno == err, value
    log = read(rt / "log")
    assert "inherit is written to a resource's state" in log, log
    assert read(rt / "state") == "running\n"
    # a flow runtime has no runtime-wide state: its resources are commanded one by one
    conf = tmp_path / "flows.conf"
    conf.write_text("[runtime flows]\nbackend=lifecycle\n")
    f = ctlfs(f"--brokers={broker.bootstrap}", f"--config={conf}")
    os.mkdir(f.path("runtimes", "flows"))
    os.mkdir(f.path("runtimes", "flows", "f1"))
    with pytest.raises(OSError) as e:
        write_state(f.path("runtimes", "flows", "state"), "pause\n")
    assert e.value.errno == errno.EOPNOTSUPP
    assert "no runtime-wide state" in read(f.path("runtimes", "flows", "log"))
    with pytest.raises(OSError) as e:
        write_state(f.path("runtimes", "flows", "f1", "state"), "inherit\n")
    assert e.value.errno == errno.EOPNOTSUPP
    assert status_dict(f.path("runtimes", "flows", "status"))["desired"] == "-"
