"""Rama dynamic options at every level the CLI has (seed 002, `rama setOption
<module,topology,pstate,depot> MOD [OBJECT] NAME VALUEJSON`), module and
topology names as Rama allows them, and no-op scaling, on real mounts with
tests/fake-rama as the CLI (it records every call)."""

import errno
import os
import threading
import time

import pytest

from conftest import (command_lines, kv, parse_status, read, start_expecting_failure,
                      status_dict, wait_until, write_state)
from test_rama import BACKGROUND, calls, module_status, rama, write_errno  # noqa: F401 (fixture)
from test_rama_options import set_errno, set_option


def declare(d, module="m1"):
    mod = d.path("modules", module)
    os.mkdir(mod)
    os.mkdir(mod / "topologies" / "t1")
    os.mkdir(mod / "depots" / "*depot")
    os.mkdir(mod / "pstates" / "$$p")
    return mod


# the seed's own examples (rama deploy --topologyOptions, --depotOptions, --pstateOptions)
LEVELS = [
    ("topologies/t1", "topology", "t1", "topology.combiner.limit", "99"),
    ("depots/*depot", "depot", "*depot", "depot.max.fetch", "251"),
    ("pstates/$$p", "pstate", "$$p", "pstate.reactivity.queue.limit", "499"),
]


def test_options_at_every_level_run_setoption_with_their_object(rama):
    d, fake = rama()
    mod = declare(d)
    assert sorted(os.listdir(mod / "depots")) == ["*depot"]
    assert sorted(os.listdir(mod / "pstates")) == ["$$p"]
    assert os.listdir(mod / "depots" / "*depot") == ["options"]
    assert os.listdir(mod / "pstates" / "$$p") == ["options"]
    for owner, level, obj, name, value in LEVELS:
        opts = mod / owner / "options"
        assert os.listdir(opts) == []
        assert set_option(opts / name, value) == len(value) + 1
        assert calls(fake, "setOption")[-1]["argv"] == ["setOption", level, "m1", obj, name, value]
        assert read(opts / name) == value + "\n"
        assert os.listdir(opts) == [name]
    # a module-level option of the same name is another file, another call
    set_option(mod / "options" / "depot.max.fetch", "100")
    assert calls(fake, "setOption")[-1]["argv"] == ["setOption", "module", "m1",
                                                     "depot.max.fetch", "100"]
    assert read(mod / "depots" / "*depot" / "options" / "depot.max.fetch") == "251\n"
    # commands on the module, in its log, naming level and object
    lines = command_lines(read(mod / "log"), "setOption")
    assert [kv(ln)["result"] for ln in lines] == ["queued", "applied"] * 4
    assert [(kv(ln).get("level"), kv(ln).get("object")) for ln in lines[1::2]] == [
        ("topology", "t1"), ("depot", "*depot"), ("pstate", "$$p"), (None, None)]
    _, mst, _ = module_status(mod)
    assert mst["last_command"].endswith(" setOption applied")
    # a bad value: EINVAL with its reason, nothing run
    n = len(calls(fake, "setOption"))
    opt = mod / "depots" / "*depot" / "options" / "depot.max.fetch"
    assert set_errno(opt, "{") == errno.EINVAL
    assert set_errno(opt, "x" * 300) == errno.EINVAL
    assert len(calls(fake, "setOption")) == n
    rejected = [ln for ln in read(mod / "log").splitlines() if " rejected " in ln]
    assert any("not JSON" in ln for ln in rejected) and any("256 bytes" in ln for ln in rejected)
    # a failing CLI: EIO, the message in status, the last value applied stays
    (fake / "fail").write_text("setOption\n")
    assert set_errno(opt, "7") == errno.EIO
    assert read(opt) == "251\n"
    assert "simulated by fake-rama" in module_status(mod)[1]["last_error"]
    (fake / "fail").write_text("")


def test_a_command_on_the_module_makes_every_level_busy(rama):
    d, fake = rama()
    mod = declare(d)
    (fake / "delay_ms").write_text("3000")
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("n", write_state(mod / "scale",
                                                                        "workers=2")))
    t.start()
    wait_until(lambda: calls(fake, "scaleExecutors"), what="scaleExecutors started")
    for owner, *_ in LEVELS:
        assert set_errno(mod / owner / "options" / "o", "1") == errno.EBUSY, owner
    t.join(30)
    (fake / "delay_ms").write_text("")
    assert box.get("n") == len("workers=2")
    assert calls(fake, "setOption") == []


