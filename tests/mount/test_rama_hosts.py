"""Rama modules, topologies, options and scale seen by other admin hosts:
two (and three) daemons on one broker, each with its own database, mount and
fake `rama` CLI (tests/fake-rama, one $FAKE_RAMA_DIR per host, so that each
host's calls are its own). A declaration, removal, option value or scale
made on one host shows on the others through the tree topic; only the host
that took the write runs the CLI for it, while every host runs moduleStatus
itself."""

import os
import statistics
import time

from conftest import (RUNTIME_FILES, hostname, kcat_consume, kv, read, wait_until,
                      write_state)
from test_rama import BACKGROUND, FAKE, calls, module_status
from test_rama_options import set_option

TREE = "ctlfs.tree"


def host(ctlfs, broker, tmp_path, name, db=None, mnt=None):
    """A daemon with a fake CLI of its own: (daemon, its fake dir)."""
    fake = tmp_path / f"fake-{name}"
    fake.mkdir(exist_ok=True)
    env = dict(os.environ, FAKE_RAMA_DIR=str(fake))
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--rama-cli={FAKE}", db=db, mnt=mnt, env=env)
    return d, fake


def shows(d, *parts):
    wait_until(lambda: d.path(*parts).exists(), what=f"{'/'.join(parts)} on {d.mnt.name}")


def gone(d, *parts):
    wait_until(lambda: not d.path(*parts).exists(),
               what=f"{'/'.join(parts)} gone on {d.mnt.name}")


def reads(d, rel, text):
    path = d.path(*rel.split("/"))
    wait_until(lambda: read(path) == text, what=f"{rel} reading {text!r} on {d.mnt.name}")


def log_events(d, rel, event):
    return [ln for ln in read(d.path(*rel.split("/"), "log")).splitlines()
            if ln.split(" ")[2:3] == [event]]


def changing_calls(fake):
    """Calls that change the cluster (everything but moduleStatus and
    taskGroupsStatus)."""
    return [c["argv"] for c in calls(fake) if c["argv"][0] not in BACKGROUND]


def test_declared_set_and_scaled_on_one_host_shows_on_another(broker, ctlfs, tmp_path):
    (a, fa), (b, fb) = (host(ctlfs, broker, tmp_path, n) for n in ("a", "b"))
    os.mkdir(a.path("modules", "m1"))
    os.mkdir(a.path("modules", "m1", "topologies", "t1"))
    opts = a.path("modules", "m1", "options")
    set_option(opts / "replication.streaming.timeout.millis", "20000")
    write_state(a.path("modules", "m1", "scale"), "workers=3 threads=2\n")

    shows(b, "modules", "m1", "topologies", "t1")
    reads(b, "modules/m1/options/replication.streaming.timeout.millis", "20000\n")
    reads(b, "modules/m1/scale", "workers=3 threads=2\n")
    assert read(b.path("modules", "m1", "topologies", "t1", "state")) == "running\n"
    # the creation on b names who made it on a, and where in the tree topic
    [line] = log_events(b, "modules/m1", "created")[:1]
    assert f"host={hostname()}" in line and "tree_offset=" in line, line
    settings = log_events(b, "modules/m1", "peer-setting")
    assert {kv(ln)["setting"] for ln in settings} == {"scale", "value"}, settings
    # b ran no command for it (the cluster has the values already) ...
    assert changing_calls(fb) == []
    assert [c[:2] for c in changing_calls(fa)] == [["setOption", "module"],
                                                   ["scaleExecutors", "--module"]]
    # ... but asks the cluster itself for the module's status
    wait_until(lambda: module_status(b.path("modules", "m1"))[1]["checked_at"] != "-",
               what="moduleStatus on b")
    assert ["moduleStatus", "m1"] in [c["argv"] for c in calls(fb)]
    _, st, out = module_status(b.path("modules", "m1"))
    assert st["scale"] == "workers=3 threads=2" and out[0] == "Module: m1", (st, out)

    # a new value on b shows on a; a value that failed is told to nobody
    set_option(b.path("modules", "m1", "options", "replication.streaming.timeout.millis"), "5")
    reads(a, "modules/m1/options/replication.streaming.timeout.millis", "5\n")
    assert changing_calls(fb) == [["setOption", "module", "m1",
                                   "replication.streaming.timeout.millis", "5"]]
    (fa / "fail").write_text("setOption\n")
    try:
        set_option(opts / "flag", "true")
    except OSError:
        pass
    else:
        raise AssertionError("a failing setOption succeeded")
    shows(b, "modules", "m1", "options", "flag")          # declared: yes
    os.mkdir(a.path("modules", "m1", "topologies", "t2"))  # a later record, for ordering
    shows(b, "modules", "m1", "topologies", "t2")
    assert read(b.path("modules", "m1", "options", "flag")) == ""   # the value: no


