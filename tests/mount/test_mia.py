"""The Mia-Platform Fast Data dialect (seed 000, docs/seeds/mia.md) on real
mounts: `--dialect=mia` or `[runtime RT] dialect=mia` publishes a runtime's
commands as Fast Data state messages (its whole desired state) and understands
Fast Data feedback (edges), with the real agent in --dialect=mia, feedback
typed by hand, and two admin hosts."""

import json
import os
import time
import uuid

from conftest import (command_lines, declare, kcat_consume, kcat_produce, kv, read,
                      read_word, status_dict, wait_until, write_state)

MIA_KEY = {"id": "rt1"}


def artifacts(value, pipeline="rt1"):
    """{artifact name: state} of a state message's override for the pipeline
    named PIPELINE (keyed by its id or its name), whose state is the runtime-
    wide one at the top."""
    [p] = [p for p in value["pipelines"]["override"].values() if p["name"] == pipeline]
    assert p["state"] == value["pipelines"]["state"], value
    return {a["name"]: a["state"] for a in p.get("override", {}).values()}


def last_id(res):
    return status_dict(res / "status")["last_command"].split()[0]


def feedback(broker, edges, rt="rt1"):
    """Produces one Fast Data feedback message: EDGES is [(artifact, state)]."""
    value = {"edges": [{"artifact": {"id": f"uuid-{a}", "name": a},
                        "exec": {"id": "e1", "name": "mapping"}, "state": s}
                       for a, s in edges]}
    kcat_produce(broker.bootstrap, f"ctlfs.{rt}.feedback",
                 json.dumps({"pipeline": {"id": "p1", "name": "pipeline one"}}), value)


def rejected(rt_dir):
    return [ln for ln in read(rt_dir / "log").splitlines() if " feedback-rejected " in ln]


