"""Atomic replace: tools that write a temporary file in the same directory and
rename() it over the target (sed -i, Python's os.replace, Ansible's copy) on
real mounts, with the real tools. A file created in an object's directory is a
private scratch file; renamed over `state` (or any writable file) it is a
write of its whole content, with a write's checks, audit and answer. And every
refused tree operation (mkdir of a bad name, ...) leaves a log line with its
reason. See docs/scripting.md.

`state` takes a verb (pause, resume) or the state it reads (paused,
running), so sed may replace `running` by `pause` or by `paused`, and Ansible's
copy of `paused` finds it unchanged on its second run (changed=0).
"""

import errno
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import (RESOURCE_FILES, SLOW, _fusermount, command_lines, declare, kcat_consume, kv, mounted,
                      read, read_word, sh, status_dict, wait_until)
from test_rama import MODULE_FILES, calls, rama  # noqa: F401 (fixture)

MAX_BYTES = 64 * 1024
MAX_FILES = 16
FILES = RESOURCE_FILES


def lines_of(log_text, event):
    return [ln for ln in log_text.splitlines() if ln.split(" ")[2:3] == [event]]


def field(line, key):
    """KEY's value in a log line, a quoted one unquoted (escapes kept)."""
    m = re.search(r'(?:^| )' + re.escape(key) + r'=("(?:[^"\\]|\\.)*"|\S+)', line)
    return m and (m.group(1)[1:-1] if m.group(1).startswith('"') else m.group(1))


def rejected(log_text, request=None):
    return [ln for ln in lines_of(log_text, "rejected")
            if request is None or field(ln, "request") == request]


def commands(bootstrap, runtime="rt1"):
    return [m["value"] for m in kcat_consume(bootstrap, f"ctlfs.{runtime}.commands")]


def scratch(res, content, prefix="tmp"):
    """A temporary file in RES as Python's tempfile makes it (O_EXCL, 0600)."""
    with tempfile.NamedTemporaryFile("w", dir=res, prefix=prefix, delete=False) as f:
        f.write(content)
    return Path(f.name)


