"""The janitor (issue 7, CDAP runtime monitor, seed 003): a runtime whose
feedback has been silent for --expire-after-ms is `inactive` in its status
(logged, watchers woken); with --expire=remove it is removed with its
resources and its topics' stored offsets, and the tree shows it. Per-topic
offsets are shown in the runtime's status and survive a restart."""

import calendar
import os
import sqlite3
import time

import pytest

from conftest import (SLOW, declare, handled, kv, read, status_dict, wait_until,
                      write_state)
from test_watch import EVENT_TIMEOUT, inotify  # noqa: F401  (the fixture)

EXPIRE_MS = int(1500 * SLOW)


def _events(log_text, event):
    return [ln for ln in log_text.splitlines() if ln.split(" ")[2] == event]


def _line_ms(line):
    """The wall-clock time (ms) a log line carries (UTC, ms precision)."""
    ts = line.split(" ")[0]
    return (calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) * 1000
            + int(ts[20:23]))


def _stored_offsets(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(con.execute("SELECT topic, SUM(next_offset) FROM offsets"
                                " GROUP BY topic").fetchall())
    finally:
        con.close()


def test_silent_runtime_is_marked_inactive_then_active_again(broker, ctlfs, agent, inotify):
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--expire-after-ms={EXPIRE_MS}")
    declare(d)
    status = d.path("runtimes", "rt1", "status")
    a = agent(broker.bootstrap, heartbeat_ms=200)
    wait_until(lambda: status_dict(status)["last_heartbeat"] != "-", what="a heartbeat")
    st = status_dict(status)
    assert st["activity"] == "active", st
    assert int(st["silent_ms"]) < EXPIRE_MS, st
    w = inotify(status)

    a.stop()
    w.wait_for(status, lambda: status_dict(status)["activity"] == "inactive",
               timeout=EXPIRE_MS / 1000 + EVENT_TIMEOUT, what="activity: inactive")
    st = status_dict(status)
    assert int(st["silent_ms"]) >= EXPIRE_MS, st
    lines = _events(read(d.path("runtimes", "rt1", "log")), "inactive")
    assert len(lines) == 1, lines
    f = kv(lines[0])
    assert f["action"] == "mark" and int(f["expire_after_ms"]) == EXPIRE_MS, lines
    # mark only: the runtime, its resource and its history stay
    assert os.path.isdir(d.path("runtimes", "rt1", "svc"))
    assert "inactive" in read(d.path("log"))

    agent(broker.bootstrap, heartbeat_ms=200)
    w.wait_for(status, lambda: status_dict(status)["activity"] == "active",
               what="activity: active again")
    assert len(_events(read(d.path("runtimes", "rt1", "log")), "active")) == 1


def test_expire_remove_cleans_objects_and_offsets_and_wakes_watchers(
        broker, ctlfs, agent, inotify):
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--expire-after-ms={EXPIRE_MS}",
              "--expire=remove")
    declare(d, "gone", "svc")
    declare(d, "kept", "svc")
    os.mkdir(d.path("runtimes", "kept", "db"))
    live = agent(broker.bootstrap, runtime="kept", resources=("svc", "db"), heartbeat_ms=200)
    dying = agent(broker.bootstrap, runtime="gone", heartbeat_ms=200)
    write_state(d.path("runtimes", "gone", "svc", "state"), "pause\n")
    wait_until(lambda: status_dict(d.path("runtimes", "gone", "svc", "status"))["observed"]
               == "paused", what="gone/svc paused")
    wait_until(lambda: status_dict(d.path("runtimes", "gone", "status"))["feedback_offset"]
               != "-", what="gone's feedback offset stored")
    topics = ("ctlfs.gone.commands", "ctlfs.gone.feedback")
    wait_until(lambda: all(t in _stored_offsets(d.db) for t in topics),
               what="gone's offsets in the database")
    w = inotify(d.path("log"))

    dying.stop()
    w.wait_for(d.path("log"), lambda: not os.path.exists(d.path("runtimes", "gone")),
               timeout=EXPIRE_MS / 1000 + EVENT_TIMEOUT, what="runtimes/gone removed")
    assert sorted(os.listdir(d.path("runtimes"))) == ["kept"]
    expired = _events(read(d.path("log")), "expired")
    assert len(expired) == 1 and kv(expired[0])["runtime"] == "gone", expired
    assert kv(expired[0])["by"] == "janitor", expired
    removed = [ln for ln in _events(read(d.path("log")), "removed")
               if ln.split(" ")[1].startswith("runtimes/gone")]
    assert sorted(ln.split(" ")[1] for ln in removed) == ["runtimes/gone",
                                                           "runtimes/gone/svc"], removed
    offsets = _stored_offsets(d.db)
    assert not [t for t in offsets if t.startswith("ctlfs.gone.")], offsets
    assert "ctlfs.kept.feedback" in offsets, offsets
    # the live runtime is untouched and still reports
    st = status_dict(d.path("runtimes", "kept", "status"))
    assert st["activity"] == "active" and st["resources"] == "2", st
    # a removal that outlives a restart: the database no longer has it
    d.stop()
    d.start()
    assert sorted(os.listdir(d.path("runtimes"))) == ["kept"]
    live.stop()


