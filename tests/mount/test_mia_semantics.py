"""Mia's semantics on real mounts (issue 15; seed 000, docs/seeds/mia.md): a
state message's top state is the runtime-wide state and only resources with a
state of their own are overridden, so a write to one resource leaves every
other artifact alone; pipelines and artifacts are known by Mia's ids (from
feedback or the config file); one bad feedback edge costs only itself; another
producer's state message on the command topic is desired state.

The messages are also held to the essential constraints of Mia-Platform's
published JSON schemas (checked in plain Python):
  https://github.com/mia-platform/documentation/blob/main/static/schemas/fast-data-control-plane-state.schema.json
  https://github.com/mia-platform/documentation/blob/main/static/schemas/fast-data-control-plane-feedback.schema.json
"""

import json
import os
import re

from conftest import (MIA_RESOURCE_STATUS_KEYS, command_lines, parse_status, declare, kcat_consume, kcat_produce, kv, read, read_word,
                      status_dict, wait_until, write_state)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
PIPELINE_ID = "ec0ae4b1-e8aa-4a82-b5d8-d260e0eed340"


# ---- Mia's schemas: the constraints that matter to a Fast Data workload ----

def check_stateful_named(node, where, named=True):
    assert isinstance(node, dict), where
    assert node.get("state") in ("pause", "resume"), (where, node)   # Activation
    if named:
        assert isinstance(node.get("name"), str), (where, node)      # NamedItem
    over = node.get("override")
    if over is not None:
        assert isinstance(over, dict), (where, node)
    return over or {}


def check_state_message(m):
    """FastDataState: key {"id": string}; value {"pipelines": StatefulItem with
    override: pipeline id -> stateful+named, whose override: artifact ref ->
    ArtifactItem (stateful+named, override: exec -> stateful+named)}."""
    key = json.loads(m["key"])
    assert isinstance(key, dict) and isinstance(key.get("id"), str), key
    v = m["value"]
    assert isinstance(v, dict) and "pipelines" in v, v
    for pid, p in check_stateful_named(v["pipelines"], "pipelines", named=False).items():
        for aid, a in check_stateful_named(p, f"pipeline {pid}").items():
            for eid, ex in check_stateful_named(a, f"artifact {aid}").items():
                check_stateful_named(ex, f"exec {eid}")


def check_feedback_message(m):
    """ServiceFeedback: key {"pipeline": {"id","name"}}; value {"edges": [{
    artifact: {id,name}, exec: {id,name}, state: running|paused}]}; header
    version "1"."""
    key = json.loads(m["key"])
    p = key.get("pipeline")
    assert isinstance(p, dict) and isinstance(p.get("id"), str) and isinstance(p.get("name"), str), key
    edges = m["value"]["edges"]
    assert isinstance(edges, list), m["value"]
    for e in edges:
        for item in ("artifact", "exec"):
            assert isinstance(e[item].get("id"), str) and isinstance(e[item].get("name"), str), e
        assert e["state"] in ("running", "paused"), e
    h = m.get("headers") or []
    assert dict(zip(h[0::2], h[1::2])).get("version") == "1", h


# ---- helpers ----

def pipeline_of(value, name="rt1"):
    """(key, node) of the pipeline named NAME in a state message."""
    [(k, p)] = [(k, p) for k, p in value["pipelines"]["override"].items() if p["name"] == name]
    return k, p


def overrides(value, name="rt1"):
    """{artifact name: (key, state)} of the pipeline named NAME."""
    _, p = pipeline_of(value, name)
    return {a["name"]: (k, a["state"]) for k, a in p.get("override", {}).items()}


def add(d, name, rt="rt1"):
    """Declares one more resource of a declared runtime."""
    path = d.path("runtimes", rt, name)
    os.mkdir(path)
    return path


def last_id(res):
    return status_dict(res / "status")["last_command"].split()[0]


def commands(broker):
    return kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")


def heartbeats_after(broker, n):
    """Waits until the agent's feedback topic holds more than N messages."""
    wait_until(lambda: len(kcat_consume(broker.bootstrap, "ctlfs.rt1.feedback")) > n,
               what="another heartbeat")


# ---- tests ----