def test_depot_and_pstate_names_and_removal(rama):
    d, fake = rama()
    mod = declare(d)
    for parent, bad in (("depots", "depot"), ("depots", "*"), ("depots", "*a b"),
                        ("depots", "$$p"), ("pstates", "$p"), ("pstates", "$$"),
                        ("pstates", "p"), ("pstates", "*d")):
        with pytest.raises(OSError) as ei:
            os.mkdir(mod / parent / bad)
        assert ei.value.errno == errno.EINVAL, (parent, bad)
    log = read(mod / "log")
    assert "does not start with *" in log and "does not start with $$" in log
    # only options/ in a depot; depots/, pstates/, options/ go with their owners
    for path in ("depots/*depot/sub", "pstates/$$p/sub"):
        with pytest.raises(OSError) as ei:
            os.mkdir(mod / path)
        assert ei.value.errno == errno.EPERM, path
    for path in ("depots", "pstates", "depots/*depot/options", "topologies/t1/options"):
        with pytest.raises(OSError) as ei:
            os.rmdir(mod / path)
        assert ei.value.errno == errno.EPERM, path
    # rmdir of a depot, PState or topology takes its options (nothing runs)
    set_option(mod / "depots" / "*depot" / "options" / "depot.max.fetch", "3")
    set_option(mod / "topologies" / "t1" / "options" / "o", "4")
    n = len(calls(fake))
    os.unlink(mod / "topologies" / "t1" / "options" / "o")
    os.rmdir(mod / "depots" / "*depot")
    assert os.listdir(mod / "depots") == []
    assert [c for c in calls(fake)[n:] if c["argv"][0] not in BACKGROUND] == []
    # the module is not empty while it has a topology or a PState
    with pytest.raises(OSError) as ei:
        os.rmdir(mod)
    assert ei.value.errno == errno.ENOTEMPTY
    line = [ln for ln in read(d.path("log")).splitlines() if " rejected " in ln][-1]
    assert "still holds 2 objects" in line, line      # t1 and $$p, not its directories
    os.rmdir(mod / "topologies" / "t1")
    with pytest.raises(OSError) as ei:
        os.rmdir(mod)
    assert ei.value.errno == errno.ENOTEMPTY
    os.rmdir(mod / "pstates" / "$$p")
    os.rmdir(mod)
    assert os.listdir(d.path("modules")) == []
    root = read(d.path("log"))
    assert " modules/m1/depots/*depot created " in root
    assert " modules/m1/depots/*depot removed " in root


def test_levels_survive_a_restart(rama):
    d, fake = rama()
    mod = declare(d)
    paths = []
    for owner, _, _, name, value in LEVELS:
        set_option(mod / owner / "options" / name, value)
        paths.append(mod / owner / "options" / name)
    inodes = {p: os.stat(p).st_ino for p in paths + [mod / "depots" / "*depot"]}
    d.stop()
    d2, _ = rama(db=d.db, mnt=d.mnt)
    assert {p: os.stat(p).st_ino for p in inodes} == inodes
    assert [read(p) for p in paths] == [v + "\n" for *_, v in LEVELS]
    set_option(paths[2], "500")
    assert calls(fake, "setOption")[-1]["argv"] == [
        "setOption", "pstate", "m1", "$$p", "pstate.reactivity.queue.limit", "500"]


def test_queued_option_of_a_depot_is_set_again_after_a_restart(rama):
    d, fake = rama("--write-mode=queued")
    mod = declare(d)
    opt = mod / "depots" / "*depot" / "options" / "depot.max.fetch"
    (fake / "delay_ms").write_text("60000")
    set_option(opt, "9")
    wait_until(lambda: calls(fake, "setOption"), what="setOption started")
    d.stop()
    (fake / "delay_ms").write_text("")
    rama("--write-mode=queued", db=d.db, mnt=d.mnt)
    wait_until(lambda: read(opt) == "9\n", what="queued setOption run again")
    assert [c["argv"] for c in calls(fake, "setOption")] == [
        ["setOption", "depot", "m1", "*depot", "depot.max.fetch", "9"]] * 2


