"""Rama dynamic options as files (seed 002, `rama setOption`): a file created
in modules/MOD/options/ declares an option; a JSON value written to it runs
`rama setOption module MOD NAME VALUE` (here tests/fake-rama, which records
every call); reading it shows the last value applied. Rama has no unset:
unlink forgets the file and runs nothing."""

import errno
import os
import sqlite3
import stat
import subprocess
import threading

import pytest

from conftest import command_lines, kv, read, wait_until, write_state
from test_rama import (BACKGROUND, FAKE, MODULE_FILES, calls, module_status, rama,  # noqa: F401 (fixture)
                       write_errno)


def set_option(path, value):
    """What `echo VALUE > PATH` does: open with O_CREAT|O_TRUNC, one write."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return os.write(fd, (value + "\n").encode())
    finally:
        os.close(fd)


def set_errno(path, value):
    with pytest.raises(OSError) as ei:
        set_option(path, value)
    return ei.value.errno


def module(d, name="m1"):
    mod = d.path("modules", name)
    os.mkdir(mod)
    return mod


def test_set_options_run_setoption_with_the_value_as_given(rama):
    d, fake = rama()
    mod = module(d)
    opts = mod / "options"
    assert os.listdir(opts) == []
    values = {"replication.streaming.timeout.millis": "20000", "flag": "true",
              "label": '"str"', "map": '{"a":1}'}
    for name, value in values.items():
        assert set_option(opts / name, value) == len(value) + 1
        assert calls(fake, "setOption")[-1]["argv"] == ["setOption", "module", "m1", name, value]
        assert read(opts / name) == value + "\n"
    assert sorted(os.listdir(opts)) == sorted(values)
    st = os.stat(opts / "flag")
    assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o200 and st.st_size == len("true\n")
    assert st.st_ino != os.stat(opts / "label").st_ino
    # the shell's way, and a new value over an old one
    subprocess.run(["sh", "-c", f"echo 30000 > '{opts}/replication.streaming.timeout.millis'"],
                   check=True)
    assert calls(fake, "setOption")[-1]["argv"][-1] == "30000"
    assert read(opts / "replication.streaming.timeout.millis") == "30000\n"
    assert len(calls(fake, "setOption")) == 5
    # one command on the module each: queued then applied, in the module's log
    lines = command_lines(read(mod / "log"), "setOption")
    assert [kv(ln)["result"] for ln in lines] == ["queued", "applied"] * 5
    assert kv(lines[1])["option"] == "replication.streaming.timeout.millis"
    assert kv(lines[1])["args"] == "20000"
    _, mst, _ = module_status(mod)
    assert mst["last_command"].endswith(" setOption applied") and mst["last_error"] == "-"
    # options/ takes files only, and only there
    with pytest.raises(OSError) as ei:
        os.mkdir(opts / "sub")
    assert ei.value.errno == errno.EPERM
    with pytest.raises(OSError) as ei:
        os.rmdir(opts)
    assert ei.value.errno == errno.EPERM
    with pytest.raises(OSError) as ei:
        os.rmdir(opts / "flag")
    assert ei.value.errno == errno.ENOTDIR
    with pytest.raises(OSError) as ei:
        os.listdir(opts / "flag")
    assert ei.value.errno == errno.ENOTDIR
    for where in (mod / "topologies" / "x", d.path("runtimes", "x")):
        with pytest.raises(OSError) as ei:
            set_option(where, "1")
        assert ei.value.errno == errno.EPERM, where
    # the module's own directory has a writable file (scale): a file made there is a
    # private scratch file, to be renamed over it (docs/scripting.md); it runs nothing
    n = len(calls(fake))
    set_option(mod / "x", "1")
    os.unlink(mod / "x")
    assert not [c for c in calls(fake)[n:] if c["argv"][0] not in BACKGROUND]


def test_bad_values_and_names_are_einval_and_run_nothing(rama):
    d, fake = rama()
    opts = module(d) / "options"
    set_option(opts / "o", "1")
    for bad in ("", "{", "abc", "1 2", "[1,", "'x'", "1\n\n", "x" * 300, '"' + "x" * 300 + '"'):
        assert set_errno(opts / "o", bad) == errno.EINVAL, bad
    assert len(calls(fake, "setOption")) == 1, "a bad value reached the CLI"
    assert read(opts / "o") == "1\n"
    log = read(d.path("modules", "m1", "log"))
    assert log.count(" rejected ") == 9
    assert "not JSON" in log and "longer than 256 bytes" in log
    _, mst, _ = module_status(d.path("modules", "m1"))
    assert "not JSON" in mst["last_error"] or "longer than" in mst["last_error"], mst
    # not at offset 0
    fd = os.open(opts / "o", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as ei:
            os.pwrite(fd, b"2", 3)
        assert ei.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    # names as for objects
    for bad in ("a b", "a:b", "x" * 129):
        assert set_errno(opts / bad, "1") == errno.EINVAL, bad
    assert os.listdir(opts) == ["o"]
    assert len(calls(fake, "setOption")) == 1


def test_failing_cli_is_eio_with_its_message(rama):
    d, fake = rama()
    mod = module(d)
    opt = mod / "options" / "o"
    set_option(opt, "1")
    (fake / "fail").write_text("setOption\n")
    assert set_errno(opt, "2") == errno.EIO
    assert calls(fake, "setOption")[-1]["argv"][-1] == "2"
    assert read(opt) == "1\n"                   # the last value applied
    _, mst, _ = module_status(mod)
    assert "setOption failed (simulated by fake-rama)" in mst["last_error"], mst
    assert mst["last_command"].endswith(" setOption failed")
    failed = [ln for ln in command_lines(read(mod / "log"), "setOption") if " result=failed " in ln]
    assert len(failed) == 1 and kv(failed[0])["exit"] == "1"
    assert "simulated by fake-rama" in failed[0]
    # a new option whose first value fails stays declared, empty
    assert set_errno(mod / "options" / "new", "5") == errno.EIO
    assert read(mod / "options" / "new") == ""
    (fake / "fail").write_text("")
    set_option(opt, "3")
    assert read(opt) == "3\n"
    assert module_status(mod)[1]["last_error"] == "-"


def test_busy_while_another_cli_command_runs(rama):
    d, fake = rama()
    mod = module(d)
    opt = mod / "options" / "o"
    set_option(opt, "1")
    (fake / "delay_ms").write_text("3000")
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("n", write_state(mod / "scale", "workers=2")))
    t.start()
    wait_until(lambda: calls(fake, "scaleExecutors"), what="scaleExecutors started")
    assert set_errno(opt, "2") == errno.EBUSY
    t.join(30)
    (fake / "delay_ms").write_text("")
    assert box.get("n") == len("workers=2")
    assert len(calls(fake, "setOption")) == 1
    assert read(opt) == "1\n"


def test_values_survive_a_restart_and_unlink_forgets(rama):
    d, fake = rama()
    mod = module(d)
    opts = mod / "options"
    set_option(opts / "a", "20000")
    set_option(opts / "b", '{"x":[1,2]}')
    ino = os.stat(opts / "a").st_ino
    d.stop()
    d2, _ = rama(db=d.db, mnt=d.mnt)
    assert sorted(os.listdir(opts)) == ["a", "b"]
    assert read(opts / "a") == "20000\n" and read(opts / "b") == '{"x":[1,2]}\n'
    assert os.stat(opts / "a").st_ino == ino
    n = len(calls(fake))
    os.unlink(opts / "b")
    assert os.listdir(opts) == ["a"]
    assert not [c for c in calls(fake)[n:] if c["argv"][0] not in BACKGROUND], "unlink ran the CLI"
    assert " modules/m1/options/b option-forgotten " in read(mod / "log")
    with pytest.raises(OSError) as ei:
        os.unlink(mod / "scale")
    assert ei.value.errno == errno.EPERM
    # a module goes with its options
    os.rmdir(mod)
    os.mkdir(mod)
    assert os.listdir(opts) == []


def test_a_database_from_before_options_gets_them(rama):
    d, fake = rama()
    mod = module(d)
    os.mkdir(mod / "topologies" / "t1")
    d.stop()
    db = sqlite3.connect(d.db)
    # options/ did not exist, nor depots/ and pstates/ (kinds 10, 12)
    db.execute("DELETE FROM objects WHERE kind IN (8, 10, 12)")
    db.commit()
    db.close()
    d2, _ = rama(db=d.db, mnt=d.mnt)
    assert sorted(os.listdir(mod)) == MODULE_FILES
    assert os.listdir(mod / "topologies") == ["t1"]
    assert os.listdir(mod / "topologies" / "t1" / "options") == []
    os.mkdir(mod / "depots" / "*d")
    set_option(mod / "depots" / "*d" / "options" / "depot.max.fetch", "2")
    assert calls(fake, "setOption")[-1]["argv"] == ["setOption", "depot", "m1", "*d",
                                                     "depot.max.fetch", "2"]
    set_option(mod / "options" / "o", "false")
    assert read(mod / "options" / "o") == "false\n"


def test_queued_mode_sets_after_a_restart(rama):
    d, fake = rama("--write-mode=queued")
    mod = module(d)
    opt = mod / "options" / "o"
    (fake / "delay_ms").write_text("60000")
    set_option(opt, "7")
    wait_until(lambda: calls(fake, "setOption"), what="setOption started")
    d.stop()
    (fake / "delay_ms").write_text("")
    d2, _ = rama("--write-mode=queued", db=d.db, mnt=d.mnt)
    wait_until(lambda: read(opt) == "7\n", what="queued setOption run again")
    assert [c["argv"] for c in calls(fake, "setOption")] == [
        ["setOption", "module", "m1", "o", "7"]] * 2
