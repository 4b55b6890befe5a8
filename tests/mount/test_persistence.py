"""What survives an unmount: objects, desired state, history, feedback offsets,
the queued-mode outbox. And a database the daemon must refuse to use."""

import os
import re
import subprocess
import time

import pytest

from conftest import (CTLFS_BIN, SLOW, UUID, declare, handled, kcat_consume, mounted, read,
                      start_expecting_failure, status_dict, wait_until, write_state)


def _snapshot(d):
    """Everything a user would compare before and after a remount."""
    snap = {"runtimes": sorted(os.listdir(d.path("runtimes")))}
    for rt in snap["runtimes"]:
        snap[rt] = sorted(os.listdir(d.path("runtimes", rt)))
    return snap


def test_objects_state_and_history_survive_remount(broker, ctlfs, agent):
    args = [f"--brokers={broker.bootstrap}"]
    d = ctlfs(*args)
    res = declare(d)
    os.mkdir(d.path("runtimes", "rt1", "other"))
    os.mkdir(d.path("runtimes", "rt2"))
    a = agent(broker.bootstrap, "rt1", ["svc", "other"])
    write_state(res / "state", "pause\n")
    wait_until(lambda: read(res / "observed") == "paused\n", what="observed == paused")
    a.stop()

    # the daemon has consumed every feedback message there is
    n_feedback = len(kcat_consume(broker.bootstrap, "ctlfs.rt1.feedback"))
    assert n_feedback >= 1
    rt_status = d.path("runtimes", "rt1", "status")
    wait_until(lambda: handled(status_dict(rt_status)["feedback_offset"]) in (n_feedback,
                                                                              n_feedback + 1),
               what=f"feedback_offset reaching the {n_feedback} messages of the topic")

    before = _snapshot(d)
    logs = {rel: read(d.path(*rel.split("/")))
            for rel in ["log", "runtimes/rt1/log", "runtimes/rt1/svc/log"]}
    last_command = status_dict(res / "status")["last_command"]
    offset = status_dict(rt_status)["feedback_offset"]
    assert re.match(UUID.pattern[:-1] + r" pause applied$", last_command), last_command
    d.stop()

    d2 = ctlfs(*args, db=d.db, mnt=d.mnt)
    assert _snapshot(d2) == before
    assert read(res / "state") == "paused\n"
    assert read(d2.path("runtimes", "rt1", "other", "state")) == "running\n"
    for rel, text in logs.items():
        now = read(d2.path(*rel.split("/")))
        assert now.startswith(text), f"{rel} lost or rewrote history across the remount"
    st = status_dict(res / "status")
    assert st["desired"] == "paused"
    assert st["last_command"] == last_command
    # the last report survives (it may have aged into stale meanwhile)
    assert read(res / "observed") in ("paused\n", "stale\n")
    # feedback is neither lost nor consumed again
    assert status_dict(rt_status)["feedback_offset"] == offset
    assert len(kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")) == 1


def test_removed_objects_stay_removed_after_remount(broker, ctlfs):
    args = [f"--brokers={broker.bootstrap}"]
    d = ctlfs(*args)
    declare(d)
    os.mkdir(d.path("runtimes", "rt2"))
    os.rmdir(d.path("runtimes", "rt1", "svc"))
    os.rmdir(d.path("runtimes", "rt1"))
    d.stop()
    d2 = ctlfs(*args, db=d.db, mnt=d.mnt)
    assert os.listdir(d2.path("runtimes")) == ["rt2"]


def test_objects_loaded_at_start_can_be_removed_and_made_again(broker, ctlfs):
    """Objects read from the database at start live apart from those made
    later (docs/performance.md, "Scale at start"): removing them, making the
    same names again and listing must not tell the two apart."""
    args = [f"--brokers={broker.bootstrap}"]
    d = ctlfs(*args)
    declare(d)
    os.mkdir(d.path("runtimes", "rt1", "other"))
    os.mkdir(d.path("runtimes", "rt2"))
    d.stop()

    d2 = ctlfs(*args, db=d.db, mnt=d.mnt)
    rt1 = d2.path("runtimes", "rt1")
    os.rmdir(os.path.join(rt1, "svc"))
    assert "svc" not in os.listdir(rt1) and "other" in os.listdir(rt1)
    assert not os.path.exists(os.path.join(rt1, "svc", "state"))
    os.rmdir(d2.path("runtimes", "rt2"))
    assert os.listdir(d2.path("runtimes")) == ["rt1"]
    os.mkdir(os.path.join(rt1, "svc"))
    os.mkdir(d2.path("runtimes", "rt2"))
    assert sorted(os.listdir(d2.path("runtimes"))) == ["rt1", "rt2"]
    assert read(os.path.join(rt1, "svc", "state")) == "running\n"
    before = _snapshot(d2)
    assert "svc" in before["rt1"] and "other" in before["rt1"]
    d2.stop()

    d3 = ctlfs(*args, db=d.db, mnt=d.mnt)
    assert _snapshot(d3) == before


def test_queued_write_returns_without_broker_and_is_delivered_later(broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}", "--write-mode=queued", "--ack-timeout-ms=1500")
    assert status_dict(d.path("status"))["write_mode"] == "queued"
    res = declare(d)
    agent(broker.bootstrap)
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")
    broker.fault("down 1")
    t0 = time.monotonic()
    write_state(res / "state", "pause\n")      # committed to SQLite: no broker needed
    assert time.monotonic() - t0 < 1.5, "queued write waited for the broker"
    assert read(res / "state") == "paused\n"
    st = status_dict(res / "status")
    assert UUID.match(st["pending"]), st
    cmd_id = st["pending"]
    assert st["last_command"] == f"{cmd_id} pause queued"
    assert status_dict(d.path("status"))["pending_commands"] == "1"
    broker.fault("up 1")
    wait_until(lambda: read(res / "observed") == "paused\n", timeout=30 * SLOW,
               what="observed == paused after the broker came back")
    st = status_dict(res / "status")
    assert (st["pending"], st["last_command"]) == ("-", f"{cmd_id} pause applied")
    assert status_dict(d.path("status"))["pending_commands"] == "0"
    msgs = kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")
    assert [m["value"]["id"] for m in msgs] == [cmd_id]


def test_queued_outbox_survives_restart_and_delivers_once(broker, ctlfs, agent):
    args = [f"--brokers={broker.bootstrap}", "--write-mode=queued"]
    d = ctlfs(*args)
    res = declare(d)
    agent(broker.bootstrap)
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")
    broker.fault("down 1")
    write_state(res / "state", "pause\n")
    cmd_id = status_dict(res / "status")["pending"]
    assert UUID.match(cmd_id), cmd_id
    d.stop()                                   # with the command still in the outbox
    broker.fault("up 1")
    d2 = ctlfs(*args, db=d.db, mnt=d.mnt)
    st = status_dict(d2.path("runtimes", "rt1", "svc", "status"))
    assert st["desired"] == "paused"
    wait_until(lambda: read(res / "observed") == "paused\n", timeout=30 * SLOW,
               what="observed == paused after the restart")
    assert status_dict(res / "status")["last_command"] == f"{cmd_id} pause applied"
    msgs = kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")
    assert [m["value"]["id"] for m in msgs] == [cmd_id], [m["payload"] for m in msgs]


def test_sigterm_unmounts_and_exits_0(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    rc = d.terminate()
    d.checked = True
    assert rc == 0, f"ctlfs exited {rc} on SIGTERM\n{d.stderr()}"
    assert not mounted(d.mnt)
    d2 = ctlfs(f"--brokers={broker.bootstrap}", db=d.db, mnt=d.mnt)
    assert os.listdir(d2.path("runtimes", "rt1")) and os.path.isdir(
        d2.path("runtimes", "rt1", "svc"))


def test_database_file_takes_the_commands_while_the_daemon_runs(broker, ctlfs):
    """The write-ahead log is copied into the database file while the daemon
    runs (every second), not only at exit: a daemon that runs for weeks must
    not keep every change in a WAL that only grows. Seen from outside: the
    database file itself grows with the commands, and the WAL stays small."""
    d = ctlfs(f"--brokers={broker.bootstrap}", "--write-mode=queued")
    declare(d, "rt1", None)
    for i in range(20):
        os.mkdir(d.path("runtimes", "rt1", f"r{i}"))
    db = str(d.db)
    before = os.path.getsize(db)
    for i in range(200):
        write_state(d.path("runtimes", "rt1", f"r{i % 20}", "state"),
                    "pause\n" if i % 2 == 0 else "resume\n")
    wait_until(lambda: os.path.getsize(db) > before + 64 * 1024, 15 * SLOW,
               what=f"the database file never grew past {before} bytes while the daemon ran "
               f"(WAL: {os.path.getsize(db + '-wal')} bytes)")


# ------------------------------------------------------------------ bad databases

def _refused(tmp_path, db):
    if not CTLFS_BIN.exists():
        pytest.fail(f"{CTLFS_BIN} is not built")
    p = start_expecting_failure([f"--db={db}", "--brokers=127.0.0.1:9"], tmp_path / "mnt")
    assert p.returncode == 2, f"exit {p.returncode}, stderr: {p.stderr}"
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{p.stderr}"
    assert str(db) in lines[0], f"the error does not name the database: {lines[0]}"
    return lines[0]


def test_second_daemon_on_the_same_database_is_refused(tmp_path, broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    line = _refused(tmp_path, d.db)
    assert "use" in line or "lock" in line, line
    # the first one is unharmed, and still the one writer
    assert os.listdir(d.path("runtimes")) == ["rt1"]
    write_state(d.path("runtimes", "rt1", "svc", "state"), "pause\n")
    assert read(d.path("runtimes", "rt1", "svc", "state")) == "paused\n"


def test_corrupt_database_is_refused(tmp_path):
    db = tmp_path / "ctlfs.db"
    garbage = b"this is not an SQLite database\n" * 300
    db.write_bytes(garbage)
    _refused(tmp_path, db)
    assert db.read_bytes() == garbage, "the daemon changed a database it refused"


def test_truncated_database_is_refused(tmp_path, broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    d.stop()
    data = d.db.read_bytes()
    assert data.startswith(b"SQLite format 3\x00")
    # keep the header, garble the rest: a database that says it is one
    d.db.write_bytes(data[:100] + b"\xa5" * (max(len(data), 8192) - 100))
    for extra in ("-wal", "-shm"):
        p = d.db.with_name(d.db.name + extra)
        if p.exists():
            p.unlink()
    _refused(tmp_path, d.db)


@pytest.mark.parametrize("where", ["proc", "directory"])
def test_unwritable_database_path_is_refused(tmp_path, where):
    if where == "proc":
        db = "/proc/ctlfs-no-such-dir/ctlfs.db"     # nobody, not even root, can create it
    else:
        db = tmp_path / "db-is-a-dir"
        db.mkdir()
    _refused(tmp_path, db)


def test_database_on_a_read_only_filesystem_is_refused(tmp_path, broker, ctlfs):
    (tmp_path / "ro").mkdir()
    d = ctlfs(f"--brokers={broker.bootstrap}", db=tmp_path / "ro" / "ctlfs.db")
    declare(d)
    d.stop()
    ro = tmp_path / "ro"
    # a read-only bind mount: unwritable even for root
    p = subprocess.run(["mount", "--bind", str(ro), str(ro)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {p.stderr.strip()}")
    try:
        p = subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True,
                           text=True)
        assert p.returncode == 0, p.stderr
        before = d.db.read_bytes()
        _refused(tmp_path, d.db)
        assert d.db.read_bytes() == before
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