def test_removal_on_one_host_removes_on_the_others(broker, ctlfs, tmp_path):
    (a, _), (b, fb) = (host(ctlfs, broker, tmp_path, n) for n in ("a", "b"))
    os.mkdir(a.path("modules", "m1"))
    os.mkdir(a.path("modules", "m1", "topologies", "t1"))
    for name, value in (("x", "1"), ("y", "2")):
        set_option(a.path("modules", "m1", "options", name), value)
    reads(b, "modules/m1/options/y", "2\n")
    os.unlink(a.path("modules", "m1", "options", "y"))
    gone(b, "modules", "m1", "options", "y")
    os.rmdir(b.path("modules", "m1", "topologies", "t1"))    # either host may remove
    gone(a, "modules", "m1", "topologies", "t1")
    os.rmdir(a.path("modules", "m1"))                        # with its option x
    gone(b, "modules", "m1")
    assert os.listdir(b.path("modules")) == []
    assert changing_calls(fb) == []
    # every key's last record in the tree topic says "removed", so that a
    # compacted topic keeps no option of a module that is gone
    last = {}
    for m in kcat_consume(broker.bootstrap, TREE):
        last[m["key"]] = m["value"]
    for key in ("modules:m1", "modules:m1/topologies/t1", "modules:m1/options/x",
                "modules:m1/options/y"):
        assert last[key]["declared"] is False, (key, last[key])
    # a newcomer reading all of it ends with nothing either
    c, _ = host(ctlfs, broker, tmp_path, "c")
    os.mkdir(a.path("modules", "m2"))
    shows(c, "modules", "m2")
    assert os.listdir(c.path("modules")) == ["m2"]


def test_module_keys_never_meet_runtime_keys(broker, ctlfs, tmp_path):
    (a, _), (b, _) = (host(ctlfs, broker, tmp_path, n) for n in ("a", "b"))
    os.mkdir(a.path("runtimes", "modules"))          # a runtime named like the directory
    os.mkdir(a.path("runtimes", "modules", "m1"))
    os.mkdir(a.path("modules", "m1"))
    shows(b, "runtimes", "modules", "m1")
    shows(b, "modules", "m1")
    os.rmdir(a.path("modules", "m1"))
    gone(b, "modules", "m1")
    assert sorted(os.listdir(b.path("runtimes", "modules"))) == sorted(RUNTIME_FILES + ["m1"])