def test_a_write_to_one_resource_changes_no_other(broker, ctlfs, agent):
    """Seed 000's scenario: the Single View Creator stays paused during an
    ingestion while another artifact is commanded; the agent started paused
    (as Fast Data workloads do) and an artifact ctlfs only heard of in
    feedback stay paused too."""
    d = ctlfs(f"--brokers={broker.bootstrap}", "--dialect=mia")
    rt = d.path("runtimes", "rt1")
    ingest = declare(d, "rt1", "ingest")
    orders = add(d, "sv_orders")
    agent(broker.bootstrap, resources=("ingest", "sv_orders", "svc_creator"), heartbeat_ms=300,
          extra=("--dialect=mia", "--initial-state=paused"))
    creator = rt / "svc_creator"
    wait_until(lambda: os.path.isdir(creator) and read_word(creator / "observed") == "paused",
               what="discovered svc_creator paused")
    for r in (ingest, orders):
        wait_until(lambda: read_word(r / "observed") == "paused", what=f"{r.name} paused")

    write_state(ingest / "state", "resume\n")
    wait_until(lambda: read_word(ingest / "observed") == "running", what="ingest running")
    write_state(orders / "state", "pause\n")
    cid = last_id(orders)
    wait_until(lambda: status_dict(orders / "status")["last_command"] == f"{cid} pause applied",
               what="pause applied")
    # the agent applied the whole state and reported again after it: nothing
    # else moved
    heartbeats_after(broker, len(kcat_consume(broker.bootstrap, "ctlfs.rt1.feedback")))
    assert read_word(creator / "observed") == "paused"
    assert read_word(orders / "observed") == "paused"
    assert read_word(ingest / "observed") == "running"

    msgs = commands(broker)
    assert len(msgs) == 2, [m["payload"] for m in msgs]
    for m in msgs:
        check_state_message(m)
        assert m["value"]["pipelines"]["state"] == "pause"   # the runtime-wide state
    # only what ctlfs commanded is overridden; the discovered one follows the runtime
    assert {n: s for n, (_, s) in overrides(msgs[0]["value"]).items()} == {"ingest": "resume"}
    assert {n: s for n, (_, s) in overrides(msgs[1]["value"]).items()} \
        == {"ingest": "resume", "sv_orders": "pause"}
    for m in kcat_consume(broker.bootstrap, "ctlfs.rt1.feedback"):
        check_feedback_message(m)
    assert " peer-skipped " not in read(rt / "log")


def test_ids_learned_from_feedback_are_used_in_commands(broker, ctlfs, agent, tmp_path):
    d = ctlfs(f"--brokers={broker.bootstrap}", "--dialect=mia")
    svc = declare(d, "rt1", "svc")
    agent(broker.bootstrap, resources=("svc", "db"), heartbeat_ms=300,
          extra=("--dialect=mia", "--initial-state=paused", f"--mia-pipeline-id={PIPELINE_ID}"))
    wait_until(lambda: status_dict(svc / "status")["mia_artifact_id"] != "-", what="ids learned")
    st = status_dict(svc / "status")
    assert [k for k, _ in parse_status(read(svc / "status"))] == MIA_RESOURCE_STATUS_KEYS
    assert st["mia_pipeline_id"] == PIPELINE_ID, st
    artifact = st["mia_artifact_id"]
    assert UUID_RE.match(artifact), st
    fb = kcat_consume(broker.bootstrap, "ctlfs.rt1.feedback")
    assert {"id": artifact, "name": "svc"} in [e["artifact"] for e in fb[-1]["value"]["edges"]]
    assert any(" mia-id " in ln and artifact in ln for ln in read(svc / "log").splitlines())

    write_state(svc / "state", "resume\n")
    [m] = commands(broker)
    check_state_message(m)
    key, p = pipeline_of(m["value"])
    assert key == PIPELINE_ID, m["value"]
    assert overrides(m["value"]) == {"svc": (artifact, "resume")}
    # the agent knows its artifact by its id: it applies the override
    wait_until(lambda: read_word(svc / "observed") == "running", what="svc running")
    assert read_word(d.path("runtimes", "rt1", "db", "observed")) == "paused"

    # kept in the store: a restart uses them before any feedback
    assert d.unmount() == 0
    d2 = ctlfs("--dialect=mia", f"--brokers={broker.bootstrap}", db=d.db)
    svc2 = d2.path("runtimes", "rt1", "svc")
    st = status_dict(svc2 / "status")
    assert (st["mia_pipeline_id"], st["mia_artifact_id"]) == (PIPELINE_ID, artifact), st


