"""The [kafka] group: librdkafka client properties for real clusters.

A bad or reserved property stops the start with one line naming it; a
credential is refused on the command line and in a file others can read; a
0600 file is accepted, and its properties reach librdkafka (SASL against
ctlfs-broker, which has no SASL, fails visibly); the password never appears
in stderr, status or log.
"""
import os

from conftest import (CTLFS_BIN, mounted, read, start_expecting_failure, status_dict,
                      wait_until)

PASSWORD = "hunter2-Zq9xV"


def write_conf(tmp_path, text, mode=0o600, name="ctlfs.conf"):
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, mode)
    return path


def one_line_exit_2(p):
    assert p.returncode == 2, f"exit {p.returncode}, stderr: {p.stderr}"
    lines = p.stderr.strip("\n").split("\n")
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_unknown_property_stops_the_start(tmp_path):
    conf = write_conf(tmp_path, "[kafka]\nsecurity.protocol=SASL_SSL\nsasl.mechanizm=PLAIN\n")
    p = start_expecting_failure([f"--config={conf}", f"--db={tmp_path}/a.db"], tmp_path / "mnt")
    assert one_line_exit_2(p) == "ctlfs: [kafka] sasl.mechanizm: No such configuration property"


def test_invalid_value_and_the_command_line(tmp_path):
    p = start_expecting_failure(["-o", "kafka.security.protocol=SASL_SSLL",
                                 f"--db={tmp_path}/a.db"], tmp_path / "mnt")
    line = one_line_exit_2(p)
    assert line.startswith("ctlfs: [kafka] security.protocol: "), line
    assert "SASL_SSLL" in line


def test_unloadable_ca_file_stops_the_start(tmp_path):
    """Found by making a client (after the fork, before anything is started)."""
    conf = write_conf(tmp_path, "[kafka]\nsecurity.protocol=SSL\n"
                      f"ssl.ca.location={tmp_path}/missing-ca.pem\n")
    for foreground in (True, False):
        p = start_expecting_failure([f"--config={conf}", f"--db={tmp_path}/a.db"],
                                    tmp_path / "mnt", foreground=foreground)
        line = one_line_exit_2(p)
        assert line.startswith("ctlfs: [kafka] ssl.ca.location failed"), line


def test_reserved_property_refused(tmp_path):
    conf = write_conf(tmp_path, "[kafka]\ngroup.id=mine\n")
    p = start_expecting_failure([f"--config={conf}", f"--db={tmp_path}/a.db"], tmp_path / "mnt")
    line = one_line_exit_2(p)
    assert "[kafka] group.id" in line and "set by ctlfs itself" in line, line
    p = start_expecting_failure(["-o", "kafka.enable.idempotence=false",
                                 f"--db={tmp_path}/a.db"], tmp_path / "mnt")
    assert "enable.idempotence" in one_line_exit_2(p)


def test_password_on_the_command_line_refused(tmp_path):
    p = start_expecting_failure(["-o", f"kafka.sasl.password={PASSWORD}",
                                 f"--db={tmp_path}/a.db"], tmp_path / "mnt")
    line = one_line_exit_2(p)
    assert "sasl.password" in line and "config file" in line, line
    assert PASSWORD not in p.stderr + p.stdout


SASL = ("[kafka]\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
        f"sasl.username=alice\nsasl.password={PASSWORD}\n")


def test_secret_in_a_readable_file_refused(tmp_path):
    conf = write_conf(tmp_path, SASL, mode=0o644)
    p = start_expecting_failure([f"--config={conf}", f"--db={tmp_path}/a.db"], tmp_path / "mnt")
    assert one_line_exit_2(p) == (f"ctlfs: {conf} holds [kafka] secrets and is readable by "
                                  "others (mode 0644); chmod 600 it")
    assert PASSWORD not in p.stderr
    if os.geteuid() == 0:
        # group-readable is refused unless the file is root's
        os.chmod(conf, 0o640)
        os.chown(conf, 65534, -1)
        p = start_expecting_failure([f"--config={conf}", f"--db={tmp_path}/a.db"],
                                    tmp_path / "mnt")
        assert "readable by its group (mode 0640)" in one_line_exit_2(p)


