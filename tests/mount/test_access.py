"""The access policy, tried by real unprivileged users created for the test.

Users and groups are made with useradd/groupadd (and removed afterwards); each
request is made by a real process of that user (setpriv --init-groups, so
supplementary groups come from /etc/group as at a login) on a real mount with
allow_other. Every refusal must be EACCES, publish nothing, and be recorded
with who tried in the object's log and in the database's refusals table.
"""

import grp
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (SLOW, _fusermount, command_lines, kcat_consume, kv, mounted, read,
                      status_dict, wait_until)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates users: needs root")

OPS, RT2OPS = "ctlfs-t-ops", "ctlfs-t-rt2ops"
ALICE, BOB, CAROL = "ctlfs-t-alice", "ctlfs-t-bob", "ctlfs-t-carol"


def _run(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def _remove_people():
    for u in (ALICE, BOB, CAROL):
        subprocess.run(["userdel", u], capture_output=True, timeout=60)
    for g in (OPS, RT2OPS, ALICE, BOB, CAROL):
        subprocess.run(["groupdel", g], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def people():
    """alice is in ops (a supplementary group), carol in rt2ops, bob in neither."""
    if not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.fail("useradd and setpriv are needed (packages passwd, util-linux)")
    _remove_people()                     # left over by a killed run
    _run("groupadd", OPS)
    _run("groupadd", RT2OPS)
    for user, groups in ((ALICE, OPS), (BOB, None), (CAROL, RT2OPS)):
        args = ["useradd", "--no-create-home", "--user-group", "--shell", "/bin/sh"]
        if groups:
            args += ["--groups", groups]
        _run(*args, user)
    try:
        yield {u: pwd.getpwnam(u).pw_uid for u in (ALICE, BOB, CAROL)}
    finally:
        _remove_people()


@pytest.fixture
def top():
    """A directory every user can reach (pytest's own are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="ctlfs-access-"))
    os.chmod(d, 0o755)
    yield d
    if mounted(d / "mnt"):
        _fusermount(["-uz"], d / "mnt")
    shutil.rmtree(d, ignore_errors=True)


def as_user(user, script, cwd, shell="bash"):
    """Runs SCRIPT with SHELL as USER; its first output line is the shell's pid."""
    p = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                        shell, "-c", "echo $$; " + script], cwd=cwd, capture_output=True,
                       text=True, timeout=30 * SLOW)
    pid, _, out = p.stdout.partition("\n")
    return p.returncode, int(pid), out, p.stderr


def mount_with_policy(ctlfs, broker, top, tmp_path, policy, *extra):
    conf = tmp_path / "ctlfs.conf"
    conf.write_text(f"[ctlfs]\nbrokers={broker.bootstrap}\n" + policy)
    d = ctlfs(f"--config={conf}", "-o", ",".join(("allow_other",) + extra), mnt=top / "mnt")
    for rel in ("runtimes/rt1", "runtimes/rt1/svc", "runtimes/rt2", "runtimes/rt2/svc"):
        os.mkdir(d.path(*rel.split("/")))
    return d