def test_ids_from_the_config_are_used_before_any_feedback(broker, ctlfs, tmp_path):
    conf = tmp_path / "ctlfs.conf"
    conf.write_text("[runtime rt1]\ndialect=mia\n"
                    f"mia-pipeline-id={PIPELINE_ID}\n"
                    "mia-artifact-id.sv_orders=b52c98ec-4910-456a-9ac4-13ad82dac404\n")
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--config={conf}")
    orders = declare(d, "rt1", "sv_orders")
    other = add(d, "other")
    st = status_dict(orders / "status")
    assert st["mia_artifact_id"] == "b52c98ec-4910-456a-9ac4-13ad82dac404", st
    assert status_dict(other / "status")["mia_artifact_id"] == "-"
    write_state(orders / "state", "resume\n")
    write_state(other / "state", "resume\n")
    msgs = commands(broker)
    for m in msgs:
        check_state_message(m)
        assert pipeline_of(m["value"])[0] == PIPELINE_ID
    assert overrides(msgs[-1]["value"]) == {
        "sv_orders": ("b52c98ec-4910-456a-9ac4-13ad82dac404", "resume"),
        "other": ("other", "resume"),   # no id known: its name serves
    }


def test_a_half_bad_feedback_message_applies_its_good_edges(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}", "--dialect=mia")
    rt = d.path("runtimes", "rt1")
    svc = declare(d, "rt1", "svc")
    value = {"edges": [
        {"artifact": {"id": "a1", "name": "svc"}, "exec": {"id": "e", "name": "m"}, "state": "paused"},
        {"artifact": {"id": "a2", "name": "../etc"}, "exec": {"id": "e", "name": "m"}, "state": "paused"},
        {"artifact": {"id": "a3", "name": "db"}, "exec": {"id": "e", "name": "m"}, "state": "running"},
    ]}
    kcat_produce(broker.bootstrap, "ctlfs.rt1.feedback",
                 json.dumps({"pipeline": {"id": "p1", "name": "pipeline one"}}), value)
    wait_until(lambda: read_word(svc / "observed") == "paused", what="svc paused")
    wait_until(lambda: os.path.isdir(rt / "db") and read_word(rt / "db" / "observed") == "running",
               what="db discovered running")
    [line] = [ln for ln in read(rt / "log").splitlines() if " feedback-rejected " in ln]
    assert "edges[1].artifact" in kv(line)["reason"] and "not a valid name" in kv(line)["reason"], line
    assert not os.path.exists(rt / "etc")
    metrics = read(d.path("metrics"))
    assert 'ctlfs_messages_unused_total{topic="feedback"} 1' in metrics, metrics
    # the good edges' ids are learned
    assert status_dict(svc / "status")["mia_artifact_id"] == "a1"
    assert status_dict(svc / "status")["mia_pipeline_id"] == "p1"