def test_never_reporting_runtime_expires_from_its_declaration(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--expire-after-ms={EXPIRE_MS}",
              "--expire=remove")
    declare(d, "quiet", None)
    st = status_dict(d.path("runtimes", "quiet", "status"))
    assert st["activity"] == "active" and st["last_heartbeat"] == "-", st
    wait_until(lambda: "quiet" not in os.listdir(d.path("runtimes")),
               timeout=EXPIRE_MS / 1000 + EVENT_TIMEOUT, what="quiet expired")
    assert len(_events(read(d.path("log")), "expired")) == 1


def test_runtime_with_a_command_in_flight_is_not_removed(broker, ctlfs):
    """Durable command waiting for a slow broker (the link up, so silence
    counts): the janitor must not pull the runtime from under it; it goes once
    the command is answered."""
    rtt_ms = 2 * EXPIRE_MS
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--expire-after-ms={EXPIRE_MS}",
              "--expire=remove", f"--ack-timeout-ms={4 * rtt_ms}")
    res = declare(d, "busy", "svc")
    wait_until(lambda: "silence=counted" in read(d.path("log")), what="the janitor counting")
    broker.fault(f"rtt 1 {rtt_ms}")
    sent_ms = time.time() * 1000
    write_state(res / "state", "pause\n")   # returns after the slow ack
    broker.fault("rtt 1 0")
    # the expiry time passed while the write waited ...
    assert _events(read(d.path("log")), "inactive")
    wait_until(lambda: "busy" not in os.listdir(d.path("runtimes")),
               timeout=EXPIRE_MS / 1000 + EVENT_TIMEOUT, what="busy removed after the write")
    # ... but the removal waited for the answer, which the broker could not
    # give before one round trip after the write (the janitor may act as soon
    # as the ack is in, even before write() has returned: compare times)
    expired = _events(read(d.path("log")), "expired")
    assert len(expired) == 1 and kv(expired[0])["runtime"] == "busy", expired
    assert _line_ms(expired[0]) >= sent_ms + rtt_ms - 5, (expired, sent_ms)


def test_offsets_per_topic_in_status_survive_restart(broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    res = declare(d)
    agent(broker.bootstrap, heartbeat_ms=200)
    for verb in ("pause", "resume", "pause"):
        write_state(res / "state", verb + "\n")
    status = d.path("runtimes", "rt1", "status")
    wait_until(lambda: handled(status_dict(status)["command_offset"]) == 3,
               what="3 commands read")
    # one report per command at least (and heartbeats)
    wait_until(lambda: handled(status_dict(status)["feedback_offset"]) >= 3,
               what="3 feedback messages read")
    st = status_dict(status)
    assert st["activity"] == "-" and st["silent_ms"] == "-", st   # janitor off by default
    stored = _stored_offsets(d.db)
    assert stored["ctlfs.rt1.commands"] == 3, stored
    d.stop()
    d.start()
    after = status_dict(status)
    assert after["command_offset"] == st["command_offset"], after
    assert handled(after["feedback_offset"]) >= handled(st["feedback_offset"]), (st, after)


def test_a_broker_outage_of_twice_the_expiry_keeps_every_live_runtime(broker, ctlfs, agent):
    """Issue 14: silence during an outage is not the runtime's silence. With
    expire=remove and the broker down for twice the period, the live runtime
    stays, is never marked, and its agent's heartbeats show again after."""
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--expire-after-ms={EXPIRE_MS}",
              "--expire=remove")
    for rt in ("live", "other"):
        declare(d, rt, "svc")
        agent(broker.bootstrap, runtime=rt, heartbeat_ms=200)
    status = d.path("runtimes", "live", "status")
    root_log = d.path("log")
    wait_until(lambda: "silence=counted" in read(root_log), what="the janitor counting")
    wait_until(lambda: status_dict(status)["last_heartbeat"] != "-", what="a heartbeat")

    broker.fault("down 1")
    wait_until(lambda: status_dict(d.path("status"))["broker_link"] == "down",
               what="broker_link down")
    wait_until(lambda: "silence=not-counted" in read(root_log), what="the janitor pausing")
    before = status_dict(status)["last_heartbeat"]
    # The outage itself: it has to last twice the period (a duration of the
    # scenario, not a wait for an event); the janitor ticks many times meanwhile.
    time.sleep(2 * EXPIRE_MS / 1000)
    st = status_dict(status)
    assert st["activity"] == "active" and st["silent_ms"] == "0", st
    broker.fault("up 1")
    wait_until(lambda: status_dict(d.path("status"))["broker_link"] == "up",
               what="broker_link up")
    wait_until(lambda: status_dict(status)["last_heartbeat"] != before,
               what="the agent's heartbeats read again")
    wait_until(lambda: read(root_log).count("silence=counted") == 2,
               what="the janitor counting again")
    for rt in ("live", "other"):
        assert os.path.isdir(d.path("runtimes", rt, "svc")), rt
        st = status_dict(d.path("runtimes", rt, "status"))
        assert st["activity"] == "active" and int(st["silent_ms"]) < EXPIRE_MS, (rt, st)
    text = read(root_log)
    assert " expired " not in text and " inactive " not in text, text
