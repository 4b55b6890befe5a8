"""The issue scenario end to end: a broker, the daemon, a runtime agent;
`echo pause > state` goes out as a command, comes back as feedback, and every
file a user would look at tells the same story. Then resume."""

import os
import re
import select
import subprocess
import time

from conftest import (FOLLOWER_STATUS_KEYS, RESOURCE_STATUS_KEYS, RUNTIME_STATUS_KEYS, RFC3339_MS, SLOW, UUID,
                      command_lines, declare, hostname, kcat_consume, kv, parse_status,
                      read, read_word, sh, status_dict, wait_until, whoami, write_state)


def _issue(res, verb):
    """`echo VERB > state` typed in a shell whose cwd is the resource dir.
    Returns the pid of the shell (the process that wrote)."""
    p = subprocess.Popen(["sh", "-c", f"echo {verb} > state"], cwd=res,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=30 * SLOW)
    assert p.returncode == 0, f"echo {verb} > state: exit {p.returncode}: {err}"
    return p.pid


def _check_command_line(line, verb, pid):
    uid, user = whoami()
    pattern = (r"^(\S+) runtimes/rt1/svc command id=(\S+) verb=" + verb +
               r" by=uid:" + str(uid) + r"\(" + re.escape(user) + r"\) pid=" + str(pid) +
               r" comm=sh host=" + re.escape(hostname()) + r" result=sent offset=(\d+)"
               r" partition=(\d+)$")
    m = re.match(pattern, line)
    assert m, f"command log line not as the contract says:\n  {line}\n  ~ {pattern}"
    assert RFC3339_MS.match(m.group(1)), m.group(1)
    assert UUID.match(m.group(2)), f"command id is not a UUID: {m.group(2)}"
    return m.group(2), (int(m.group(4)), int(m.group(3)))


def _one_way(d, bootstrap, res, verb, want_state, n_before):
    """Issues VERB, checks every file and the command topic. Returns the
    command id."""
    log_before = read(res / "log")
    pid = _issue(res, verb)
    # durable: write() returned after the broker's ack, so all of this holds now
    assert read(res / "state") == f"{want_state}\n"
    lines = [ln for ln in command_lines(read(res / "log"), verb) if " result=sent " in ln]
    new = [ln for ln in lines if ln not in log_before]
    assert len(new) == 1, f"expected one new `command ... verb={verb} ... result=sent` " \
                          f"line in the resource log, got: {new}\nlog:\n{read(res / 'log')}"
    cmd_id, offset = _check_command_line(new[0], verb, pid)

    msgs = kcat_consume(bootstrap, "ctlfs.rt1.commands")
    assert len(msgs) == n_before + 1, [m["payload"] for m in msgs]
    m = msgs[-1]
    assert (m["partition"], m["offset"]) == offset, \
        "log offset= partition= is not the message's place in the topic"
    assert m["key"] == "svc"
    v = m["value"]
    uid, user = whoami()
    assert v["id"] == cmd_id
    assert (v["runtime"], v["resource"], v["verb"]) == ("rt1", "svc", verb)
    assert RFC3339_MS.match(v["issued_at"]), v["issued_at"]
    want_by = {"uid": uid, "user": user, "pid": pid, "comm": "sh", "host": hostname()}
    assert {k: v["issued_by"].get(k) for k in want_by} == want_by
    h = m.get("headers") or []
    h = dict(zip(h[0::2], h[1::2]))
    assert h.get("ctlfs-version") == "1", f"headers: {h}"
    # the command's id, resource and verb as headers too (the daemon's own read-back)
    assert (h.get("ctlfs-id"), h.get("ctlfs-resource"), h.get("ctlfs-verb")) \
        == (cmd_id, "svc", verb), f"headers: {h}"

    # the runtime applies it and reports back
    wait_until(lambda: read(res / "observed") == f"{want_state}\n",
               what=f"observed == {want_state}")
    st = parse_status(read(res / "status"))
    assert [k for k, _ in st] == FOLLOWER_STATUS_KEYS
    st = dict(st)
    assert st["desired"] == want_state
    assert st["observed"] == want_state
    assert RFC3339_MS.match(st["observed_at"]), st["observed_at"]
    assert st["pending"] == "-"
    assert st["last_command"] == f"{cmd_id} {verb} applied"
    assert st["last_error"] == "-"
    assert re.fullmatch(r"\d+", st["heartbeat_age_ms"]), st["heartbeat_age_ms"]

    # the same event in the runtime's and the root's log
    assert new[0] in read(d.path("runtimes", "rt1", "log")).splitlines()
    assert new[0] in read(d.path("log")).splitlines()
    # logs are append-only
    assert read(res / "log").startswith(log_before)
    return cmd_id