def test_a_host_down_catches_up_a_new_one_sees_all_and_a_restart_duplicates_nothing(
        broker, ctlfs, tmp_path):
    (a, _), (b, fb) = (host(ctlfs, broker, tmp_path, n) for n in ("a", "b"))
    os.mkdir(a.path("modules", "m1"))
    set_option(a.path("modules", "m1", "options", "o1"), "1")
    reads(b, "modules/m1/options/o1", "1\n")
    b.stop()
    # while b is down
    set_option(a.path("modules", "m1", "options", "o1"), '{"a":2}')
    write_state(a.path("modules", "m1", "scale"), "workers=4\n")
    os.mkdir(a.path("modules", "m1", "topologies", "t1"))
    os.mkdir(a.path("modules", "m2"))
    os.mkdir(a.path("modules", "gone"))
    set_option(a.path("modules", "gone", "options", "o"), "3")
    os.rmdir(a.path("modules", "gone"))

    b2, _ = host(ctlfs, broker, tmp_path, "b", db=b.db, mnt=b.mnt)
    c, fc = host(ctlfs, broker, tmp_path, "c")           # an empty database
    for d in (b2, c):
        reads(d, "modules/m1/options/o1", '{"a":2}\n')
        reads(d, "modules/m1/scale", "workers=4\n")
        shows(d, "modules", "m1", "topologies", "t1")
        wait_until(lambda: sorted(os.listdir(d.path("modules"))) == ["m1", "m2"],
                   what=f"modules caught up on {d.mnt.name}")
    assert changing_calls(fb) == [] and changing_calls(fc) == []

    def story(d):
        return ([ln.split(" ", 1)[1] for ln in read(d.path("modules", "m1", "log")).splitlines()
                 if ln.split(" ")[2] in ("created", "peer-setting")],
                sorted(os.listdir(d.path("modules"))),
                read(d.path("modules", "m1", "options", "o1")))
    before = story(b2)
    assert len([ln for ln in before[0] if " created " in f" {ln}"]) == 2, before  # m1, t1
    b2.stop()
    os.mkdir(a.path("modules", "m3"))            # something new to wait for
    b3, _ = host(ctlfs, broker, tmp_path, "b", db=b.db, mnt=b.mnt)
    shows(b3, "modules", "m3")
    after = story(b3)
    assert after[0] == before[0] and after[2] == before[2], (before, after)
    assert after[1] == ["m1", "m2", "m3"]


def test_option_value_propagation_latency(broker, ctlfs, tmp_path):
    """How long an option value written on one host takes to read back on
    another, counted from the write's return (printed; the assertion is only
    that every one arrives)."""
    (a, _), (b, _) = (host(ctlfs, broker, tmp_path, n) for n in ("a", "b"))
    os.mkdir(a.path("modules", "m1"))
    set_option(a.path("modules", "m1", "options", "o"), "0")
    reads(b, "modules/m1/options/o", "0\n")
    delays, writes = [], []
    for i in range(1, 51):
        t0 = time.monotonic()
        set_option(a.path("modules", "m1", "options", "o"), str(i))
        t1 = time.monotonic()
        wait_until(lambda: read(b.path("modules", "m1", "options", "o")) == f"{i}\n",
                   interval=0.0005, what=f"value {i} on b")
        delays.append((time.monotonic() - t1) * 1000)
        writes.append((t1 - t0) * 1000)
    delays.sort()
    writes.sort()
    print(f"FIGURES rama_option_cross_host_ms p50={statistics.median(delays):.1f} "
          f"p98={delays[48]:.1f} max={delays[-1]:.1f} n=50 (write returns, CLI included: "
          f"p50={statistics.median(writes):.1f} max={writes[-1]:.1f})")


def test_every_option_level_and_rama_names_show_on_another_host(broker, ctlfs, tmp_path):
    """Depots, PStates and the options of topologies, depots and PStates (and
    a nested module's name with `$`) travel like a module's own options."""
    (a, fa), (b, fb) = (host(ctlfs, broker, tmp_path, n) for n in ("a", "b"))
    mod = "com.example.Mod$Inner"
    base = a.path("modules", mod)
    os.mkdir(base)
    os.mkdir(base / "topologies" / "t1")
    os.mkdir(base / "depots" / "*depot")
    os.mkdir(base / "pstates" / "$$p")
    set_option(base / "topologies" / "t1" / "options" / "topology.combiner.limit", "99")
    set_option(base / "depots" / "*depot" / "options" / "depot.max.fetch", "251")
    set_option(base / "pstates" / "$$p" / "options" / "pstate.reactivity.queue.limit", "499")
    reads(b, f"modules/{mod}/topologies/t1/options/topology.combiner.limit", "99\n")
    reads(b, f"modules/{mod}/depots/*depot/options/depot.max.fetch", "251\n")
    reads(b, f"modules/{mod}/pstates/$$p/options/pstate.reactivity.queue.limit", "499\n")
    assert changing_calls(fb) == []
    assert [c[:2] for c in changing_calls(fa)] == [["setOption", "topology"],
                                                   ["setOption", "depot"],
                                                   ["setOption", "pstate"]]
    # a depot removed on b (with its option) goes on a
    os.rmdir(b.path("modules", mod, "depots", "*depot"))
    gone(a, "modules", mod, "depots", "*depot")
    assert os.listdir(a.path("modules", mod, "depots")) == []