def test_sasl_reaches_librdkafka_and_the_password_stays_hidden(tmp_path, broker, ctlfs):
    """ctlfs-broker (librdkafka's mock) has no SASL: the client's handshake
    fails, which is the proof that the properties reached librdkafka. The
    operator sees broker_link down and a warning naming the mechanism."""
    conf = write_conf(tmp_path, f"[ctlfs]\nbrokers={broker.bootstrap}\n" + SASL)
    env = dict(os.environ, G_MESSAGES_DEBUG="all")   # every message, librdkafka's too
    d = ctlfs(f"--config={conf}", env=env)
    assert mounted(d.mnt)
    assert status_dict(d.path("status"))["broker_link"] == "down"
    wait_until(lambda: "_AUTHENTICATION" in d.stderr(), what="the authentication warning")
    err = d.stderr()
    warning = next(line for line in err.splitlines() if "WARNING" in line and "_AUTHENTICATION" in line)
    assert "SASL" in warning and "PLAIN" in warning, warning
    # GLib writes info and debug messages to stdout
    wait_until(lambda: any("kafka client properties" in line for line in d.stdout_lines),
               what="the properties' info line")
    out = "".join(d.stdout_lines)
    assert "kafka client properties: security.protocol=SASL_PLAINTEXT sasl.mechanism=PLAIN " \
           "sasl.username=alice sasl.password=***" in out
    assert "rdkafka" in out          # librdkafka's own debug chatter is there too
    os.mkdir(d.path("runtimes", "rt1"))
    texts = [err, read(d.path("status")), read(d.path("log")),
             read(d.path("runtimes", "rt1", "status"))]
    d.stop()
    texts += [d.stderr(), "".join(d.stdout_lines)]
    for t in texts:
        assert PASSWORD not in t


def test_private_file_accepted_and_used(tmp_path, broker, ctlfs):
    """A 0600 file with credentials, over PLAINTEXT (librdkafka ignores the
    SASL settings then): mounted, the link up, client.id overridden."""
    conf = write_conf(tmp_path, f"[ctlfs]\nbrokers={broker.bootstrap}\n"
                      "[kafka]\nclient.id=ctlfs-adm1\nsasl.username=alice\n"
                      f"sasl.password={PASSWORD}\nsocket.keepalive.enable=true\n")
    d = ctlfs(f"--config={conf}")
    wait_until(lambda: status_dict(d.path("status"))["broker_link"] == "up",
               what="broker_link up")
    os.mkdir(d.path("runtimes", "rt1"))
    os.mkdir(d.path("runtimes", "rt1", "svc"))
    assert PASSWORD not in d.stderr()
    d.stop()


def test_bad_property_without_foreground_mounts_nothing(tmp_path):
    conf = write_conf(tmp_path, "[kafka]\nssl.ca.locaton=/etc/ca.pem\n")
    p = start_expecting_failure([f"--config={conf}", f"--db={tmp_path}/a.db"], tmp_path / "mnt",
                                foreground=False)
    assert one_line_exit_2(p) == "ctlfs: [kafka] ssl.ca.locaton: No such configuration property"
    assert CTLFS_BIN.exists()


def test_broker_makes_topics_with_partitions(broker):
    """ctlfs-broker's `topic NAME PARTITIONS`: for tests of [topics]."""
    import json
    import subprocess
    broker.fault("topic ctlfs.rt3.feedback 3")
    assert broker.fault("topic ctlfs.rt3.feedback 0", expect_ok=False).startswith("error: ")
    assert broker.fault("topic onlyname", expect_ok=False).startswith("error: ")
    p = subprocess.run(["kcat", "-L", "-J", "-b", broker.bootstrap, "-t", "ctlfs.rt3.feedback"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    topics = json.loads(p.stdout)["topics"]
    assert [len(t["partitions"]) for t in topics if t["topic"] == "ctlfs.rt3.feedback"] == [3]