def _roundtrip(d, bootstrap, agent):
    res = declare(d)
    agent(bootstrap, "rt1", ["svc"])
    assert read(res / "state") == "running\n"
    wait_until(lambda: read(res / "observed") == "running\n",
               what="observed == running (the agent's first feedback)")

    id1 = _one_way(d, bootstrap, res, "pause", "paused", 0)
    rt = parse_status(read(d.path("runtimes", "rt1", "status")))
    assert [k for k, _ in rt] == RUNTIME_STATUS_KEYS
    rt = dict(rt)
    assert rt["backend"] == "kafka"
    assert rt["command_topic"] == "ctlfs.rt1.commands"
    assert rt["feedback_topic"] == "ctlfs.rt1.feedback"
    assert re.fullmatch(r"\d+:\d+( \d+:\d+)*", rt["feedback_offset"]), rt["feedback_offset"]
    assert rt["resources"] == "1"
    assert (rt["paused"], rt["running"]) == ("1", "0")
    assert RFC3339_MS.match(rt["last_heartbeat"]), rt["last_heartbeat"]

    id2 = _one_way(d, bootstrap, res, "resume", "running", 1)
    assert id2 != id1
    rt = status_dict(d.path("runtimes", "rt1", "status"))
    assert (rt["paused"], rt["running"]) == ("0", "1")
    verbs = [m["value"]["verb"] for m in kcat_consume(bootstrap, "ctlfs.rt1.commands")]
    assert verbs == ["pause", "resume"]


