"""Installation and service: `meson install` into a DESTDIR, the systemd units
as installed (`systemd-analyze verify`), the man pages (`man --warnings -l`),
`mount -t fuse.ctlfs` and an fstab line through Debian's mount.fuse3, the
sd_notify readiness protocol, and event lines in the journal with their fields.
See README.md ("Install on an admin host") and docs/manual.md ("Running as a
service")."""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (BUILD, CTLFS_BIN, EXIT_TIMEOUT, REPO, SLOW, START_TIMEOUT, UUID,
                      _fusermount, _live, command_lines, declare, kv, mounted, read,
                      read_word, status_dict, wait_until)

MAN_PAGES = ["man8/ctlfs.8", "man5/ctlfs.5", "man8/ctlfs-agent.8", "man1/ctlfs-broker.1"]
UNITS = ["ctlfs.service", "ctlfs-agent@.service"]
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")


# ---------------------------------------------------------------- meson install

def _build_option(name):
    opts = json.loads((BUILD / "meson-info" / "intro-buildoptions.json").read_text())
    for o in opts:
        if o["name"] == name:
            return o["value"]
    raise KeyError(name)


def _abs(prefix, d):
    return d if d.startswith("/") else f"{prefix}/{d}"


class Installed:
    """A `meson install --destdir` of the build under test."""

    def __init__(self, destdir):
        self.root = destdir
        prefix = _build_option("prefix")
        self.prefix = prefix
        self.sbindir = _abs(prefix, _build_option("sbindir"))
        self.bindir = _abs(prefix, _build_option("bindir"))
        self.mandir = _abs(prefix, _build_option("mandir"))
        self.datadir = _abs(prefix, _build_option("datadir"))
        self.sysconfdir = _abs(prefix, _build_option("sysconfdir"))
        # where the units went (pkg-config systemd, or the option)
        installed = json.loads((BUILD / "meson-info" / "intro-installed.json").read_text())
        units = [dst for dst in installed.values() if dst.endswith("/ctlfs.service")]
        assert len(units) == 1, f"ctlfs.service is installed {len(units)} times: {units}"
        self.unitdir = os.path.dirname(units[0])

    def path(self, p):
        """The file that would be at P (absolute) on the target system."""
        return Path(str(self.root) + p)

    def install(self):
        p = subprocess.run(["meson", "install", "-C", str(BUILD), "--no-rebuild",
                            "--destdir", str(self.root)],
                           capture_output=True, text=True, timeout=120 * SLOW)
        assert p.returncode == 0, f"meson install failed:\n{p.stdout}\n{p.stderr}"
        return p.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if not (BUILD / "meson-info" / "intro-installed.json").exists():
        pytest.fail(f"{BUILD} is not a meson build directory")
    inst = Installed(tmp_path_factory.mktemp("destdir"))
    inst.install()
    return inst


def test_meson_install_puts_everything_in_place(installed):
    i = installed
    for prog in [f"{i.sbindir}/ctlfs", f"{i.bindir}/ctlfs-agent", f"{i.bindir}/ctlfs-broker"]:
        f = i.path(prog)
        assert f.is_file() and os.access(f, os.X_OK), f"{prog} is not installed"
    for page in MAN_PAGES:
        assert i.path(f"{i.mandir}/{page}").is_file(), f"{page} is not installed"
    for unit in UNITS:
        assert i.path(f"{i.unitdir}/{unit}").is_file(), f"{unit} is not installed"
    conf = i.path(f"{i.sysconfdir}/ctlfs/ctlfs.conf")
    assert conf.is_file(), "the default config is not installed"
    bridge = i.path(f"{i.datadir}/ctlfs/elastic/elastic-bridge")   # the exec hook example
    assert bridge.is_file() and os.access(bridge, os.X_OK), "elastic-bridge is not installed"
    # The installed units name the installed programs and config, not the source tree.
    unit = i.path(f"{i.unitdir}/ctlfs.service").read_text()
    assert "@" not in "".join(l for l in unit.splitlines() if l.startswith("Exec")), unit
    exec_start = [l for l in unit.splitlines() if l.startswith("ExecStart=")]
    assert exec_start == [f"ExecStart={i.sbindir}/ctlfs -f "
                          f"--config={i.sysconfdir}/ctlfs/ctlfs.conf "
                          "-o allow_other,default_permissions /ctl"], exec_start
    agent = i.path(f"{i.unitdir}/ctlfs-agent@.service").read_text()
    assert f"ExecStart={i.bindir}/ctlfs-agent " in agent
    assert f"EnvironmentFile={i.sysconfdir}/ctlfs/agent-%i.conf" in agent


