"""The shape of the tree: listings, file types and modes, the root files, and
objects appearing from feedback."""

import os
import re
import stat
import subprocess
import time

import pytest

from conftest import (RUNTIME_FILES, RESOURCE_FILES, FOLLOWER_STATUS_KEYS, CTLFS_BIN, REPO, RESOURCE_STATUS_KEYS, ROOT_STATUS_KEYS,
                      RUNTIME_STATUS_KEYS, SLOW, START_TIMEOUT, _fusermount, declare,
                      kcat_produce, mounted, parse_status, read, status_dict, wait_until,
                      write_state)

OBSERVED_STATES = ["running", "paused", "pausing", "resuming", "starting", "stopping",
                   "stopped", "unknown", "stale"]


def _project_version():
    m = re.search(r"version\s*:\s*'([^']+)'", (REPO / "meson.build").read_text())
    return m.group(1)


def test_root_listing_and_types(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    names = set(os.listdir(d.mnt))
    assert {"README", "status", "log", "metrics", "runtimes"} <= names, names
    assert names <= {"README", "status", "log", "metrics", "runtimes", "modules"}, names
    for f in ["README", "status", "log", "metrics"]:
        st = os.stat(d.path(f))
        assert stat.S_ISREG(st.st_mode), f
        assert st.st_mode & 0o444, f"{f} is not readable"
        assert not st.st_mode & 0o222, f"{f} is read-only but has write bits"
    assert stat.S_ISDIR(os.stat(d.path("runtimes")).st_mode)
    assert os.listdir(d.path("runtimes")) == []
    # readdir's d_type agrees with stat
    with os.scandir(d.mnt) as it:
        for e in it:
            assert e.is_dir() == (e.name in ("runtimes", "modules")), e.name


def test_root_files_are_readable_and_end_with_newline(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    for f in ["README", "status", "metrics"]:
        text = read(d.path(f))
        assert text and text.endswith("\n"), f"{f}: {text[-80:]!r}"
    assert "runtimes" in read(d.path("README"))
    st = parse_status(read(d.path("status")))
    assert [k for k, _ in st] == ROOT_STATUS_KEYS
    st = dict(st)
    assert st["version"] == _project_version()
    assert st["brokers"] == broker.bootstrap
    assert st["db"] == str(d.db)
    assert st["write_mode"] == "durable"
    assert st["pending_commands"] == "0"
    assert re.fullmatch(r"\d+", st["uptime_s"]), st["uptime_s"]
    wait_until(lambda: status_dict(d.path("status"))["broker_link"] == "up",
               what="broker_link: up")
    log = read(d.path("log"))
    assert log == "" or log.endswith("\n")


METRIC_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*,?\})? '
    r'([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|[-+]?Inf|NaN)( -?\d+)?$')