def errno_of(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


# ---------------------------------------------------------------- sed -i

def test_sed_in_place_pauses_the_runtime(broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    agent(broker.bootstrap)
    wait_until(lambda: read_word(res / "observed") == "running", what="agent's first report")

    p = sh("sed -i 's/running/pause/' state", cwd=res)
    assert p.stderr == ""
    assert read(res / "state") == "paused\n"
    # a command went out, written by sed, and the runtime applied it
    [line] = [ln for ln in command_lines(read(res / "log"), "pause")
              if kv(ln)["result"] == "sent"]
    assert kv(line)["comm"] == "sed", line
    assert [c["verb"] for c in commands(broker.bootstrap)] == ["pause"]
    wait_until(lambda: read_word(res / "observed") == "paused", what="observed == paused")
    st = status_dict(res / "status")
    assert st["desired"] == "paused" and st["last_command"].endswith(" pause applied"), st
    assert st["last_error"] == "-"
    # sed's temporary file is gone with the rename
    assert sorted(os.listdir(res)) == FILES


def test_sed_with_a_bad_value_is_einval_and_publishes_nothing(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    p = sh("sed -i 's/running/bogus/' state", cwd=res, check=False)
    assert p.returncode != 0 and "Invalid argument" in p.stderr, p.stderr
    assert read(res / "state") == "running\n"
    assert commands(broker.bootstrap) == []
    [line] = rejected(read(res / "log"))
    f = kv(line)
    assert f["input"] == "bogus" and f["comm"] == "sed" and f["action"] == "command", line
    assert "unknown verb" in status_dict(res / "status")["last_error"]
    assert sorted(os.listdir(res)) == FILES      # gone, whatever the outcome
    # the declarative value (what `state` reads) is taken
    sh("sed -i 's/running/paused/' state", cwd=res)
    assert read(res / "state") == "paused\n"
    assert [c["verb"] for c in commands(broker.bootstrap)] == ["pause"]


# ---------------------------------------------------------------- Python

def test_python_os_replace_of_a_named_temporary_file(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    with tempfile.NamedTemporaryFile("w", dir=res, delete=False) as f:
        f.write("pause\n")
        f.flush()
        # what atomic-write helpers do to it: stat, chmod, chown, utime, fsync
        st = os.fstat(f.fileno())
        assert st.st_uid == os.getuid() and (st.st_mode & 0o777) == 0o600
        assert st.st_size == len("pause\n")
        os.fchmod(f.fileno(), 0o644)
        os.fchown(f.fileno(), 0, 0)
        os.utime(f.name, (1_000_000_000, 1_000_000_000))
        os.fsync(f.fileno())
    st = os.stat(f.name)
    assert (st.st_mode & 0o777) == 0o644 and st.st_mtime == 1_000_000_000
    # listed beside the daemon's files while it exists; nothing published yet
    assert sorted(os.listdir(res)) == sorted(FILES + [os.path.basename(f.name)])
    assert commands(broker.bootstrap) == []
    os.replace(f.name, res / "state")
    assert read(res / "state") == "paused\n"
    assert os.stat(res / "state").st_size == len("paused\n")   # the real file again
    assert sorted(os.listdir(res)) == FILES
    assert [c["verb"] for c in commands(broker.bootstrap)] == ["pause"]
    [line] = command_lines(read(res / "log"), "pause")
    assert kv(line)["comm"] == "python3" or kv(line)["comm"].startswith("python"), line


def test_scratch_files_are_gone_after_unlink_rename_and_unmount(broker, ctlfs, tmp_path):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    a = scratch(res, "resume\n")
    # a rename to a new name is just a rename: content and inode kept
    ino = os.stat(a).st_ino
    os.rename(a, res / "next")
    assert not a.exists() and read(res / "next") == "resume\n"
    assert os.stat(res / "next").st_ino == ino
    # over another scratch file of the caller's: replaces it
    b = scratch(res, "pause\n")
    os.rename(b, res / "next")
    assert read(res / "next") == "pause\n"
    os.unlink(res / "next")
    assert sorted(os.listdir(res)) == FILES
    assert errno_of(os.stat, res / "next") == errno.ENOENT
    # a name of the daemon's files cannot be taken, nor removed, nor renamed
    assert errno_of(os.open, res / "state", os.O_WRONLY | os.O_CREAT | os.O_EXCL) == errno.EEXIST
    assert errno_of(os.unlink, res / "observed") == errno.EPERM
    assert errno_of(os.rename, res / "observed", res / "x") == errno.EPERM
    log = read(res / "log")
    assert rejected(log, "unlink observed") and rejected(log, "rename observed x"), log
    # renamed over a read-only file: EPERM, logged, and the scratch file stays
    c = scratch(res, "pause\n")
    assert errno_of(os.rename, c, res / "status") == errno.EPERM
    [line] = rejected(read(res / "log"), f"rename {c.name} status")
    assert "read-only" in line and kv(line)["error"] == "EPERM", line
    assert read(c) == "pause\n"
    # an empty one over state: a write of nothing, EINVAL as such a write is
    assert errno_of(os.rename, scratch(res, ""), res / "state") == errno.EINVAL
    assert status_dict(res / "status")["last_error"] == "empty command"
    # unmount: gone; nothing of it was ever stored or published
    db, mnt = d.db, d.mnt
    d.stop()
    d2 = ctlfs(f"--brokers={broker.bootstrap}", db=db, mnt=mnt)
    assert sorted(os.listdir(d2.path("runtimes", "rt1", "svc"))) == FILES
    assert commands(broker.bootstrap) == []


def test_a_scratch_file_goes_with_its_directory(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    s = scratch(res, "pause\n")
    fd = os.open(s, os.O_RDONLY)
    try:
        os.rmdir(res)                     # not in the way: it is nobody's object
        assert not res.exists()
        assert os.read(fd, 100) == b"pause\n"    # an open one reads on until closed
    finally:
        os.close(fd)
    os.mkdir(res)
    assert sorted(os.listdir(res)) == FILES


def test_caps_per_user_and_per_file(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    os.mkdir(d.path("runtimes", "rt1", "db"))
    other = d.path("runtimes", "rt1", "db")
    made = [scratch(res if i % 2 else other, "") for i in range(MAX_FILES)]
    # the 17th of this user, in any directory: EDQUOT, logged where it was asked
    assert errno_of(scratch, res, "") == errno.EDQUOT
    [line] = [ln for ln in lines_of(read(res / "log"), "rejected") if "EDQUOT" in ln]
    assert f"at most {MAX_FILES} per user" in line, line
    assert "per user" in status_dict(res / "status")["last_error"]
    os.unlink(made.pop())
    made.append(scratch(res, ""))         # one freed, one more
    # size: exactly the cap is fine, one byte more is EFBIG (logged once)
    big = made[1]
    with open(big, "wb") as f:
        f.write(b"x" * MAX_BYTES)
    assert os.stat(big).st_size == MAX_BYTES
    fd = os.open(big, os.O_WRONLY | os.O_APPEND)
    try:
        assert errno_of(os.write, fd, b"y") == errno.EFBIG
        assert errno_of(os.pwrite, fd, b"y", MAX_BYTES) == errno.EFBIG
    finally:
        os.close(fd)
    assert errno_of(os.truncate, big, MAX_BYTES + 1) == errno.EFBIG
    assert os.stat(big).st_size == MAX_BYTES
    efbig = [ln for ln in read(res / "log").splitlines() if "EFBIG" in ln]
    assert len(efbig) == 1 and f"at most {MAX_BYTES} bytes" in efbig[0], efbig
    # renamed over state it is a write of 64 KiB: EINVAL as a write would be
    assert errno_of(os.rename, big, res / "state") == errno.EINVAL
    assert "longer than 64 bytes" in status_dict(res / "status")["last_error"]
    assert commands(broker.bootstrap) == []
    for p in made:
        if p.exists():
            os.unlink(p)


def test_a_durable_rename_answers_when_the_broker_does(broker, ctlfs):
    ack_ms = int(1500 * SLOW)
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--ack-timeout-ms={ack_ms}")
    res = declare(d)
    s = scratch(res, "pause\n")
    broker.fault("down 1")
    result = {}

    def rename():
        try:
            os.rename(s, res / "state")
            result["err"] = 0
        except OSError as e:
            result["err"] = e.errno
    t = threading.Thread(target=rename)
    t.start()
    try:
        # meanwhile the daemon serves others: the command shows as pending. (Not
        # in svc/ itself: the kernel holds a directory's lock during a rename in
        # it, so a name not yet looked up there waits for the rename.)
        wait_until(lambda: status_dict(d.path("status"))["pending_commands"] == "1",
                   what="the command pending")
        assert "err" not in result, "the rename answered before the broker did"
        t.join(timeout=ack_ms / 1000 + 10 * SLOW)
        assert not t.is_alive(), "the rename never answered"
    finally:
        broker.fault("up 1")
        t.join(timeout=30 * SLOW)
    assert result["err"] == errno.ETIMEDOUT
    st = status_dict(res / "status")
    assert st["last_command"].endswith(" pause failed") and st["last_error"] != "-", st
    assert read(res / "state") == "running\n"
    assert sorted(os.listdir(res)) == FILES
    # and once the broker is back, the same again succeeds
    os.rename(scratch(res, "pause\n"), res / "state")
    assert read(res / "state") == "paused\n"


# ---------------------------------------------------------------- Ansible

PLAY = """- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        content: "{content}\\n"
        dest: {dest}
"""


def ansible_copy(tmp_path, dest, content):
    """Runs a playbook with ansible.builtin.copy at its default settings;
    returns the recap's `changed` count."""
    if not shutil.which("ansible-playbook"):
        pytest.fail("ansible-playbook is needed (Debian package ansible-core; "
                    "tools/install-deps.sh installs it)")
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(content=content, dest=dest))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-l"),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-r"), ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3")
    p = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(play)],
                       capture_output=True, text=True, timeout=120 * SLOW, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    [recap] = [ln for ln in p.stdout.splitlines() if ln.startswith("localhost ")]
    return int(recap.split("changed=")[1].split()[0])


def test_ansible_copy_writes_state(broker, ctlfs, agent, tmp_path):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    agent(broker.bootstrap)
    wait_until(lambda: read_word(res / "observed") == "running", what="agent's first report")
    assert ansible_copy(tmp_path, res / "state", "paused") == 1
    assert read(res / "state") == "paused\n"
    wait_until(lambda: read_word(res / "observed") == "paused", what="observed == paused")
    assert [c["verb"] for c in commands(broker.bootstrap)] == ["pause"]
    assert sorted(os.listdir(res)) == FILES
    # the second run finds what it would write: nothing changed, nothing sent
    assert ansible_copy(tmp_path, res / "state", "paused") == 0
    assert [c["verb"] for c in commands(broker.bootstrap)] == ["pause"]


def test_ansible_copy_is_idempotent_on_a_file_that_reads_what_it_takes(broker, ctlfs,
                                                                         tmp_path):
    conf = tmp_path / "lifecycle.conf"
    conf.write_text("[runtime flows]\nbackend=lifecycle\n")
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--config={conf}")
    os.mkdir(d.path("runtimes", "flows"))
    flow = d.path("runtimes", "flows", "f1")
    os.mkdir(flow)
    assert read(flow / "mode") == "ordinary\n"
    assert ansible_copy(tmp_path, flow / "mode", "realtime") == 1
    assert read(flow / "mode") == "realtime\n"
    [line] = lines_of(read(flow / "log"), "mode")
    assert kv(line)["from"] == "ordinary" and kv(line)["to"] == "realtime", line
    assert ansible_copy(tmp_path, flow / "mode", "realtime") == 0
    assert len(lines_of(read(flow / "log"), "mode")) == 1
    assert sorted(os.listdir(flow)) == sorted(RESOURCE_FILES + ["mode"])   # no scratch left


# ---------------------------------------------------------------- other users

def _top():
    top = Path(tempfile.mkdtemp(prefix="ctlfs-replace-"))
    os.chmod(top, 0o755)
    return top


def _as_nobody(script, cwd):
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=30 * SLOW)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_user_without_command_rights_is_refused_at_the_rename(broker, ctlfs):
    top = _top()
    try:
        d = ctlfs(f"--brokers={broker.bootstrap}", "-o", "allow_other", mnt=top / "mnt")
        res = declare(d)
        p = _as_nobody("sed -i 's/running/pause/' state", res)
        assert p.returncode != 0 and "Permission denied" in p.stderr, p.stderr
        assert read(res / "state") == "running\n"
        assert commands(broker.bootstrap) == []
        [line] = lines_of(read(res / "log"), "refused")
        f = kv(line)
        assert f["by"] == "uid:65534(nobody)" and f["comm"] == "sed", line
        assert f["input"] == "pause" and f["action"] == "command", line
        assert "access policy" in status_dict(res / "status")["last_error"]
        assert sorted(os.listdir(res)) == FILES
        # another user's scratch file: listed, but neither read, renamed nor removed
        mine = scratch(res, "pause\n")
        p = _as_nobody(f"cat {mine.name}; mv {mine.name} x; rm -f {mine.name}", res)
        assert p.stderr.count("Permission denied") == 1, p.stderr       # cat
        assert p.stderr.count("Operation not permitted") == 2, p.stderr  # mv, rm
        assert read(mine) == "pause\n"
        os.unlink(mine)
        d.stop()
    finally:
        if mounted(top / "mnt"):
            _fusermount(["-uz"], top / "mnt")
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_with_default_permissions_a_commanding_user_can_replace_state(broker, ctlfs):
    import grp
    group = grp.getgrgid(65534).gr_name          # nogroup on Debian
    top = _top()
    try:
        d = ctlfs(f"--brokers={broker.bootstrap}", f"--admin-group={group}",
                  "-o", "allow_other,default_permissions", mnt=top / "mnt")
        res = declare(d)
        # the directory's mode lets the command rule's group make a scratch file
        assert os.stat(res).st_mode & 0o7777 == 0o775
        p = _as_nobody("sed -i 's/running/pause/' state", res)   # nogroup: primary group
        assert p.returncode == 0, p.stderr
        assert read(res / "state") == "paused\n"
        [line] = [ln for ln in command_lines(read(res / "log"), "pause")
                  if kv(ln)["result"] == "sent"]
        assert kv(line)["by"] == "uid:65534(nobody)" and kv(line)["comm"] == "sed", line
        d.stop()
    finally:
        if mounted(top / "mnt"):
            _fusermount(["-uz"], top / "mnt")
        shutil.rmtree(top, ignore_errors=True)


# ---------------------------------------------------------------- refused tree operations

def test_refused_tree_operations_are_logged_with_their_reason(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    rt = declare(d, resource=None)
    for bad, says in (("a b", "' ' (a space)"), ("x" * 129, "129 bytes long"),
                      ("caf\u00e9", "byte 0xc3 (not ASCII)")):
        assert errno_of(os.mkdir, rt / bad) == errno.EINVAL
        [line] = [ln for ln in rejected(read(rt / "log")) if says in ln]
        f = kv(line)
        assert f["action"] == "declare" and f["error"] == "EINVAL", line
        assert f["comm"] == "python3" or f["comm"].startswith("python"), line
    assert errno_of(os.mkdir, d.path("runtimes", "a:b")) == errno.EINVAL
    assert rejected(read(d.path("log")), "mkdir a:b")          # runtimes/ logs in the root
    # mkdir where no object can be: EPERM with the reason
    os.mkdir(rt / "svc")
    res = rt / "svc"
    assert errno_of(os.mkdir, res / "sub") == errno.EPERM
    [line] = rejected(read(res / "log"), "mkdir sub")
    assert "no directory can be made here" in line, line
    # rmdir of a runtime that has resources: ENOTEMPTY with the reason
    assert errno_of(os.rmdir, rt) == errno.ENOTEMPTY
    [line] = rejected(read(d.path("log")), "rmdir rt1")
    assert "still holds 1 object" in line and kv(line)["error"] == "ENOTEMPTY", line
    # files where only objects can be, links, a daemon's directory renamed
    assert errno_of(os.open, d.path("runtimes", "f"), os.O_WRONLY | os.O_CREAT) == errno.EPERM
    assert rejected(read(d.path("log")), "create f")
    assert errno_of(os.symlink, "state", res / "link") == errno.EPERM
    assert rejected(read(res / "log"), "symlink link")
    assert errno_of(os.link, res / "state", res / "hard") == errno.EPERM
    assert rejected(read(res / "log"), "link hard")
    assert errno_of(os.rename, res, rt / "svc2") == errno.EPERM
    assert rejected(read(rt / "log"), "rename svc svc2")
    # an existing name is no refusal (mkdir -p relies on EEXIST): not logged
    before = read(d.path("log"))
    sh(f"mkdir -p '{res}'")
    assert read(d.path("log")) == before


# ---------------------------------------------------------------- the cluster backend's files

def test_options_and_scale_take_a_scratch_file(rama):
    d, fake = rama()
    mod = d.path("modules", "m1")
    os.mkdir(mod)
    opts = mod / "options"
    sh(f"echo 1 > '{opts}/flag'")                     # the shell's > declares, as before
    assert calls(fake, "setOption")[-1]["argv"][-2:] == ["flag", "1"]
    # in options/, a temporary file (O_EXCL, as mkstemp makes it) is a scratch
    # file: not an option, nothing run
    n = len(calls(fake, "setOption"))
    tmp = scratch(opts, "2\n", prefix=".flag")
    assert sorted(os.listdir(opts)) == sorted(["flag", tmp.name])
    assert len(calls(fake, "setOption")) == n
    os.replace(tmp, opts / "flag")
    assert calls(fake, "setOption")[-1]["argv"] == ["setOption", "module", "m1", "flag", "2"]
    assert read(opts / "flag") == "2\n"
    assert os.listdir(opts) == ["flag"]
    # to a free name there: declared and set, as `echo 5 > NAME` would (Ansible's
    # copy to a new file)
    os.replace(scratch(opts, "5\n"), opts / "new.option")
    assert calls(fake, "setOption")[-1]["argv"][-2:] == ["new.option", "5"]
    assert read(opts / "new.option") == "5\n"
    assert " modules/m1/options/new.option option-declared " in read(mod / "log")
    os.unlink(opts / "new.option")
    # sed -i on an option, and a bad value refused by the option's own checks
    sh("sed -i 's/2/3/' flag", cwd=opts)
    assert read(opts / "flag") == "3\n"
    p = sh("sed -i 's/3/{/' flag", cwd=opts, check=False)
    assert p.returncode != 0 and "Invalid argument" in p.stderr, p.stderr
    assert "not JSON" in rejected(read(mod / "log"))[-1]
    # scale: a scratch file in the module's own directory
    os.replace(scratch(mod, "workers=2\n"), mod / "scale")
    assert read(mod / "scale") == "workers=2\n"
    assert calls(fake, "scaleExecutors")
    assert sorted(os.listdir(mod)) == MODULE_FILES