def test_default_config_documents_every_key_and_is_accepted(installed, ctlfs):
    conf = installed.path(f"{installed.sysconfdir}/ctlfs/ctlfs.conf")
    text = conf.read_text()
    for key in ["brokers", "db", "topic-prefix", "write-mode", "ack-timeout-ms",
                "stale-after-ms", "discover-max", "admin-group"]:
        assert re.search(rf"^#{key}=", text, re.M), f"{key} is not in the default config"
    assert re.search(r"^\[access\]$", text, re.M) and "#[access payments]" in text
    # As installed (everything commented: the defaults, the embedded broker),
    # ctlfs takes it and mounts.
    d = ctlfs(f"--config={conf}")
    st = status_dict(d.path("status"))
    assert st["write_mode"] == "durable" and st["db"] == str(d.db)


def test_reinstall_keeps_the_operators_config(installed):
    conf = installed.path(f"{installed.sysconfdir}/ctlfs/ctlfs.conf")
    mine = "[ctlfs]\nbrokers=kafka1:9092\n"
    original = conf.read_text()
    conf.write_text(mine)
    try:
        installed.install()
        assert conf.read_text() == mine, "meson install overwrote the operator's config"
        new = installed.path(f"{installed.sysconfdir}/ctlfs/ctlfs.conf.default")
        assert new.read_text() == original
    finally:
        conf.write_text(original)


# ---------------------------------------------------------------- units