def test_module_and_topology_names_as_rama_allows(rama):
    d, fake = rama()
    name = "com.example.MyModule$Inner"
    mod = d.path("modules", name)
    os.mkdir(mod)
    os.mkdir(mod / "topologies" / "whoToFollow$2")
    write_state(mod / "topologies" / "whoToFollow$2" / "state", "pause")
    assert calls(fake, "pauseTopology")[-1]["argv"] == ["pauseTopology", name, "whoToFollow$2"]
    wait_until(lambda: [c for c in calls(fake, "moduleStatus") if c["argv"][1] == name],
               what="moduleStatus of the nested module")
    assert sorted(os.listdir(d.path("modules"))) == [name]
    for bad in ("a b", "a:b", "x" * 129, "*d", "a\\b"):
        with pytest.raises(OSError) as ei:
            os.mkdir(d.path("modules", bad))
        assert ei.value.errno == errno.EINVAL, bad
    assert "the name holds ' ' (a space)" in read(d.path("log"))
    # a name of a directory of the tree is still not one
    with pytest.raises(OSError) as ei:
        os.mkdir(mod / "topologies" / "..")
    assert ei.value.errno in (errno.EEXIST, errno.EINVAL)


def test_noop_scale_runs_scale_executors_with_no_number(rama):
    d, fake = rama()
    os.mkdir(d.path("modules", "m1"))
    scale = d.path("modules", "m1", "scale")
    write_state(scale, "workers=3")
    for noop in ("noop\n", "\n", "noop"):
        assert write_state(scale, noop) == len(noop)
        assert calls(fake, "scaleExecutors")[-1]["argv"] == ["scaleExecutors", "--module", "m1"]
        assert read(scale) == "workers=3\n"        # no number changed
    lines = command_lines(read(d.path("modules", "m1", "log")), "scale")
    assert [kv(ln).get("args") for ln in lines[3::2]] == ["noop"] * 3
    assert [kv(ln)["result"] for ln in lines] == ["queued", "applied"] * 4
    # every refusal says why, in the log and in status
    for bad, why in (("noop workers=1", "expected workers=N"), ("workers=0", "positive integer"),
                     ("workers=1 workers=2", "given twice"), ("-", "expected workers=N"),
                     ("x" * 70, "longer than 64 bytes")):
        assert write_errno(scale, bad) == errno.EINVAL, bad
        rejected = [ln for ln in read(d.path("modules", "m1", "log")).splitlines()
                    if " rejected " in ln][-1]
        assert why in kv(rejected)["reason"], (bad, rejected)
        assert why in module_status(d.path("modules", "m1"))[1]["last_error"]
    assert len(calls(fake, "scaleExecutors")) == 4


# ---------------------------------------------------------------- [rama] internal-hostnames

def test_internal_hostnames_go_to_the_commands_that_take_them(rama):
    d, fake = rama("-o", "rama_internal_hostnames=true")
    mod = declare(d)
    topo = mod / "topologies" / "t1"
    write_state(topo / "state", "pause")
    set_option(topo / "options" / "topology.combiner.limit", "99")
    write_state(mod / "scale", "workers=2")
    flag = "--useInternalHostnames"
    assert calls(fake, "pauseTopology")[-1]["argv"] == ["pauseTopology", "m1", "t1", flag]
    assert calls(fake, "setOption")[-1]["argv"] == [
        "setOption", "topology", "m1", "t1", "topology.combiner.limit", "99", flag]
    # the seed gives scaleExecutors no such flag: it is not passed
    assert calls(fake, "scaleExecutors")[-1]["argv"] == [
        "scaleExecutors", "--module", "m1", "--workers", "2"]
    wait_until(lambda: calls(fake, "taskGroupsStatus"), what="taskGroupsStatus")
    assert all(c["argv"][-1] == flag for c in calls(fake, "moduleStatus")
               + calls(fake, "taskGroupsStatus"))
    # and they worked: the fake refuses the flag where the CLI does not take it
    assert read(topo / "observed") == "paused\n"
    assert module_status(mod)[1]["exit_status"] == "0"