def test_another_producers_state_message_is_desired_state(broker, ctlfs, agent):
    """A Mia Control Plane beside ctlfs: its state message (no ctlfs member)
    sets the runtime-wide state and the overrides it names; resources it names
    that ctlfs did not know appear."""
    d = ctlfs(f"--brokers={broker.bootstrap}", "--dialect=mia")
    rt = d.path("runtimes", "rt1")
    svc = declare(d, "rt1", "svc")
    db = add(d, "db")
    agent(broker.bootstrap, resources=("svc", "db"), heartbeat_ms=300,
          extra=("--dialect=mia", "--initial-state=paused"))
    wait_until(lambda: read_word(svc / "observed") == "paused", what="svc paused")
    value = {"pipelines": {"state": "pause", "override": {
        "rt1": {"state": "pause", "name": "rt1", "override": {
            "b52c98ec-4910-456a-9ac4-13ad82dac404": {"state": "resume", "name": "svc"},
            "7e738df3-d963-4554-a8aa-3ca3c55bcf22": {"state": "resume", "name": "newone"}}}}}}
    kcat_produce(broker.bootstrap, "ctlfs.rt1.commands", json.dumps({"id": "rt1"}), value)
    wait_until(lambda: read_word(svc / "state") == "running", what="svc desired running")
    wait_until(lambda: os.path.isdir(rt / "newone"), what="newone appears")
    assert read_word(rt / "newone" / "state") == "running"
    [line] = [ln for ln in command_lines(read(svc / "log"))
              if kv(ln)["verb"] == "resume" and kv(ln)["result"] == "sent"]
    assert kv(line)["by"] == "another-producer", line
    assert kv(line)["id"].startswith("ctlfs.rt1.commands:"), line
    assert status_dict(svc / "status")["mia_artifact_id"] == "b52c98ec-4910-456a-9ac4-13ad82dac404"
    assert " peer-skipped " not in read(rt / "log")
    # the agent applied it as a Fast Data workload would; ctlfs settles by state
    wait_until(lambda: read_word(svc / "observed") == "running", what="svc running")
    wait_until(lambda: status_dict(svc / "status")["pending"] == "-", what="settled")
    assert read_word(db / "observed") == "paused"
    # its next state message no longer overrides svc: svc follows the
    # pipeline again (the message is the whole desired state)
    value["pipelines"]["override"]["rt1"]["override"].pop("b52c98ec-4910-456a-9ac4-13ad82dac404")
    kcat_produce(broker.bootstrap, "ctlfs.rt1.commands", json.dumps({"id": "rt1"}), value)
    wait_until(lambda: read_word(svc / "state") == "paused", what="svc follows the pipeline")
    assert status_dict(svc / "status")["state_source"] == "runtime"
    assert status_dict(rt / "newone" / "status")["state_source"] == "override"
    [line] = [ln for ln in command_lines(read(svc / "log"))
              if kv(ln)["verb"] == "inherit" and kv(ln)["result"] == "sent"]
    assert kv(line)["by"] == "another-producer", line
    wait_until(lambda: read_word(svc / "observed") == "paused", what="svc paused again")
    wait_until(lambda: status_dict(svc / "status")["pending"] == "-", what="inherit settled")


def test_a_runtime_wide_resume_is_the_pipeline_state_and_leaves_overrides(broker, ctlfs, agent):
    """`runtimes/RT/state` is pipelines.state: one message resumes every
    artifact without an override; `inherit` drops an override from the next
    message, and the artifact follows the pipeline again."""
    d = ctlfs(f"--brokers={broker.bootstrap}", "--dialect=mia")
    rt = d.path("runtimes", "rt1")
    a = declare(d, "rt1", "a")
    b = add(d, "b")
    keep = add(d, "keep")
    agent(broker.bootstrap, resources=("a", "b", "keep"), heartbeat_ms=300,
          extra=("--dialect=mia", "--initial-state=paused"))
    assert read(rt / "state") == "paused\n"           # mia runtimes start paused
    assert read(a / "state") == "paused\n"
    write_state(keep / "state", "pause\n")            # an override: stays paused
    write_state(rt / "state", "resume\n")
    for r in (a, b):
        wait_until(lambda: read_word(r / "observed") == "running", what=f"{r.name} running")
    wait_until(lambda: status_dict(rt / "status")["pending"] == "-", what="runtime settled")
    assert status_dict(rt / "status")["last_command"].endswith(" resume applied")
    heartbeats_after(broker, len(kcat_consume(broker.bootstrap, "ctlfs.rt1.feedback")))
    assert read_word(keep / "observed") == "paused"
    msgs = commands(broker)
    assert len(msgs) == 2, [m["payload"] for m in msgs]
    last = msgs[-1]["value"]
    check_state_message(msgs[-1])
    assert last["pipelines"]["state"] == "resume" and pipeline_of(last)[1]["state"] == "resume"
    assert {n: s for n, (_, s) in overrides(last).items()} == {"keep": "pause"}
    assert last["ctlfs"]["scope"] == "runtime" and "resource" not in last["ctlfs"]
    # inherit: keep follows the pipeline (running) and leaves the overrides
    write_state(keep / "state", "inherit\n")
    wait_until(lambda: read_word(keep / "observed") == "running", what="keep running")
    assert read(keep / "state") == "running\n"
    # settled by the state it asked for: the runtime's
    wait_until(lambda: status_dict(keep / "status")["last_command"].endswith(" inherit applied"),
               what="inherit applied")
    assert status_dict(keep / "status")["pending"] == "-"
    assert overrides(commands(broker)[-1]["value"]) == {}
    assert read_word(rt / "observed") == "running"
    assert " peer-skipped " not in read(rt / "log")