def test_systemd_analyze_verify_passes_on_the_installed_units(installed, tmp_path):
    """Every unit as installed. systemd-analyze checks that the programs of
    Exec*= exist and that the man pages of Documentation= do, so the units are
    verified with the DESTDIR's paths substituted for the installed ones and
    the DESTDIR's man pages on MANPATH."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.fail("systemd-analyze is missing (Debian package systemd; tools/install-deps.sh)")
    unitdir = installed.path(installed.unitdir)
    units = sorted(p.name for p in unitdir.iterdir())
    assert set(UNITS) <= set(units), units
    vdir = tmp_path / "units"
    vdir.mkdir()
    root = str(installed.root)
    for name in units:
        text = (unitdir / name).read_text()

        def here(m):
            p = m.group(0)
            return root + p if Path(root + p).exists() else p
        (vdir / name).write_text(re.sub(r"(?<![\w@%$}])/[^\s;'\"]+", here, text))
    assert root + f"{installed.sbindir}/ctlfs" in (vdir / "ctlfs.service").read_text()
    env = dict(os.environ, MANPATH=f"{root}{installed.mandir}:", SYSTEMD_LOG_COLOR="0")
    for name in units:
        p = subprocess.run([analyze, "verify", str(vdir / name)], capture_output=True,
                           text=True, env=env, timeout=60 * SLOW)
        said = (p.stdout + p.stderr).strip()
        assert p.returncode == 0 and not said, \
            f"systemd-analyze verify {name}: exit {p.returncode}\n{said}"


def test_service_unit_keeps_the_mount_in_the_host_namespace(installed):
    """A unit setting that gives the service its own mount namespace would
    hide /ctl from the host: none may be there."""
    unit = installed.path(f"{installed.unitdir}/ctlfs.service").read_text()
    settings = dict(l.split("=", 1) for l in unit.splitlines()
                    if "=" in l and not l.startswith("#"))
    namespacing = ["ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                   "PrivateMounts", "ProtectKernelTunables", "ProtectKernelModules",
                   "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc", "ProcSubset",
                   "ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "TemporaryFileSystem",
                   "BindPaths", "BindReadOnlyPaths", "DynamicUser", "RootDirectory",
                   "PrivateIPC", "MountFlags", "PrivateUsers"]
    assert not [k for k in namespacing if k in settings], settings
    assert settings["Type"] == "notify"
    assert settings["Restart"] == "on-failure"
    assert settings["DeviceAllow"] == "/dev/fuse rw"
    assert "CAP_SYS_ADMIN" in settings["CapabilityBoundingSet"].split()


# ---------------------------------------------------------------- man pages

@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_renders_without_warnings(installed, page):
    f = installed.path(f"{installed.mandir}/{page}")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    p = subprocess.run(["man", "--warnings", "-l", str(f)], capture_output=True,
                       text=True, env=env, timeout=60 * SLOW)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", f"man --warnings -l {page}:\n{p.stderr}"
    text = re.sub(r".\x08", "", p.stdout)          # overstrike: bold, underline
    assert "NAME" in text and "SEE ALSO" in text, text[:500]
    # the installed page is the source's
    assert (REPO / "docs" / "man" / os.path.basename(page)).read_text() == f.read_text()


# ---------------------------------------------------------------- mount(8)

class _Pid:
    """A process we did not start (the daemon that mount.fuse3 ran), for the
    watchdog: poll() and kill() like a Popen."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is None and not _alive(self.pid):
            self.returncode = 0
        return self.returncode

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _Mounted:
    def __init__(self, mnt, pid):
        self.mnt = mnt
        self.proc = _Pid(pid)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _daemon_of(mnt):
    """The pid of the ctlfs process whose command line ends with MNT."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[-1] == b"":
            argv = argv[:-1]
        if argv and os.path.basename(argv[0]) == b"ctlfs" and str(mnt).encode() in argv:
            return int(d)
    return None


@pytest.fixture
def shared_dir(tmp_path):
    """A directory that is a shared mount, and a way to run commands in a mount
    namespace of their own in which ctlfs is on mount.fuse3's search path.

    mount(8) hands its helpers an environment without PATH, so mount.fuse3's
    `/bin/sh -c 'ctlfs ...'` finds ctlfs only in the shell's default path
    (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin), where an
    installed ctlfs is. To find the build's instead, the mount runs in a
    mount namespace where a directory holding a `ctlfs` link is bind-mounted
    on /usr/local/sbin; what it mounts under the shared directory propagates
    to the host's namespace, where the test uses and unmounts it."""
    top = tmp_path / "shared"
    top.mkdir()
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    (sbin / "ctlfs").symlink_to(CTLFS_BIN)
    subprocess.run(["mount", "--bind", str(top), str(top)], check=True)
    subprocess.run(["mount", "--make-shared", str(top)], check=True)
    made = []

    def run(script):
        p = subprocess.run(["unshare", "--mount", "--propagation", "unchanged", "sh", "-ec",
                            f"mount --bind '{sbin}' /usr/local/sbin\n{script}"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=START_TIMEOUT + 10)
        return p
    run.top = top
    run.made = made
    yield run
    for m in made:
        if mounted(m.mnt):
            _fusermount(["-uz"], m.mnt)
        if m.proc.poll() is None:
            m.proc.kill()
        if m in _live["daemons"]:
            _live["daemons"].remove(m)
    subprocess.run(["umount", "-l", str(top)], capture_output=True)


def _mounted_by_mount(shared, mnt, p):
    assert p.returncode == 0, f"mount failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    # mount(8) returns once ctlfs has mounted: no waiting
    assert mounted(mnt), "mount returned before ctlfs had mounted"
    pid = _daemon_of(mnt)
    assert pid, "no ctlfs process for the mount"
    m = _Mounted(mnt, pid)
    shared.made.append(m)
    _live["daemons"].append(m)
    return m


def _use(mnt, broker, agent):
    """The tree works: declare, pause, observe."""
    st = status_dict(mnt / "status")
    assert st["brokers"] == broker.bootstrap
    res = mnt / "runtimes" / "rt1" / "svc"
    os.makedirs(res)
    agent(broker.bootstrap)
    subprocess.run(["sh", "-c", f"echo pause > '{res}/state'"], check=True,
                   timeout=30 * SLOW)
    wait_until(lambda: read_word(res / "observed") == "paused", what="observed == paused")
    return st


def _unmount_and_wait(m, cmd):
    """CMD unmounts (retried while the daemon's inotify kick holds the mount
    for an instant, see test_tree); the daemon then exits."""
    def unmounted():
        u = subprocess.run(cmd + [str(m.mnt)], capture_output=True, text=True,
                           timeout=30 * SLOW)
        assert u.returncode == 0 or "busy" in u.stderr, u.stderr
        return u.returncode == 0
    wait_until(unmounted, timeout=3 * SLOW, interval=0.05, what=" ".join(cmd))
    assert not mounted(m.mnt)
    wait_until(lambda: m.proc.poll() is not None, timeout=EXIT_TIMEOUT,
               what="ctlfs to exit after the unmount")


def test_mount_t_fuse_ctlfs(shared_dir, broker, agent, tmp_path):
    mnt = shared_dir.top / "ctl"
    mnt.mkdir()
    db = tmp_path / "ctlfs.db"
    p = shared_dir(f"mount -t fuse.ctlfs ctlfs '{mnt}' "
                   f"-o brokers={broker.bootstrap},db={db},write-mode=queued")
    m = _mounted_by_mount(shared_dir, mnt, p)
    st = _use(mnt, broker, agent)
    assert st["db"] == str(db) and st["write_mode"] == "queued"
    # what mount.fuse3 gave ctlfs: SOURCE MOUNTPOINT -o rw,...,dev,suid
    argv = Path(f"/proc/{m.proc.pid}/cmdline").read_bytes().split(b"\0")
    assert b"ctlfs" in argv[1:] and str(mnt).encode() in argv, argv
    _unmount_and_wait(m, ["umount"])


def test_fstab_line(shared_dir, broker, agent, tmp_path):
    """An fstab line with the options operators put there: fstab's own words
    (mount keeps them), x-systemd.*, and VFS flags libfuse does not know
    (mount passes them on; ctlfs drops them)."""
    mnt = shared_dir.top / "ctl"
    mnt.mkdir()
    conf = tmp_path / "ctlfs.conf"
    conf.write_text(f"[ctlfs]\nbrokers={broker.bootstrap}\ndb={tmp_path / 'ctlfs.db'}\n")
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# an admin host\n"
        f"ctlfs {mnt} fuse.ctlfs defaults,noauto,nofail,_netdev,"
        "x-systemd.requires=network-online.target,x-systemd.mount-timeout=30,"
        "rw,relatime,nodiratime,lazytime,nosuid,nodev,noexec,comment=ctl,"
        f"config={conf},allow_other,default_permissions 0 0\n")
    p = shared_dir(f"mount --fstab '{fstab}' '{mnt}'")
    m = _mounted_by_mount(shared_dir, mnt, p)
    _use(mnt, broker, agent)
    opts = next(l.split()[5] for l in open("/proc/self/mountinfo")
                if l.split()[4] == str(mnt))
    assert {"nosuid", "nodev", "noexec"} <= set(opts.split(",")), opts
    _unmount_and_wait(m, ["fusermount3", "-u"])