def test_metrics_is_prometheus_text(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    write_state(res / "state", "pause\n")
    text = read(d.path("metrics"))
    assert text.endswith("\n")
    samples = 0
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            assert len(parts) == 4 and parts[3] in ("counter", "gauge", "histogram",
                                                    "summary", "untyped"), line
            typed.add(parts[2])
        elif line.startswith("# HELP ") or line == "":
            continue
        elif line.startswith("#"):
            continue
        else:
            assert METRIC_LINE.match(line), f"not a Prometheus sample line: {line!r}"
            samples += 1
    assert samples > 0 and typed, text


def test_declare_list_and_remove(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    rts = d.path("runtimes")
    os.mkdir(rts / "rt1")
    os.mkdir(rts / "rt2")
    assert sorted(os.listdir(rts)) == ["rt1", "rt2"]
    assert sorted(os.listdir(rts / "rt1")) == RUNTIME_FILES
    os.mkdir(rts / "rt1" / "svc")
    os.mkdir(rts / "rt1" / "db")
    assert sorted(os.listdir(rts / "rt1")) == sorted(RUNTIME_FILES + ["db", "svc"])
    assert sorted(os.listdir(rts / "rt1" / "svc")) == RESOURCE_FILES
    for rel, kind in [("rt1", "d"), ("rt1/svc", "d"), ("rt1/status", "r"), ("rt1/log", "r"),
                      ("rt1/svc/state", "w"), ("rt1/svc/observed", "r"),
                      ("rt1/svc/status", "r"), ("rt1/svc/log", "r")]:
        mode = os.stat(rts.joinpath(*rel.split("/"))).st_mode
        if kind == "d":
            assert stat.S_ISDIR(mode), rel
        else:
            assert stat.S_ISREG(mode), rel
            assert mode & stat.S_IRUSR, rel
            assert bool(mode & stat.S_IWUSR) == (kind == "w"), f"{rel}: {oct(mode)}"
    # ls -l as a user runs it
    p = subprocess.run(["ls", "-la", str(rts / "rt1" / "svc")], capture_output=True,
                       text=True, timeout=30 * SLOW)
    assert p.returncode == 0 and "state" in p.stdout, p.stderr
    os.rmdir(rts / "rt1" / "db")
    assert sorted(os.listdir(rts / "rt1")) == sorted(RUNTIME_FILES + ["svc"])
    os.rmdir(rts / "rt2")
    assert os.listdir(rts) == ["rt1"]
    assert not os.path.exists(rts / "rt2")


def test_new_objects_read_as_the_contract_says(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    assert read(res / "state") == "running\n"
    obs = read(res / "observed")
    assert obs.endswith("\n") and obs.rstrip("\n") in OBSERVED_STATES, obs
    st = parse_status(read(res / "status"))
    assert [k for k, _ in st] == FOLLOWER_STATUS_KEYS
    st = dict(st)
    assert (st["desired"], st["pending"], st["last_command"], st["last_error"],
            st["state_source"]) == ("running", "-", "-", "-", "runtime")
    assert st["observed"] == obs.rstrip("\n")
    rt = parse_status(read(d.path("runtimes", "rt1", "status")))
    assert [k for k, _ in rt] == RUNTIME_STATUS_KEYS
    rt = dict(rt)
    assert rt["backend"] == "kafka"
    assert rt["resources"] == "1"
    # every resource is counted under exactly one observed state
    assert sum(int(rt[s]) for s in OBSERVED_STATES) == 1
    for f in ["log"]:
        text = read(res / f)
        assert text == "" or text.endswith("\n")


def test_reads_at_any_offset_are_consistent(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    write_state(res / "state", "pause\n")
    for f in ["state", "status", "log"]:
        whole = (res / f).read_bytes()
        fd = os.open(res / f, os.O_RDONLY)
        try:
            pieces = b"".join(os.pread(fd, 1, i) for i in range(len(whole)))
            assert os.pread(fd, 10, len(whole) + 5) == b""
        finally:
            os.close(fd)
        if f != "status":      # heartbeat_age_ms moves while we read
            assert pieces == whole, f


def test_feedback_for_an_unknown_resource_creates_it(broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    os.mkdir(d.path("runtimes", "rt1"))
    agent(broker.bootstrap, "rt1", ["auto1"])
    wait_until(lambda: "auto1" in os.listdir(d.path("runtimes", "rt1")),
               what="runtimes/rt1/auto1 appearing from feedback")
    res = d.path("runtimes", "rt1", "auto1")
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")
    assert sorted(os.listdir(res)) == RESOURCE_FILES


def test_bad_feedback_never_creates_objects_nor_stops_consumption(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    os.mkdir(d.path("runtimes", "rt1"))
    topic = "ctlfs.rt1.feedback"
    ts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    kcat_produce(broker.bootstrap, topic, "bad name",
                 {"resource": "bad name", "state": "running", "ts": ts})
    kcat_produce(broker.bootstrap, topic, "x" * 129,
                 {"resource": "x" * 129, "state": "running", "ts": ts})
    kcat_produce(broker.bootstrap, topic, "junk", "this is not JSON")
    kcat_produce(broker.bootstrap, topic, "nostate", {"resource": "nostate", "ts": ts})
    kcat_produce(broker.bootstrap, topic, "weird",
                 {"resource": "weird", "state": "exploded", "ts": ts})
    kcat_produce(broker.bootstrap, topic, "good",
                 {"resource": "good", "state": "paused", "ts": ts, "extra": {"ignored": 1}})
    # messages of a partition are handled in order: once `good` is there,
    # every bad one before it has been seen
    wait_until(lambda: "good" in os.listdir(d.path("runtimes", "rt1")),
               what="runtimes/rt1/good appearing from feedback")
    # malformed messages are skipped: no object from any of them
    assert sorted(os.listdir(d.path("runtimes", "rt1"))) == sorted(RUNTIME_FILES + ["good"])
    # ... and counted in metrics
    m = re.search(r"^(\w*feedback\w*rejected\w*)(\{[^}]*\})? (\d+)$", read(d.path("metrics")),
                  re.M)
    assert m, "no feedback-rejected counter in metrics"
    assert int(m.group(3)) >= 5, m.group(0)
    wait_until(lambda: read(d.path("runtimes", "rt1", "good", "observed")) == "paused\n",
               what="good observed == paused")
    rt_log = read(d.path("runtimes", "rt1", "log"))
    assert rt_log.endswith("\n")


def test_daemon_mode_returns_once_mounted(broker, tmp_path):
    if not CTLFS_BIN.exists():
        pytest.fail(f"{CTLFS_BIN} is not built")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        p = subprocess.run([str(CTLFS_BIN), f"--brokers={broker.bootstrap}",
                            f"--db={tmp_path / 'ctlfs.db'}", str(mnt)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=START_TIMEOUT)
        assert p.returncode == 0, p.stderr
        assert mounted(mnt), "ctlfs returned before the mount was there"
        os.mkdir(mnt / "runtimes" / "rt1")
        assert os.listdir(mnt / "runtimes") == ["rt1"]
        # The daemon's inotify kick (a truncate through its own mount, from a
        # helper thread) can hold the mount for an instant after a change, so
        # an immediate unmount may see EBUSY: retry that, briefly.
        def unmounted():
            u = subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True,
                               text=True, timeout=30 * SLOW)
            assert u.returncode == 0 or "busy" in u.stderr, u.stderr
            return u.returncode == 0
        wait_until(unmounted, timeout=3 * SLOW, interval=0.05, what="fusermount3 -u")
        assert not mounted(mnt)
    finally:
        if mounted(mnt):
            _fusermount(["-uz"], mnt)


def test_config_file_sets_options_and_command_line_wins(broker, ctlfs, tmp_path):
    conf = tmp_path / "ctlfs.conf"
    conf.write_text("[ctlfs]\n"
                    f"brokers={broker.bootstrap}\n"
                    "write-mode=queued\n"
                    "topic-prefix=fromconfig\n")
    d = ctlfs(f"--config={conf}", "--topic-prefix=cli")
    st = status_dict(d.path("status"))
    assert (st["brokers"], st["write_mode"]) == (broker.bootstrap, "queued")
    os.mkdir(d.path("runtimes", "rt1"))
    rt = status_dict(d.path("runtimes", "rt1", "status"))
    assert rt["command_topic"] == "cli.rt1.commands"
    assert rt["feedback_topic"] == "cli.rt1.feedback"


def test_mount_options_are_accepted_as_o_key_value(broker, ctlfs):
    d = ctlfs("-o", f"brokers={broker.bootstrap},write_mode=queued,stale_after_ms=1000")
    st = status_dict(d.path("status"))
    assert (st["brokers"], st["write_mode"]) == (broker.bootstrap, "queued")


def test_sigterm_with_files_and_directories_still_open_leaks_nothing(broker, ctlfs):
    """A daemon stopped while files and directories are open never gets their
    release: what they held is freed at the end all the same (under ASan a
    leak makes the exit status non-zero)."""
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    fds = [os.open(res / "state", os.O_RDONLY), os.open(res / "status", os.O_RDONLY),
           os.open(res / "state", os.O_WRONLY), os.open(res, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        assert os.read(fds[0], 64) == b"running\n"
        assert os.listdir(fds[3])          # a listing made, its handle kept open
        assert d.terminate() == 0, d.stderr()
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