def test_commands_are_the_runtime_whole_desired_state(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}", "--dialect=mia")
    svc = declare(d, "rt1", "svc")
    db = d.path("runtimes", "rt1", "db")
    os.mkdir(db)
    st = status_dict(d.path("runtimes", "rt1", "status"))
    assert st["dialect"] == "mia", st

    write_state(svc / "state", "pause\n")
    ids = [last_id(svc)]
    write_state(db / "state", "pause\n")
    ids.append(last_id(db))
    write_state(svc / "state", "resume\n")
    ids.append(last_id(svc))

    msgs = kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")
    assert len(msgs) == 3, [m["payload"] for m in msgs]
    for m, cid in zip(msgs, ids):
        assert json.loads(m["key"]) == MIA_KEY, m["key"]
        # the runtime-wide state: a mia runtime starts paused (Fast Data's)
        assert m["value"]["pipelines"]["state"] == "pause"
        assert m["value"]["ctlfs"]["id"] == cid
        hdrs = m.get("headers") or []
        assert "ctlfs-version" in hdrs and hdrs[hdrs.index("ctlfs-version") + 1] == "1", hdrs
    # the resources commanded have an override; the others follow the runtime
    assert artifacts(msgs[0]["value"]) == {"svc": "pause"}
    assert artifacts(msgs[1]["value"]) == {"svc": "pause", "db": "pause"}
    assert artifacts(msgs[2]["value"]) == {"svc": "resume", "db": "pause"}
    c = msgs[2]["value"]["ctlfs"]
    assert (c["runtime"], c["resource"], c["verb"]) == ("rt1", "svc", "resume"), c
    assert c["issued_by"]["uid"] == os.getuid(), c
    # the log offset= is the message's place in the topic, as for ctlfs's shape
    [line] = [ln for ln in command_lines(read(svc / "log"), "resume") if " result=sent " in ln]
    assert int(kv(line)["offset"]) == msgs[2]["offset"]
    # bad input is still refused before anything is sent
    try:
        write_state(svc / "state", "halt\n")
        raise AssertionError("halt accepted")
    except OSError as e:
        assert e.errno == 22
    assert len(kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")) == 3


def test_dialect_per_runtime_from_the_config_file(broker, ctlfs, tmp_path):
    conf = tmp_path / "ctlfs.conf"
    conf.write_text("[runtime rt1]\ndialect=mia\n")
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--config={conf}")
    r1 = declare(d, "rt1", "svc")
    r2 = declare(d, "rt2", "svc")
    assert status_dict(d.path("runtimes", "rt1", "status"))["dialect"] == "mia"
    assert status_dict(d.path("runtimes", "rt2", "status"))["dialect"] == "ctlfs"
    write_state(r1 / "state", "pause\n")
    write_state(r2 / "state", "pause\n")
    [m1] = kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")
    [m2] = kcat_consume(broker.bootstrap, "ctlfs.rt2.commands")
    assert json.loads(m1["key"]) == MIA_KEY
    assert artifacts(m1["value"]) == {"svc": "pause"}
    assert m2["key"] == "svc" and "pipelines" not in m2["value"]
    assert (m2["value"]["runtime"], m2["value"]["verb"]) == ("rt2", "pause")
    # both read back from their topics as this host's own: desired holds
    for r in (r1, r2):
        wait_until(lambda: status_dict(r / "status")["last_command"].endswith(" sent"))
        assert read_word(r / "state") == "paused"


def test_round_trip_with_the_agent_in_mia_dialect(broker, ctlfs, agent):
    d = ctlfs(f"--brokers={broker.bootstrap}", "--dialect=mia")
    svc = declare(d, "rt1", "svc")
    os.mkdir(d.path("runtimes", "rt1", "db"))
    agent(broker.bootstrap, resources=("svc", "db"), heartbeat_ms=300,
          extra=("--dialect=mia", "--initial-state=paused"))
    wait_until(lambda: read_word(svc / "observed") == "paused", what="first heartbeat")

    write_state(svc / "state", "resume\n")
    wait_until(lambda: read_word(svc / "observed") == "running", what="observed running")
    write_state(svc / "state", "pause\n")
    cid = last_id(svc)
    wait_until(lambda: read_word(svc / "observed") == "paused", what="observed paused")
    wait_until(lambda: status_dict(svc / "status")["pending"] == "-", what="pending cleared")
    st = status_dict(svc / "status")
    assert st["last_command"] == f"{cid} pause applied", st
    assert any(kv(ln).get("id") == cid and kv(ln).get("result") == "applied"
               for ln in command_lines(read(svc / "log"))), read(svc / "log")
    # the other resource was not touched
    assert read_word(d.path("runtimes", "rt1", "db", "observed")) == "paused"

    write_state(svc / "state", "resume\n")
    wait_until(lambda: read_word(svc / "observed") == "running", what="observed running")
    wait_until(lambda: status_dict(svc / "status")["last_command"].endswith(" resume applied"))

    # what the agent sent is Fast Data feedback: one message, an edge per resource
    fb = kcat_consume(broker.bootstrap, "ctlfs.rt1.feedback")
    assert fb and all(set(json.loads(m["key"])) == {"pipeline"} for m in fb)
    names = {e["artifact"]["name"] for e in fb[-1]["value"]["edges"]}
    assert names == {"svc", "db"}, fb[-1]["value"]


def test_feedback_by_hand_in_the_fast_data_shape(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}", "--dialect=mia")
    svc = declare(d, "rt1", "svc")
    rt = d.path("runtimes", "rt1")
    os.mkdir(rt / "db")
    write_state(svc / "state", "pause\n")
    cid = last_id(svc)
    assert status_dict(svc / "status")["pending"] == cid

    # several edges: several resources; an unknown artifact becomes a resource
    feedback(broker, [("svc", "paused"), ("db", "running"), ("fresh", "paused")])
    wait_until(lambda: os.path.isdir(rt / "fresh"), what="discovered artifact")
    wait_until(lambda: read_word(svc / "observed") == "paused")
    assert read_word(rt / "db" / "observed") == "running"
    assert read_word(rt / "fresh" / "observed") == "paused"
    # no command id in Mia feedback: the state asked for settles the command
    wait_until(lambda: status_dict(svc / "status")["pending"] == "-")
    assert status_dict(svc / "status")["last_command"] == f"{cid} pause applied"
    assert any(" discovered " in ln and "by=feedback" in ln
               for ln in read(rt / "fresh" / "log").splitlines())

    # malformed ones are logged, counted, skipped; consumption goes on
    topic = "ctlfs.rt1.feedback"
    kcat_produce(broker.bootstrap, topic, "k", "{not json")
    kcat_produce(broker.bootstrap, topic, "k", {"edges": [{"artifact": {"name": "../x"},
                                                           "state": "paused"}]})
    kcat_produce(broker.bootstrap, topic, "k", {"edges": [{"artifact": "db", "state": "halted"}]})
    kcat_produce(broker.bootstrap, topic, "k", {"edges": "svc"})
    feedback(broker, [("svc", "running"), ("db", "paused")])
    wait_until(lambda: read_word(svc / "observed") == "running", what="later good feedback")
    assert read_word(rt / "db" / "observed") == "paused"
    bad = rejected(rt)
    assert len(bad) == 4, bad
    assert any("edges[0].artifact" in ln for ln in bad), bad
    assert any("edges[0].state" in ln for ln in bad), bad
    assert not os.path.exists(rt / "x")
    metrics = read(d.path("metrics"))
    assert "ctlfs_feedback_rejected_total 4" in metrics, metrics

    # ctlfs's own feedback shape is understood on a mia runtime too
    kcat_produce(broker.bootstrap, topic, "svc", {"resource": "svc", "state": "paused"})
    wait_until(lambda: read_word(svc / "observed") == "paused", what="ctlfs-shaped feedback")


def test_two_admin_hosts_see_each_others_mia_commands(broker, ctlfs):
    a = ctlfs(f"--brokers={broker.bootstrap}", "--dialect=mia")
    b = ctlfs(f"--brokers={broker.bootstrap}", "--dialect=mia")
    declare(a, "rt1", "svc")
    os.mkdir(a.path("runtimes", "rt1", "db"))
    for rel in ("svc", "db"):
        wait_until(lambda: os.path.isdir(b.path("runtimes", "rt1", rel)), what=f"{rel} on b")

    # mia runtimes start paused: resume, which changes what b shows
    write_state(a.path("runtimes", "rt1", "svc", "state"), "resume\n")
    cid = last_id(a.path("runtimes", "rt1", "svc"))
    bsvc = b.path("runtimes", "rt1", "svc")
    wait_until(lambda: read_word(bsvc / "state") == "running", what="desired running on b")
    [line] = [ln for ln in command_lines(read(bsvc / "log")) if kv(ln)["id"] == cid]
    assert (kv(line)["verb"], kv(line)["result"]) == ("resume", "sent"), line

    write_state(b.path("runtimes", "rt1", "db", "state"), "resume\n")
    adb = a.path("runtimes", "rt1", "db")
    wait_until(lambda: read_word(adb / "state") == "running", what="desired running on a")
    # b's snapshot holds a's command too: it read it back before writing
    msgs = kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")
    assert artifacts(msgs[-1]["value"]) == {"svc": "resume", "db": "resume"}
    # nothing was skipped on either host
    for d in (a, b):
        assert " peer-skipped " not in read(d.path("runtimes", "rt1", "log"))


def headers(m):
    h = m.get("headers") or []
    return dict(zip(h[0::2], h[1::2]))


def test_commands_carry_id_resource_and_verb_headers_and_still_settle(broker, ctlfs, agent):
    """Each command names its id, resource and verb in headers (the issuing
    host recognises its own message read back by them and its bytes, without
    parsing the whole desired state); nothing else changes: each is recorded
    once, applied, and read back without a skip."""
    d = ctlfs(f"--brokers={broker.bootstrap}", "--dialect=mia")
    svc = declare(d, "rt1", "svc")
    db = d.path("runtimes", "rt1", "db")
    os.mkdir(db)
    agent(broker.bootstrap, resources=("svc", "db"), heartbeat_ms=300,
          extra=("--dialect=mia", "--initial-state=paused"))
    wait_until(lambda: read_word(svc / "observed") == "paused", what="first heartbeat")

    sent = []
    for res, verb in ((svc, "pause"), (db, "pause"), (svc, "resume")):
        write_state(res / "state", f"{verb}\n")
        sent.append((last_id(res), res.name, verb))
    msgs = kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")
    assert len(msgs) == 3, [m["payload"] for m in msgs]
    for m, (cid, name, verb) in zip(msgs, sent):
        h = headers(m)
        assert h.get("ctlfs-version") == "1", h
        assert (h.get("ctlfs-id"), h.get("ctlfs-resource"), h.get("ctlfs-verb")) \
            == (cid, name, verb), h
        c = m["value"]["ctlfs"]
        assert (c["id"], c["resource"], c["verb"]) == (cid, name, verb), c

    wait_until(lambda: read_word(svc / "observed") == "running", what="svc observed running")
    wait_until(lambda: read_word(db / "observed") == "paused", what="db observed paused")
    for res, verb in ((svc, "resume"), (db, "pause")):
        wait_until(lambda: status_dict(res / "status")["last_command"].endswith(f" {verb} applied"),
                   what=f"{res.name} {verb} applied")
    assert (read_word(svc / "state"), read_word(db / "state")) == ("running", "paused")
    # read back as our own: one `sent` line per command, nothing recorded twice or skipped
    for res in (svc, db):
        ids = [kv(ln)["id"] for ln in command_lines(read(res / "log"))
               if kv(ln)["result"] == "sent"]
        assert ids == [cid for cid, name, _ in sent if name == res.name], ids
    assert " peer-skipped " not in read(d.path("runtimes", "rt1", "log"))


def uuid7():
    ms = int(time.time() * 1000)
    r = uuid.uuid4().int
    n = (ms << 80) | (0x7 << 76) | ((r >> 64) & 0xFFF) << 64 | (0b10 << 62) | (r & ((1 << 62) - 1))
    return str(uuid.UUID(int=n))


def test_a_header_naming_our_command_does_not_hide_another_message(broker, ctlfs):
    """The headers are a hint for a host's own messages, never believed: a
    message from elsewhere whose ctlfs-id header names one of this host's
    commands is parsed and recorded for what its value says."""
    d = ctlfs(f"--brokers={broker.bootstrap}", "--dialect=mia")
    svc = declare(d, "rt1", "svc")
    write_state(svc / "state", "pause\n")
    ours = last_id(svc)
    other = uuid7()
    value = {"id": other, "runtime": "rt1", "resource": "svc", "verb": "resume",
             "issued_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
             "issued_by": {"uid": 4321, "user": "bob", "pid": 99, "comm": "sh",
                           "host": "elsewhere"}}
    # in the partition of ours (the runtime's: the Mia key names it), after
    # it, as another admin host of the same dialect would send it
    (mine,) = kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")
    kcat_produce(broker.bootstrap, "ctlfs.rt1.commands", "svc", value,
                 partition=mine["partition"], headers=(("ctlfs-id", ours), ("ctlfs-resource", "svc"),
                          ("ctlfs-verb", "pause")))
    wait_until(lambda: read_word(svc / "state") == "running", what="desired running")
    lines = {kv(ln)["id"]: kv(ln) for ln in command_lines(read(svc / "log"))
             if kv(ln)["result"] == "sent"}
    assert set(lines) == {ours, other}, lines
    assert (lines[other]["verb"], lines[other]["host"]) == ("resume", "elsewhere"), lines[other]
    assert status_dict(svc / "status")["last_command"] == f"{other} resume sent"