def test_roundtrip_external_broker(broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    assert status_dict(d.path("status"))["brokers"] == broker.bootstrap
    _roundtrip(d, broker.bootstrap, agent)


def test_roundtrip_embedded_broker(ctlfs, agent):
    d = ctlfs()      # no --brokers: the daemon starts its own and prints it
    assert d.bootstrap and re.fullmatch(r"127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+)*", d.bootstrap), \
        d.bootstrap
    assert status_dict(d.path("status"))["brokers"] == d.bootstrap
    _roundtrip(d, d.bootstrap, agent)


def test_repeating_the_desired_verb_is_published_again(broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    agent(broker.bootstrap)
    write_state(res / "state", "pause\n")
    write_state(res / "state", "pause\n")
    assert read(res / "state") == "paused\n"
    msgs = kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")
    assert [m["value"]["verb"] for m in msgs] == ["pause", "pause"]
    assert msgs[0]["value"]["id"] != msgs[1]["value"]["id"]
    wait_until(lambda: read(res / "observed") == "paused\n", what="observed == paused")
    second = msgs[1]["value"]["id"]
    wait_until(lambda: status_dict(res / "status")["last_command"] == f"{second} pause applied",
               what="the repeated command applied")


def test_inotify_wakes_watcher_of_observed(broker, ctlfs, agent):
    """An inotify watcher of `observed` wakes once the runtime reports the
    pause. It watches as a script does (inotifywait -m) and checks the file
    at each wake-up: an IN_MODIFY raised for the agent's first report may
    still reach it after its watch is in place, and must not count."""
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    agent(broker.bootstrap)
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")
    w = subprocess.Popen(["inotifywait", "-m", "-e", "modify", str(res / "observed")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # inotifywait says on stderr when its watch is in place
        line = w.stderr.readline()
        while line and "Watches established" not in line:
            line = w.stderr.readline()
        assert "Watches established" in line, "inotifywait did not start"
        write_state(res / "state", "pause\n")
        deadline = time.monotonic() + 30 * SLOW
        events = ""
        while True:
            ready, _, _ = select.select([w.stdout], [], [], max(0, deadline - time.monotonic()))
            assert ready, f"no IN_MODIFY on observed showing paused; events: {events!r}"
            chunk = os.read(w.stdout.fileno(), 4096).decode()
            assert chunk, f"inotifywait exited: {w.stderr.read()}"
            events += chunk
            assert "MODIFY" in chunk, events
            if read(res / "observed") == "paused\n":
                break
    finally:
        w.kill()
        w.wait()


def test_poll_wakes_reader_of_observed(broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    agent(broker.bootstrap)
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")
    fd = os.open(res / "observed", os.O_RDONLY)
    try:
        assert os.read(fd, 4096) == b"running\n"      # sysfs: read, then poll
        p = select.poll()
        p.register(fd, select.POLLPRI | select.POLLERR)
        write_state(res / "state", "pause\n")
        t0 = time.monotonic()
        events = p.poll(int(20000 * SLOW))
        assert events, f"poll() not woken within {time.monotonic() - t0:.1f}s"
        assert events[0][1] & (select.POLLPRI | select.POLLERR), events
        assert os.pread(fd, 4096, 0) == b"paused\n"
    finally:
        os.close(fd)


def test_observed_goes_stale_when_heartbeats_stop(broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}", "--stale-after-ms=1500")
    res = declare(d)
    a = agent(broker.bootstrap, heartbeat_ms=200)
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")
    age = int(status_dict(res / "status")["heartbeat_age_ms"])
    assert 0 <= age < 1500, f"heartbeat_age_ms {age} with heartbeats every 200 ms"
    a.stop()
    wait_until(lambda: read(res / "observed") == "stale\n", what="observed == stale")
    assert int(status_dict(res / "status")["heartbeat_age_ms"]) >= 1500
    rt = status_dict(d.path("runtimes", "rt1", "status"))
    assert (rt["stale"], rt["running"]) == ("1", "0")


def test_log_tail_shows_latest_command(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    write_state(res / "state", "pause\n")
    write_state(res / "state", "resume\n")
    last = sh("tail -n 1 log", cwd=res).stdout
    assert last.endswith("\n") and last.count("\n") == 1, repr(last)
    full = read(res / "log").splitlines()
    resumes = [i for i, ln in enumerate(full) if ln in command_lines("\n".join(full), "resume")]
    assert resumes, full
    # the last line tail saw is the resume command or something logged after it
    assert last.rstrip("\n") in full[resumes[-1]:]
    assert kv(full[resumes[-1]])["verb"] == "resume"


def test_every_command_ends_applied_even_when_a_newer_one_came_first(broker, ctlfs, agent):
    """Commands issued before the runtime reported on the first: each is
    reported on, and each ends `applied` in the log and the store, not only
    the newest (the older ones are marked superseded=yes)."""
    import sqlite3
    d = ctlfs(f"--brokers={broker.bootstrap}", "--write-mode=queued")
    res = declare(d)
    verbs = ["pause", "resume", "pause", "resume", "pause"]
    for v in verbs:
        write_state(res / "state", v + "\n")       # no agent yet: all wait
    ids = list(dict.fromkeys(kv(ln)["id"] for ln in command_lines(read(res / "log"))))
    assert len(ids) == len(verbs), ids
    agent(broker.bootstrap, heartbeat_ms=0)

    def results():
        out = {}
        for ln in command_lines(read(res / "log")):
            out[kv(ln)["id"]] = kv(ln)["result"]   # the last line per id wins
        return out
    wait_until(lambda: all(results().get(i) == "applied" for i in ids),
               what="every command applied")
    older = [ln for ln in command_lines(read(res / "log")) if "superseded=yes" in ln]
    assert {kv(ln)["id"] for ln in older} == set(ids[:-1]), read(res / "log")
    assert read_word(res / "observed") == "paused"
    st = status_dict(res / "status")
    assert st["pending"] == "-" and st["last_command"] == f"{ids[-1]} pause applied", st
    con = sqlite3.connect(f"file:{d.db}?mode=ro", uri=True)
    try:
        rows = dict(con.execute("SELECT id, result FROM commands").fetchall())
    finally:
        con.close()
    assert all(rows[i] == "applied" for i in ids), rows