def rows(db, table):
    """Rows of TABLE (read-only, beside the running daemon), oldest first."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(f"SELECT * FROM {table} ORDER BY seq")]
    finally:
        con.close()


def refusals(db):
    return rows(db, "refusals")


def refused_lines(log_text, action):
    return [ln for ln in log_text.splitlines()
            if ln.split(" ")[2:3] == ["refused"] and f" action={action} " in ln]


POLICY = "[access]\ncommand=@" + OPS + "\n[access rt2]\ncommand=" + CAROL + "\n"


def test_command_policy_global_and_per_runtime(broker, ctlfs, people, top, tmp_path):
    d = mount_with_policy(ctlfs, broker, top, tmp_path, POLICY)
    rt1, rt2 = d.path("runtimes", "rt1", "svc"), d.path("runtimes", "rt2", "svc")

    # alice, through her supplementary group, may command rt1
    rc, pid, _, err = as_user(ALICE, "echo pause > state", rt1)
    assert rc == 0, err
    assert read(rt1 / "state") == "paused\n"
    [line] = [ln for ln in command_lines(read(rt1 / "log"), "pause") if "result=sent" in ln]
    f = kv(line)
    assert f["by"] == f"uid:{people[ALICE]}({ALICE})" and f["pid"] == str(pid), line
    assert f["comm"] == "bash" and f["host"] == os.uname().nodename, line

    # bob may not: EACCES at open (so the shell says "Permission denied", as
    # for any file it may not write), nothing published, logged and recorded
    # with who tried
    rc, pid, _, err = as_user(BOB, "echo resume > state", rt1)
    assert rc != 0 and "Permission denied" in err, err
    assert read(rt1 / "state") == "paused\n"
    [line] = refused_lines(read(rt1 / "log"), "command")
    f = kv(line)
    assert f["by"] == f"uid:{people[BOB]}({BOB})" and f["pid"] == str(pid), line
    assert f["request"] == "open state" and f["comm"] == "bash", line
    assert "access policy" in status_dict(rt1 / "status")["last_error"]

    # rt2 has its own rule: carol yes, alice no (the runtime's rule replaces the global one)
    rc, _, _, err = as_user(CAROL, "echo pause > state", rt2)
    assert rc == 0, err
    rc, _, _, err = as_user(ALICE, "echo resume > state", rt2)
    assert rc != 0 and "Permission denied" in err, err
    assert read(rt2 / "state") == "paused\n"

    sent = [m["value"] for t in ("ctlfs.rt1.commands", "ctlfs.rt2.commands")
            for m in kcat_consume(broker.bootstrap, t)]
    assert [(m["resource"], m["verb"], m["issued_by"]["user"]) for m in sent] == \
        [("svc", "pause", ALICE), ("svc", "pause", CAROL)]

    got = wait_until(lambda: len(refusals(d.db)) == 2 and refusals(d.db),
                      what="two refusals in the database")
    assert [(r["action"], r["path"], r["input"], r["errno"], r["user"], r["uid"])
            for r in got] == [
        ("command", "runtimes/rt1/svc", "open state", "EACCES", BOB, people[BOB]),
        ("command", "runtimes/rt2/svc", "open state", "EACCES", ALICE, people[ALICE])]
    assert all(r["pid"] > 0 and r["comm"] == "bash" and r["host"] and r["ts"] > 0 for r in got)
    assert 'ctlfs_refused_total{action="command"} 2' in read(d.path("metrics"))

    # every command that did go out carries its issuer in the commands table too
    cmds = rows(d.db, "commands")
    assert [(c["user"], c["uid"], c["comm"]) for c in cmds] == \
        [(ALICE, people[ALICE], "bash"), (CAROL, people[CAROL], "bash")]
    assert all(c["pid"] > 0 and c["host"] for c in cmds)



def test_a_refused_writer_hears_permission_denied_from_every_shell(broker, ctlfs, people, top,
                                                                  tmp_path):
    """dash reports any failed write as "I/O error": the refusal comes at
    open(), where every shell and program says "Permission denied"."""
    d = mount_with_policy(ctlfs, broker, top, tmp_path, POLICY)
    rt1 = d.path("runtimes", "rt1", "svc")
    for shell in ("dash", "bash"):
        rc, _, _, err = as_user(BOB, "echo pause > state", rt1, shell=shell)
        assert rc != 0 and "Permission denied" in err, (shell, err)
    rc, _, out, err = as_user(BOB, "python3 -c 'import os; os.open(\"state\", os.O_RDWR)' "
                              "2>&1 | grep -c PermissionError", rt1)
    assert out.strip() == "1", (out, err)
    # reading stays allowed; nothing was published; each refusal is in the log
    rc, _, out, err = as_user(BOB, "cat state", rt1, shell="dash")
    assert (rc, out) == (0, "running\n"), err
    assert kcat_consume(broker.bootstrap, "ctlfs.rt1.commands") == []
    lines = refused_lines(read(rt1 / "log"), "command")
    assert [kv(ln)["request"] for ln in lines] == ["open state"] * 3, lines
    assert all(kv(ln)["by"] == f"uid:{people[BOB]}({BOB})" for ln in lines), lines

def test_declare_policy_for_mkdir_and_rmdir(broker, ctlfs, people, top, tmp_path):
    d = mount_with_policy(ctlfs, broker, top, tmp_path,
                          f"[access]\ncommand=*\ndeclare=@{OPS}\n")
    rts = d.path("runtimes")
    rc, _, _, err = as_user(BOB, "mkdir rt9", rts)
    assert rc != 0 and "Permission denied" in err, err
    rc, _, _, err = as_user(BOB, "rmdir rt1/svc", rts)
    assert rc != 0 and "Permission denied" in err, err
    assert sorted(os.listdir(rts)) == ["rt1", "rt2"] and os.path.isdir(rts / "rt1" / "svc")
    # bob may still command (command=*), just not declare
    rc, _, _, err = as_user(BOB, "echo pause > rt1/svc/state", rts)
    assert rc == 0, err
    rc, _, _, err = as_user(ALICE, "mkdir rt9 && mkdir rt9/web && rmdir rt2/svc", rts)
    assert rc == 0, err
    assert sorted(os.listdir(rts)) == ["rt1", "rt2", "rt9"]
    # the refused mkdir is in the root log; the refused rmdir in the runtime's log
    root_log = read(d.path("log"))
    [mk] = [ln for ln in refused_lines(root_log, "declare") if 'request="mkdir rt9"' in ln]
    assert kv(mk)["by"] == f"uid:{people[BOB]}({BOB})", mk
    [rm] = refused_lines(read(rts / "rt1" / "log"), "declare")
    assert 'request="rmdir svc"' in rm, rm
    got = wait_until(lambda: len(refusals(d.db)) == 2 and refusals(d.db),
                      what="two refusals in the database")
    assert [(r["action"], r["input"], r["user"]) for r in got] == \
        [("declare", "mkdir rt9", BOB), ("declare", "rmdir svc", BOB)]


def test_read_policy_limits_listing_and_reading(broker, ctlfs, people, top, tmp_path):
    d = mount_with_policy(ctlfs, broker, top, tmp_path,
                          f"[access]\ncommand=@{OPS}\nread=@{OPS}\n"
                          f"[access rt2]\nread=*\n")
    mnt = d.mnt
    rc, _, out, err = as_user(ALICE, "cat runtimes/rt1/svc/state && ls runtimes", mnt)
    assert rc == 0 and out == "running\nrt1\nrt2\n", (out, err)
    for script in ("cat runtimes/rt1/svc/status", "ls runtimes", "cat log",
                   "cat runtimes/rt1/svc/state"):
        rc, _, out, err = as_user(BOB, script, mnt)
        assert rc != 0 and "Permission denied" in err, (script, out, err)
    # rt2 is readable by anyone
    rc, _, out, err = as_user(BOB, "cat runtimes/rt2/svc/observed", mnt)
    assert rc == 0 and out == "unknown\n", (out, err)
    got = wait_until(lambda: len(refusals(d.db)) == 4 and refusals(d.db),
                      what="four refusals in the database")
    assert [(r["action"], r["path"], r["input"]) for r in got] == [
        ("read", "runtimes/rt1/svc", "open status"), ("read", "runtimes", "list"),
        ("read", "", "open log"), ("read", "runtimes/rt1/svc", "open state")]
    assert all(r["user"] == BOB for r in got)
    assert 'ctlfs_refused_total{action="read"} 4' in read(d.path("metrics"))


def test_default_permissions_modes_follow_the_policy(broker, ctlfs, people, top, tmp_path):
    d = mount_with_policy(ctlfs, broker, top, tmp_path, POLICY, "default_permissions")
    rt1, rt2 = d.path("runtimes", "rt1", "svc"), d.path("runtimes", "rt2", "svc")
    ops_gid = grp.getgrnam(OPS).gr_gid
    st = os.stat(rt1 / "state")
    # one group: the kernel can check it by itself
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o664, ops_gid)
    assert stat.S_IMODE(os.stat(rt1 / "observed").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(d.path("runtimes")).st_mode) == 0o775
    # a single user cannot be named by the modes: open to all, the daemon decides
    assert stat.S_IMODE(os.stat(rt2 / "state").st_mode) == 0o666

    rc, _, _, err = as_user(ALICE, "echo pause > state", rt1)
    assert rc == 0, err
    before = read(rt1 / "log")
    rc, _, _, err = as_user(BOB, "echo resume > state", rt1)
    assert rc != 0 and "Permission denied" in err, err
    # refused by the kernel from the modes: ctlfs never saw it (see docs/security.md)
    assert read(rt1 / "log") == before
    rc, _, _, err = as_user(BOB, "echo pause > state", rt2)
    assert rc != 0 and "Permission denied" in err, err
    assert refused_lines(read(rt2 / "log"), "command"), read(rt2 / "log")
    rc, _, _, err = as_user(CAROL, "echo pause > state", rt2)
    assert rc == 0, err
    assert [m["value"]["issued_by"]["user"] for t in ("ctlfs.rt1.commands", "ctlfs.rt2.commands")
            for m in kcat_consume(broker.bootstrap, t)] == [ALICE, CAROL]


def test_admin_group_option_adds_to_the_policy(broker, ctlfs, people, top, tmp_path):
    d = mount_with_policy(ctlfs, broker, top, tmp_path,
                          f"[access rt2]\ncommand={CAROL}\n", f"admin_group={OPS}")
    rc, _, _, err = as_user(ALICE, "echo pause > runtimes/rt1/svc/state && mkdir runtimes/rt3",
                            d.mnt)
    assert rc == 0, err
    rc, _, _, err = as_user(CAROL, "echo pause > runtimes/rt1/svc/state", d.mnt)
    assert rc != 0 and "Permission denied" in err, err
    assert status_dict(d.path("status"))["access"] == \
        f"read=* command=root,owner,@{OPS} declare=root,owner,@{OPS}"
    assert status_dict(d.path("runtimes", "rt2", "status"))["access"] == \
        f"read=* command=root,owner,{CAROL} declare=root,owner,@{OPS}"


@pytest.mark.parametrize("policy,named", [
    ("[access]\ncommand=ctlfs-no-such-user\n", "ctlfs-no-such-user"),
    ("[access]\ncommand=@ctlfs-no-such-group\n", "ctlfs-no-such-group"),
    ("[access]\nwrite=*\n", "write"),
    ("[access rt/1]\nread=*\n", "rt/1"),
])
def test_a_bad_policy_refuses_to_start(tmp_path, policy, named):
    from conftest import start_expecting_failure
    conf = tmp_path / "ctlfs.conf"
    conf.write_text(policy)
    p = start_expecting_failure([f"--db={tmp_path / 'x.db'}", f"--config={conf}"],
                                tmp_path / "mnt")
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and named in lines[0] and str(conf) in lines[0], p.stderr
    assert not (tmp_path / "x.db").exists() or os.path.getsize(tmp_path / "x.db") == 0
