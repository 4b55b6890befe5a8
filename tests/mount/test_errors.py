"""Every errno a user can get from the tree, and the start-up errors."""

import errno
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import (kill_and_reap, RUNTIME_FILES, RESOURCE_FILES, CTLFS_BIN, SLOW, START_TIMEOUT, _fusermount, command_lines, declare,
                      kcat_consume, mounted, read, sh, start_expecting_failure, status_dict,
                      wait_until, write_state)


def _errno_of(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


# ------------------------------------------------------------------ writes to state

BAD_INPUTS = [b"bogus", b"bogus\n", b"Pause\n", b"pause\n\n", b" pause\n", b"pause resume\n",
              b"pause\r\n", b"paus\n", b"\n", b"pause\x00\n", b"\xff\xfe\n"]


def test_invalid_verbs_are_einval_logged_and_never_published(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    write_state(res / "state", "pause\n")
    for data in BAD_INPUTS:
        assert _errno_of(write_state, res / "state", data) == errno.EINVAL, data
    raw = (res / "log").read_bytes()
    for c in (b"\x00", b"\r", b"\xff"):
        assert c not in raw, f"rejected input not escaped in the log ({c!r})"
    log = raw.decode()
    rejected = [ln for ln in log.splitlines() if "rejected" in ln]
    assert len(rejected) >= len(BAD_INPUTS), f"one `rejected` line per bad write:\n{log}"
    assert any("bogus" in ln for ln in rejected), log
    assert status_dict(res / "status")["last_error"] != "-"
    assert read(res / "state") == "paused\n"          # unchanged
    write_state(res / "state", "resume\n")
    # commands are ordered in the partition: a bad one published would sit
    # between these two
    verbs = [m["value"]["verb"] for m in kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")]
    assert verbs == ["pause", "resume"]


def test_lifecycle_verbs_are_eopnotsupp_on_a_kafka_resource(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    for verb in ("start\n", "stop\n"):
        assert _errno_of(write_state, res / "state", verb) == errno.EOPNOTSUPP, verb
    assert read(res / "state") == "running\n"
    assert status_dict(res / "status")["last_error"] != "-"
    write_state(res / "state", "pause\n")
    verbs = [m["value"]["verb"] for m in kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")]
    assert verbs == ["pause"]


def test_echo_of_a_bad_verb_fails_in_the_shell(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    # bash says why (dash prints "I/O error" for any failed write)
    p = subprocess.run(["bash", "-c", "echo bogus > state"], cwd=res, capture_output=True,
                       text=True, timeout=30 * SLOW)
    assert p.returncode != 0
    assert "Invalid argument" in p.stderr, p.stderr
    assert read(res / "state") == "running\n"


def test_write_at_nonzero_offset_is_einval(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    fd = os.open(res / "state", os.O_WRONLY)
    try:
        assert _errno_of(os.pwrite, fd, b"pause\n", 1) == errno.EINVAL
        # a verb split across two writes: the second is at offset 3
        assert _errno_of(os.pwrite, fd, b"se\n", 3) == errno.EINVAL
    finally:
        os.close(fd)
    assert read(res / "state") == "running\n"
    assert kcat_consume(broker.bootstrap, "ctlfs.rt1.commands") == []


def test_blank_writes_after_a_whole_value_are_nothing(broker, ctlfs):
    """A value's trailing blanks written by further write() calls in the same
    open (as a shell's printf may split 'pause\\n\\n') are accepted as nothing;
    anything else after the value is EINVAL, and one command went out."""
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    fd = os.open(res / "state", os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.write(fd, b"pause\n") == 6
        assert os.write(fd, b"\n") == 1
        assert os.write(fd, b" \t\n") == 3
        assert _errno_of(os.write, fd, b"resume\n") == errno.EINVAL
    finally:
        os.close(fd)
    assert read(res / "state") == "paused\n"
    assert [m["value"]["verb"] for m in kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")] \
        == ["pause"]
    # a blank write with no value before it in that open is still refused
    fd = os.open(res / "state", os.O_WRONLY)
    try:
        assert _errno_of(os.pwrite, fd, b"\n", 6) == errno.EINVAL
    finally:
        os.close(fd)
    # and the shell's way: one printf, two newlines
    p = subprocess.run(["bash", "-c", "printf 'resume\\n\\n' > state"], cwd=res,
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert p.returncode == 0, p.stderr
    assert read(res / "state") == "running\n"


def test_write_of_more_than_64_bytes_is_einval(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    assert _errno_of(write_state, res / "state", b"pause\n" + b" " * 59) == errno.EINVAL  # 65
    assert _errno_of(write_state, res / "state", b"pause" * 100) == errno.EINVAL
    assert read(res / "state") == "running\n"
    assert write_state(res / "state", b"pause\n") == 6            # the whole write accepted
    assert read(res / "state") == "paused\n"


def test_truncate_is_accepted_and_changes_nothing(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    sh("truncate -s 0 state", cwd=res)
    os.truncate(res / "state", 0)
    assert read(res / "state") == "running\n"
    fd = os.open(res / "state", os.O_WRONLY | os.O_TRUNC)      # what `>` does
    os.close(fd)
    assert read(res / "state") == "running\n"
    assert kcat_consume(broker.bootstrap, "ctlfs.rt1.commands") == []
    sh("echo pause > state", cwd=res)
    assert read(res / "state") == "paused\n"


READ_ONLY = ["README", "status", "log", "metrics", "runtimes/rt1/status", "runtimes/rt1/log",
             "runtimes/rt1/observed",
             "runtimes/rt1/svc/observed", "runtimes/rt1/svc/status", "runtimes/rt1/svc/log"]


def test_read_only_files_cannot_be_opened_for_writing(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    for rel in READ_ONLY:
        path = d.path(*rel.split("/"))
        for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND):
            e = _errno_of(os.open, path, flags)
            assert e in (errno.EACCES, errno.EPERM, errno.EBADF, errno.EROFS), \
                f"open({rel}, {flags:#o}): {errno.errorcode.get(e)}"
        assert read(path).endswith("\n") or read(path) == "", rel   # still readable


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_other_user_cannot_issue_commands(broker, ctlfs):
    # a mount point that uid 65534 can reach (pytest's tmp dir is 0700)
    top = Path(tempfile.mkdtemp(prefix="ctlfs-acl-"))
    try:
        os.chmod(top, 0o755)
        d = ctlfs(f"--brokers={broker.bootstrap}", "-o", "allow_other", mnt=top / "mnt")
        res = declare(d)
        log_before = read(res / "log")
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "bash", "-c", "cat state && echo pause > state"],
                           cwd=res, capture_output=True, text=True, timeout=30 * SLOW)
        assert p.stdout == "running\n", p.stderr          # reading is allowed
        assert p.returncode != 0 and "Permission denied" in p.stderr, p.stderr
        assert read(res / "state") == "running\n"
        assert read(res / "log") != log_before             # the refusal is logged
        assert status_dict(res / "status")["last_error"] != "-"
        assert kcat_consume(broker.bootstrap, "ctlfs.rt1.commands") == []
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "mkdir", "runtimes/rt2"], cwd=d.mnt, capture_output=True,
                           text=True, timeout=30 * SLOW)
        assert p.returncode != 0 and "Permission denied" in p.stderr, p.stderr
        assert os.listdir(d.path("runtimes")) == ["rt1"]
        d.stop()
    finally:
        if mounted(top / "mnt"):
            _fusermount(["-uz"], top / "mnt")
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_admin_group_members_may_issue_commands(broker, ctlfs):
    import grp
    group = grp.getgrgid(65534).gr_name          # nogroup on Debian
    top = Path(tempfile.mkdtemp(prefix="ctlfs-acl-"))
    try:
        os.chmod(top, 0o755)
        d = ctlfs(f"--brokers={broker.bootstrap}", f"--admin-group={group}",
                  "-o", "allow_other", mnt=top / "mnt")
        res = declare(d)
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "bash", "-c", "echo pause > state"],
                           cwd=res, capture_output=True, text=True, timeout=30 * SLOW)
        assert p.returncode == 0, p.stderr
        assert read(res / "state") == "paused\n"
        line = [ln for ln in command_lines(read(res / "log"), "pause") if "result=sent" in ln]
        assert line and " by=uid:65534(" in line[0], read(res / "log")
        [m] = kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")
        assert m["value"]["issued_by"]["uid"] == 65534
        d.stop()
    finally:
        if mounted(top / "mnt"):
            _fusermount(["-uz"], top / "mnt")
        shutil.rmtree(top, ignore_errors=True)


# ------------------------------------------------------------------ mkdir / rmdir

BAD_NAMES = ["bad name", "x" * 129, "a*b", "tab\there", "caf\u00e9", "a:b", "semi;colon",
             "new\nline", "quote'"]


def test_invalid_names_are_einval(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    rts = d.path("runtimes")
    for name in BAD_NAMES:
        assert _errno_of(os.mkdir, rts / name) == errno.EINVAL, repr(name)
    assert os.listdir(rts) == []
    os.mkdir(rts / "rt1")
    for name in BAD_NAMES:
        assert _errno_of(os.mkdir, rts / "rt1" / name) == errno.EINVAL, repr(name)
    assert sorted(os.listdir(rts / "rt1")) == RUNTIME_FILES
    # the edges of the rule are valid
    for name in ["x" * 128, "A-z_0.9", "-", "..."]:
        os.mkdir(rts / "rt1" / name)
    assert sorted(os.listdir(rts / "rt1")) == sorted(RUNTIME_FILES + ["x" * 128, "A-z_0.9",
                                                                      "-", "..."])


def test_mkdir_of_an_existing_object_is_eexist(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    assert _errno_of(os.mkdir, d.path("runtimes", "rt1")) == errno.EEXIST
    assert _errno_of(os.mkdir, d.path("runtimes", "rt1", "svc")) == errno.EEXIST


def test_mkdir_outside_the_declarable_places_fails(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    for where in [("newdir",), ("runtimes", "rt1", "svc", "sub")]:
        with pytest.raises(OSError):
            os.mkdir(d.path(*where))
    assert "newdir" not in os.listdir(d.mnt)
    assert sorted(os.listdir(d.path("runtimes", "rt1", "svc"))) == \
        RESOURCE_FILES


def test_rmdir_of_a_runtime_with_resources_is_enotempty(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    rt = d.path("runtimes", "rt1")
    assert _errno_of(os.rmdir, rt) == errno.ENOTEMPTY
    assert os.path.isdir(rt / "svc")
    os.rmdir(rt / "svc")
    assert sorted(os.listdir(rt)) == RUNTIME_FILES
    os.rmdir(rt)
    assert os.listdir(d.path("runtimes")) == []


def test_missing_objects_are_enoent(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    for rel in ["runtimes/nope", "runtimes/nope/status", "runtimes/rt1/nope",
                "runtimes/rt1/nope/state", "runtimes/rt1/svc/nope", "nope"]:
        path = d.path(*rel.split("/"))
        assert _errno_of(os.stat, path) == errno.ENOENT, rel
        assert _errno_of(os.open, path, os.O_RDONLY) == errno.ENOENT, rel
    assert _errno_of(os.rmdir, d.path("runtimes", "nope")) == errno.ENOENT
    assert _errno_of(os.rmdir, d.path("runtimes", "rt1", "nope")) == errno.ENOENT
    assert _errno_of(os.mkdir, d.path("runtimes", "nope", "svc")) == errno.ENOENT


def test_write_to_a_removed_resource_is_enoent(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    fd = os.open(res / "state", os.O_WRONLY)
    try:
        os.rmdir(res)
        assert _errno_of(os.write, fd, b"pause\n") == errno.ENOENT
    finally:
        os.close(fd)
    assert kcat_consume(broker.bootstrap, "ctlfs.rt1.commands") == []


# ------------------------------------------------------------------ broker down

def test_durable_write_times_out_when_broker_down_and_is_never_delivered(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}", "--ack-timeout-ms=1500")
    res = declare(d)
    write_state(res / "state", "resume\n")       # link up, topic created
    broker.fault("down 1")
    t0 = time.monotonic()
    assert _errno_of(write_state, res / "state", "pause\n") == errno.ETIMEDOUT
    elapsed = time.monotonic() - t0
    assert 1.3 <= elapsed <= 1.5 + 10 * SLOW, f"ETIMEDOUT after {elapsed:.2f}s, timeout 1.5s"

    assert read(res / "state") == "running\n"        # the failed write changed nothing
    st = status_dict(res / "status")
    assert st["last_error"] != "-"
    assert st["last_command"].endswith(" pause failed"), st["last_command"]
    failed_id = st["last_command"].split()[0]
    failed = [ln for ln in command_lines(read(res / "log"), "pause") if "result=failed" in ln]
    assert failed and f"id={failed_id}" in failed[-1], read(res / "log")
    wait_until(lambda: status_dict(d.path("status"))["broker_link"] == "down",
               what="root status broker_link: down")

    broker.fault("up 1")

    def resume_goes_through():
        try:
            write_state(res / "state", "resume\n")
            return True
        except TimeoutError:
            return False
    wait_until(resume_goes_through, timeout=30 * SLOW, interval=0.2,
               what="a write succeeding after `up 1`")
    wait_until(lambda: status_dict(d.path("status"))["broker_link"] == "up",
               what="root status broker_link: up")
    msgs = kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")
    # the producer keeps order: a late delivery of the pause would come before
    # the resume that just went through
    assert [m["value"]["verb"] for m in msgs if m["value"]["verb"] == "pause"] == [], \
        [m["payload"] for m in msgs]
    assert failed_id not in [m["value"]["id"] for m in msgs]
    assert read(res / "state") == "running\n"
    assert status_dict(res / "status")["last_command"].endswith(" resume sent") or \
        status_dict(res / "status")["last_command"].endswith(" resume applied")


# ------------------------------------------------------------------ start-up errors



@pytest.mark.parametrize("args,names", [
    (["--no-such-option"], ["no-such-option"]),
    (["--write-mode=sometimes"], ["write-mode", "write_mode"]),
    (["--ack-timeout-ms=soon"], ["ack-timeout-ms", "ack_timeout_ms"]),
    (["--stale-after-ms=-5"], ["stale-after-ms", "stale_after_ms"]),
    (["--config=/nonexistent/ctlfs.conf"], ["/nonexistent/ctlfs.conf"]),
    (["-o", "write_mode=sometimes"], ["write_mode", "write-mode"]),
    (["-o", "no_such_option=1"], ["no_such_option"]),
    (["--dialect=klingon"], ["dialect"]),
    (["--backend=carrier-pigeon"], ["backend"]),
    (["--expire=sometimes"], ["expire"]),
    (["--expire-after-ms=-1"], ["expire-after-ms"]),
    (["-o", "rama_timeout_ms=0"], ["rama-timeout-ms", "rama_timeout_ms"]),
], ids=["unknown", "write-mode", "ack-timeout", "stale-after", "config", "o-write-mode",
        "o-unknown", "dialect", "backend", "expire", "expire-after", "o-rama-timeout"])
def test_bad_option_exits_2_with_one_line(tmp_path, args, names):
    if not CTLFS_BIN.exists():
        pytest.fail(f"{CTLFS_BIN} is not built")
    p = start_expecting_failure([f"--db={tmp_path / 'x.db'}"] + args, tmp_path / "mnt")
    assert p.returncode == 2, f"exit {p.returncode}, stderr: {p.stderr}"
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{p.stderr}"
    assert any(n in lines[0] for n in names), f"error does not name the option: {lines[0]}"


def test_bad_option_without_foreground_exits_2(tmp_path):
    if not CTLFS_BIN.exists():
        pytest.fail(f"{CTLFS_BIN} is not built")
    p = start_expecting_failure([f"--db={tmp_path / 'x.db'}", "--write-mode=sometimes"],
                                 tmp_path / "mnt", foreground=False)
    assert p.returncode == 2, f"exit {p.returncode}, stderr: {p.stderr}"
    assert "write" in p.stderr


def test_unreadable_config_exits_2(tmp_path):
    if not CTLFS_BIN.exists():
        pytest.fail(f"{CTLFS_BIN} is not built")
    conf = tmp_path / "ctlfs.conf"
    conf.mkdir()                     # a directory cannot be read as a file, even by root
    p = start_expecting_failure([f"--db={tmp_path / 'x.db'}", f"--config={conf}"],
                                 tmp_path / "mnt")
    assert p.returncode == 2, f"exit {p.returncode}, stderr: {p.stderr}"
    assert str(conf) in p.stderr


def test_config_with_an_unknown_key_exits_2(tmp_path):
    if not CTLFS_BIN.exists():
        pytest.fail(f"{CTLFS_BIN} is not built")
    conf = tmp_path / "ctlfs.conf"
    conf.write_text("[ctlfs]\nwrite-mode=queued\nno-such-key=1\n")
    p = start_expecting_failure([f"--db={tmp_path / 'x.db'}", f"--config={conf}"],
                                 tmp_path / "mnt")
    assert p.returncode == 2, f"exit {p.returncode}, stderr: {p.stderr}"
    assert "no-such-key" in p.stderr


@pytest.mark.parametrize("text,names", [
    ("[runtime rt1]\ndialect=klingon\n", ["dialect", "klingon"]),
    ("[runtime rt1]\nwrite-mode=queued\n", ["write-mode", "runtime rt1"]),
    ("[runtime bad/name]\ndialect=mia\n", ["bad/name"]),
    ("[rama]\nclli=/usr/bin/rama\n", ["clli"]),
    ("[rama]\ntimeout-ms=never\n", ["timeout-ms", "never"]),
    ("[janitor]\nx=1\n", ["janitor"]),
], ids=["runtime-dialect", "runtime-key", "runtime-name", "rama-key", "rama-value", "group"])
def test_config_runtime_and_rama_groups_are_checked(tmp_path, text, names):
    """[runtime RT] and [rama] groups: a bad key, value or name is a one-line
    error naming it, exit 2, nothing mounted."""
    if not CTLFS_BIN.exists():
        pytest.fail(f"{CTLFS_BIN} is not built")
    conf = tmp_path / "ctlfs.conf"
    conf.write_text(text)
    p = start_expecting_failure([f"--db={tmp_path / 'x.db'}", f"--config={conf}"],
                                 tmp_path / "mnt")
    assert p.returncode == 2, f"exit {p.returncode}, stderr: {p.stderr}"
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{p.stderr}"
    assert all(n in lines[0] for n in names), f"error does not name {names}: {lines[0]}"


def test_a_waiting_write_does_not_block_other_requests(broker, ctlfs):
    """One slow command (broker down, durable) never blocks the rest of the tree:
    reads, mkdir and listings are answered while it waits."""
    d = ctlfs(f"--brokers={broker.bootstrap}", "--ack-timeout-ms=4000")
    res = declare(d)
    write_state(res / "state", "resume\n")
    broker.fault("down 1")
    outcome = {}

    def slow():
        outcome["errno"] = _errno_of(write_state, res / "state", "pause\n")
    t = threading.Thread(target=slow)
    t.start()
    try:
        wait_until(lambda: status_dict(res / "status")["pending"] != "-",
                   what="the write to be pending")
        # all of this is answered while the write above still waits for the broker
        assert read(d.path("status")).startswith("version: ")
        assert read(res / "state") == "running\n"
        os.mkdir(d.path("runtimes", "rt1", "other"))
        assert read(d.path("runtimes", "rt1", "other", "observed")) == "unknown\n"
        assert "other" in os.listdir(d.path("runtimes", "rt1"))
        assert t.is_alive(), "the slow write returned before the other requests were served"
    finally:
        t.join(30 * SLOW)
    assert outcome.get("errno") == errno.ETIMEDOUT, outcome


def test_start_on_a_stale_mount_says_how_to_clear_it(broker, ctlfs, tmp_path):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    kill_and_reap(d.proc, d.mnt)       # kill -9: the mount stays, its daemon gone
    d.checked = True
    try:
        with pytest.raises(OSError) as e:
            os.listdir(d.mnt)
        assert e.value.errno == errno.ENOTCONN
        # (not start_expecting_failure: the stale mount is in mountinfo already)
        p = subprocess.run([str(CTLFS_BIN), "-f", f"--brokers={broker.bootstrap}", f"--db={d.db}",
                            str(d.mnt)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=30 * SLOW)
        assert p.returncode == 2, p.stderr
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "stale" in lines[0] and f"fusermount3 -u {d.mnt}" in lines[0], \
            p.stderr
    finally:
        _fusermount(["-u"], d.mnt)
    d2 = ctlfs(f"--brokers={broker.bootstrap}", db=d.db, mnt=d.mnt)
    assert read(d2.path("runtimes", "rt1", "svc", "state")) == "running\n"


def test_mounting_over_a_ctlfs_mount_is_refused(broker, ctlfs, tmp_path):
    """The kernel would stack a new, empty tree over the first: refused with
    one line naming fusermount3 -u; the first mount goes on untouched and
    the second database is never created."""
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    db = tmp_path / "second.db"
    p = subprocess.run([str(CTLFS_BIN), "-f", f"--db={db}", str(d.mnt)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=START_TIMEOUT)
    assert p.returncode == 1, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"fusermount3 -u {d.mnt}" in lines[0], p.stderr
    assert "already a FUSE mount" in lines[0], lines
    assert p.stdout == "" and not db.exists()
    assert read(d.path("runtimes", "rt1", "svc", "state")) == "running\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace")
def test_no_access_to_dev_fuse_says_so_and_creates_nothing(tmp_path):
    """As a user who may not open /dev/fuse (a private mount namespace where it
    is a mode-000 file): libfuse's message intact, exit 1, and neither a
    database nor the embedded broker's bootstrap= line, since nothing was
    mounted."""
    top = Path(tempfile.mkdtemp(prefix="ctlfs-nofuse-"))
    try:
        os.chmod(top, 0o777)
        blocker = top / "no-fuse"
        blocker.touch(mode=0o000)
        (top / "mnt").mkdir()
        os.chmod(top / "mnt", 0o777)
        script = (f"mount --bind {blocker} /dev/fuse && exec setpriv --reuid=65534 "
                  f"--regid=65534 --clear-groups {CTLFS_BIN} -f --db={top / 'x.db'} "
                  f"{top / 'mnt'}")
        p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=START_TIMEOUT)
        assert p.returncode == 1, p.stderr
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, p.stderr
        assert "failed to open /dev/fuse: Permission denied" in lines[0], lines
        assert p.stdout == "", p.stdout
        assert not (top / "x.db").exists()
    finally:
        shutil.rmtree(top, ignore_errors=True)