def test_fstab_only_options_are_ignored_on_the_command_line(broker, ctlfs):
    d = ctlfs("-o", "defaults,noauto,nofail,_netdev,x-systemd.automount,comment=x,"
              "relatime,nodiratime,lazytime,strictatime,users,"
              f"brokers={broker.bootstrap}")
    assert status_dict(d.path("status"))["brokers"] == broker.bootstrap


# ---------------------------------------------------------------- sd_notify

def _notify_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    return s


def test_notify_ready_once_usable_and_stopping_on_sigterm(broker, tmp_path):
    """What systemd sees of a Type=notify ctlfs: READY=1 on $NOTIFY_SOCKET
    when the mount is there and answers, STOPPING=1 on SIGTERM, exit 0."""
    sock_path = tmp_path / "notify"
    sock = _notify_socket(sock_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    err = open(tmp_path / "ctlfs.stderr", "w")
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path))
    proc = subprocess.Popen([str(CTLFS_BIN), "-f", f"--brokers={broker.bootstrap}",
                             f"--db={tmp_path / 'ctlfs.db'}", str(mnt)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=err, env=env)
    handle = _Mounted(mnt, proc.pid)
    handle.proc = proc
    _live["daemons"].append(handle)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        ready = None
        while ready is None:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                msg = sock.recv(4096).decode()
            except socket.timeout:
                pytest.fail(f"no READY=1 within {START_TIMEOUT:.0f}s (exit {proc.poll()})"
                            f"\n{(tmp_path / 'ctlfs.stderr').read_text()}")
            lines = msg.split("\n")
            # at the moment READY=1 arrives the mount is there and answers
            if "READY=1" in lines:
                assert mounted(mnt), "READY=1 before the mount"
                st = subprocess.run(["cat", str(mnt / "status")], capture_output=True,
                                    text=True, timeout=10 * SLOW)
                assert st.returncode == 0 and st.stdout.startswith("version: "), st
                ready = lines
            else:
                assert not [l for l in lines if l.startswith("STOPPING")], msg
        assert any(l == f"STATUS=mounted on {mnt}" for l in ready), ready
        os.mkdir(mnt / "runtimes" / "rt1")
        proc.send_signal(signal.SIGTERM)
        sock.settimeout(EXIT_TIMEOUT)
        msg = sock.recv(4096).decode()
        assert "STOPPING=1" in msg.split("\n"), msg
        assert proc.wait(timeout=EXIT_TIMEOUT) == 0, (tmp_path / "ctlfs.stderr").read_text()
        assert not mounted(mnt)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if mounted(mnt):
            _fusermount(["-uz"], mnt)
        _live["daemons"].remove(handle)
        sock.close()
        err.close()


# ---------------------------------------------------------------- the journal

def _journal_fields(data):
    """The journal's native protocol: KEY=VALUE lines, or KEY, a newline, a
    64-bit little-endian length and the value (for values with newlines)."""
    fields = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            fields[k.decode()] = v.decode(errors="replace")
            i = nl + 1
        else:
            (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            fields[line.decode()] = data[nl + 9:nl + 9 + n].decode(errors="replace")
            i = nl + 9 + n + 1
    return fields


class FakeJournal:
    """Binds /run/systemd/journal/socket as journald would, and hands out the
    entries with the sender's pid (SO_PASSCRED)."""

    def __init__(self):
        self.created = []
        d = JOURNAL_SOCKET.parent
        for p in [d.parent, d]:
            if not p.exists():
                p.mkdir()
                self.created.append(p)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(str(JOURNAL_SOCKET))
        self.created.append(JOURNAL_SOCKET)

    def entries(self, until, timeout, what):
        """Entries until UNTIL(pid, fields) is true; returns that one."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no journal entry {what} within {timeout:.0f}s; "
                                     f"seen: {seen[-10:]}")
            self.sock.settimeout(left)
            try:
                data, anc, _, _ = self.sock.recvmsg(1 << 16, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            pid = None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:12])[0]
            fields = _journal_fields(data)
            seen.append((pid, fields.get("MESSAGE")))
            if until(pid, fields):
                return pid, fields

    def stdout_stream(self):
        """A client socket connected to /run/systemd/journal/stdout, what a
        service's stderr is under systemd (StandardError=journal)."""
        path = JOURNAL_SOCKET.parent / "stdout"
        self.stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.stream.bind(str(path))
        self.created.insert(len(self.created) - 1, path)
        self.stream.listen(4)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
        return client

    def close(self):
        self.sock.close()
        if getattr(self, "stream", None):
            self.stream.close()
        for p in reversed(self.created):
            try:
                p.unlink() if p.is_socket() else p.rmdir()
            except OSError:
                pass


def _real_journald():
    """TRUE when a journald listens on the socket; a socket file nobody
    listens on (left by a killed run) is removed."""
    if not JOURNAL_SOCKET.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(str(JOURNAL_SOCKET))
        return True
    except ConnectionRefusedError:
        JOURNAL_SOCKET.unlink()
        return False
    finally:
        s.close()


@pytest.fixture
def journal():
    if os.geteuid() != 0:
        pytest.skip("binding /run/systemd/journal/socket needs root")
    if _real_journald():
        yield None
        return
    j = FakeJournal()
    try:
        yield j
    finally:
        j.close()


def _journalctl_entry(pid, match, timeout):
    """With a real journald: the entry of PID matching MATCH (FIELD=VALUE)."""
    def find():
        p = subprocess.run(["journalctl", "-o", "json", "--no-pager", f"_PID={pid}", match],
                           capture_output=True, text=True, timeout=30 * SLOW)
        return [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    return wait_until(find, timeout=timeout, what=f"journalctl {match}")[0]


def test_event_lines_reach_the_journal_with_fields(journal, broker, agent, ctlfs, monkeypatch):
    monkeypatch.setenv("CTLFS_LOG", "journal")
    d = ctlfs(f"--brokers={broker.bootstrap}")
    monkeypatch.delenv("CTLFS_LOG")
    res = declare(d)
    agent(broker.bootstrap)
    subprocess.run(["sh", "-c", f"echo pause > '{res}/state'"], check=True,
                   timeout=30 * SLOW)
    line = command_lines(read(res / "log"), "pause")[0]
    cmd_id = kv(line)["id"]
    assert UUID.match(cmd_id), line
    pid = d.proc.pid

    if journal is None:
        e = _journalctl_entry(pid, f"CTLFS_COMMAND_ID={cmd_id}", 10 * SLOW)
    else:
        _, e = journal.entries(
            lambda p, f: p == pid and f.get("CTLFS_EVENT") == "command"
            and f.get("CTLFS_COMMAND_ID") == cmd_id,
            10 * SLOW, f"for command {cmd_id}")
    assert e["MESSAGE"] == line.split(" ", 1)[1], (e, line)
    assert e["PRIORITY"] == "6"              # G_LOG_LEVEL_INFO
    assert e["CTLFS_RUNTIME"] == "rt1" and e["CTLFS_RESOURCE"] == "svc"
    assert e["SYSLOG_IDENTIFIER"] == "ctlfs"
    # the runtime's answer names the same command
    if journal is not None:
        _, e = journal.entries(
            lambda p, f: p == pid and f.get("CTLFS_EVENT") == "observed"
            and " state=paused " in f.get("MESSAGE", ""),
            10 * SLOW, "for the observed state")
        assert e.get("CTLFS_COMMAND_ID") == cmd_id, e
        assert f" command={cmd_id} " in e["MESSAGE"], e
    # on a terminal INFO is not shown without -d
    assert "command id=" not in d.stderr()


def test_daemon_mode_logs_to_the_journal_not_dev_null(journal, broker, tmp_path):
    """Detached from the terminal (stderr is /dev/null), a daemon started
    without -f and without CTLFS_LOG logs to the journal when it exists."""
    if journal is None:
        pytest.skip("a real journald runs here: covered by journalctl in the test above")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CTLFS_LOG"}
    p = subprocess.run([str(CTLFS_BIN), f"--brokers={broker.bootstrap}",
                        f"--db={tmp_path / 'ctlfs.db'}", str(mnt)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       env=env, timeout=START_TIMEOUT)
    assert p.returncode == 0, p.stderr
    pid = _daemon_of(mnt)
    handle = _Mounted(mnt, pid)
    _live["daemons"].append(handle)
    try:
        name = f"jrnl-{os.getpid()}"
        os.mkdir(mnt / "runtimes" / name)
        sender, e = journal.entries(lambda p_, f: f.get("CTLFS_RUNTIME") == name,
                                    10 * SLOW, f"for runtime {name}")
        assert sender == pid and e["CTLFS_EVENT"] == "created", (sender, pid, e)
        _unmount_and_wait(handle, ["fusermount3", "-u"])
    finally:
        if mounted(mnt):
            _fusermount(["-uz"], mnt)
        if handle.proc.poll() is None:
            handle.proc.kill()
        _live["daemons"].remove(handle)


def test_under_systemd_the_journal_is_chosen_by_itself(journal, broker, tmp_path):
    """Without CTLFS_LOG, a daemon whose stderr is the journal's stream (a
    systemd service) sends its events to the journal, with their fields."""
    if journal is None:
        pytest.skip("a real journald runs here: covered by journalctl in the test above")
    stderr = journal.stdout_stream()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CTLFS_LOG"}
    proc = subprocess.Popen([str(CTLFS_BIN), "-f", f"--brokers={broker.bootstrap}",
                             f"--db={tmp_path / 'ctlfs.db'}", str(mnt)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=stderr.fileno(), env=env)
    stderr.close()
    handle = _Mounted(mnt, proc.pid)
    handle.proc = proc
    _live["daemons"].append(handle)
    try:
        wait_until(lambda: mounted(mnt) or proc.poll() is not None, timeout=START_TIMEOUT,
                   what="ctlfs mounted")
        assert proc.poll() is None, f"ctlfs exited {proc.returncode}"
        os.mkdir(mnt / "runtimes" / "rt1")
        os.mkdir(mnt / "runtimes" / "rt1" / "svc")
        sender, e = journal.entries(
            lambda p, f: p == proc.pid and f.get("CTLFS_RESOURCE") == "svc",
            10 * SLOW, "for resource svc")
        assert e["CTLFS_RUNTIME"] == "rt1" and e["CTLFS_EVENT"] == "created", e
        assert e["PRIORITY"] == "6" and e["MESSAGE"].startswith("runtimes/rt1/svc created ")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=EXIT_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if mounted(mnt):
            _fusermount(["-uz"], mnt)
        _live["daemons"].remove(handle)