def test_internal_hostnames_setting_is_checked(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[rama]\ninternal-hostnames = yes\n")
    p = start_expecting_failure([f"--config={conf}", f"--db={tmp_path / 'x.db'}"],
                                tmp_path / "mnt2")
    assert p.returncode != 0 and "expected true or false" in p.stderr, p.stderr


# ---------------------------------------------------------------- task-groups

def task_groups(mod):
    text = read(mod / "task-groups")
    head, sep, output = text.partition("output:\n")
    assert sep, text
    return dict(parse_status(head)), [ln[2:] for ln in output.splitlines()]


def test_task_groups_of_the_instance_moduleStatus_names(rama):
    d, fake = rama("--rama-refresh-ms=0")
    mod = d.path("modules", "m1")
    os.mkdir(mod)
    wait_until(lambda: task_groups(mod)[0]["module_instance"] == "1"
               and task_groups(mod)[0]["exit_status"] == "0", what="first taskGroupsStatus")
    st, out = task_groups(mod)
    assert list(st) == ["module_instance", "checked_at", "exit_status", "error"]
    assert st["error"] == "-" and out[0].startswith("Task group") and len(out) == 2
    assert calls(fake, "taskGroupsStatus")[-1]["argv"] == ["taskGroupsStatus", "m1", "1"]
    # reads never run the CLI
    n = len(calls(fake))
    for _ in range(5):
        read(mod / "task-groups")
    assert len(calls(fake)) == n
    # scaling makes a new instance: moduleStatus names it, its task groups follow
    write_state(mod / "scale", "workers=2 threads=2")
    wait_until(lambda: task_groups(mod)[0]["module_instance"] == "2"
               and len(task_groups(mod)[1]) == 5, what="task groups of instance 2")
    assert calls(fake, "taskGroupsStatus")[-1]["argv"] == ["taskGroupsStatus", "m1", "2"]
    assert " task-groups instance=2 exit=0" in read(mod / "log") or \
        " task-groups instance=1 exit=0" in read(mod / "log")
    # a failing taskGroupsStatus: its message, the exit status
    (fake / "fail").write_text("taskGroupsStatus\n")
    write_state(mod / "scale", "noop")
    wait_until(lambda: task_groups(mod)[0]["exit_status"] == "1", what="failed listing")
    assert "simulated by fake-rama" in task_groups(mod)[0]["error"]


def test_task_groups_say_why_when_no_instance_is_known(rama):
    d, fake = rama("--rama-refresh-ms=0")
    (fake / "fail").write_text("moduleStatus\n")
    mod = d.path("modules", "m1")
    os.mkdir(mod)
    wait_until(lambda: module_status(mod)[1]["exit_status"] == "1", what="failed moduleStatus")
    st, out = task_groups(mod)
    assert st["module_instance"] == "-" and st["exit_status"] == "-" and out == []
    assert st["error"].startswith("no module instance id known"), st
    assert calls(fake, "taskGroupsStatus") == []


# ---------------------------------------------------------------- the CLI's time

def test_a_cli_as_slow_as_a_jvm_start_is_waited_for(rama):
    """FAKE_RAMA_DELAY_MS=1500: a Clojure runtime's start on this machine under
    load (docs/seeds/rama.md, "The CLI timeout"); the default timeout-ms waits."""
    d, fake = rama(extra_env={"FAKE_RAMA_DELAY_MS": "1500"})
    mod = declare(d)
    topo = mod / "topologies" / "t1"
    t0 = time.monotonic()
    write_state(topo / "state", "pause")
    took = time.monotonic() - t0
    assert took >= 1.5, took
    assert read(topo / "observed") == "paused\n"
    assert status_dict(topo / "status")["last_error"] == "-"
    set_option(mod / "depots" / "*depot" / "options" / "depot.max.fetch", "3")
    assert read(mod / "depots" / "*depot" / "options" / "depot.max.fetch") == "3\n"


def test_a_jvm_start_slower_than_timeout_ms_is_killed(rama):
    d, fake = rama("--rama-timeout-ms=1000", extra_env={"FAKE_RAMA_DELAY_MS": "5000"})
    mod = declare(d)
    assert write_errno(mod / "topologies" / "t1" / "state", "pause") == errno.ETIMEDOUT
    st = status_dict(mod / "topologies" / "t1" / "status")
    assert "did not finish within 1000 ms" in st["last_error"], st
