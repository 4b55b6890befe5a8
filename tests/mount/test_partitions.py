"""Kafka as people run it: topics of several partitions (ctlfs-broker, like
librdkafka's mock cluster, creates them with 4), feedback on any of them,
commands keyed by resource the way Java clients and kafkajs partition, every
unusable message logged and counted, and topics named in the config. Messages
are produced and read with kcat, an independent client, on real mounts."""

import os
import re
import time

from conftest import (PARTITIONS, declare, handled, java_partition, kcat_consume, kcat_produce,
                      kv, murmur2, read, start_expecting_failure, status_dict, wait_until,
                      write_state)

TS = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def feedback(resource, state, command_id=None):
    v = {"resource": resource, "state": state, "ts": TS}
    if command_id:
        v["command_id"] = command_id
    return v


def metric(d, name, labels):
    m = re.search("^" + re.escape(name + labels) + r" (\d+)$", read(d.path("metrics")), re.M)
    assert m, f"no {name}{labels} in metrics"
    return int(m.group(1))


def test_murmur2_matches_kafka_default_partitioner():
    # kafkajs put key "svc" on partition 2 of 4 (issue 14); Kafka's own test
    # vectors for murmur2 (UtilsTest.testMurmur2)
    assert java_partition("svc") == 2
    assert murmur2(b"21") & 0xFFFFFFFF == (-973932308) & 0xFFFFFFFF
    assert murmur2(b"foobar") & 0xFFFFFFFF == (-790332482) & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") & 0xFFFFFFFF == (-985981536) & 0xFFFFFFFF


def test_feedback_on_every_partition_is_applied_and_positions_kept(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d, "rt1", None)
    names = [f"r{p}" for p in range(PARTITIONS)]
    for n in names:
        os.mkdir(d.path("runtimes", "rt1", n))
    for p, n in enumerate(names):
        kcat_produce(broker.bootstrap, "ctlfs.rt1.feedback", n, feedback(n, "paused"), partition=p)
    for n in names:
        wait_until(lambda n=n: read(d.path("runtimes", "rt1", n, "observed")) == "paused\n",
                   what=f"{n} observed paused")
    status = d.path("runtimes", "rt1", "status")
    wait_until(lambda: status_dict(status)["feedback_offset"] == "0:0 1:0 2:0 3:0",
               what="a position in each of the 4 partitions")

    # a restart reads on from each partition's position: nothing is applied twice
    d.stop()
    d.start()
    assert status_dict(status)["feedback_offset"] == "0:0 1:0 2:0 3:0"
    kcat_produce(broker.bootstrap, "ctlfs.rt1.feedback", "r2", feedback("r2", "running"),
                 partition=2)
    wait_until(lambda: read(d.path("runtimes", "rt1", "r2", "observed")) == "running\n",
               what="r2 running")
    wait_until(lambda: status_dict(status)["feedback_offset"] == "0:0 1:0 2:1 3:0",
               what="partition 2 one further")
    for n in ("r0", "r1", "r3"):
        assert read(d.path("runtimes", "rt1", n, "observed")) == "paused\n"
    log = read(d.path("runtimes", "rt1", "log"))
    assert len(re.findall(r" observed state=paused", log)) == PARTITIONS, log


def test_commands_are_keyed_by_resource_in_the_murmur2_partition(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d, "rt1", None)
    names = ["svc", "orders", "sv_orders", "db", "a", "ingest-7"]
    for n in names:
        os.mkdir(d.path("runtimes", "rt1", n))
        write_state(d.path("runtimes", "rt1", n, "state"), "pause\n")
    msgs = kcat_consume(broker.bootstrap, "ctlfs.rt1.commands")
    assert sorted(m["key"] for m in msgs) == sorted(names)
    assert len({m["partition"] for m in msgs}) > 1, "every command in one partition"
    for m in msgs:
        assert m["partition"] == java_partition(m["key"]), m
        # the log says where the command is: kcat -p P -o O finds it
        [line] = [ln for ln in read(d.path("runtimes", "rt1", m["key"], "log")).splitlines()
                  if " command " in ln and " result=sent " in ln]
        f = kv(line)
        assert (int(f["partition"]), int(f["offset"])) == (m["partition"], m["offset"]), line

    # one resource's commands stay in one partition, in order
    for verb in ("resume", "pause", "resume"):
        write_state(d.path("runtimes", "rt1", "svc", "state"), verb + "\n")
    svc = [m for m in kcat_consume(broker.bootstrap, "ctlfs.rt1.commands") if m["key"] == "svc"]
    assert [m["value"]["verb"] for m in svc] == ["pause", "resume", "pause", "resume"]
    assert {m["partition"] for m in svc} == {java_partition("svc")}
    assert [m["offset"] for m in svc] == sorted(m["offset"] for m in svc)
    assert status_dict(d.path("runtimes", "rt1", "svc", "status"))["desired"] == "running"


def test_unusable_messages_are_logged_with_their_place_and_counted(broker, ctlfs):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    declare(d)
    assert metric(d, "ctlfs_messages_unused_total", '{topic="feedback"}') == 0
    assert metric(d, "ctlfs_messages_unused_total", '{topic="command"}') == 0
    kcat_produce(broker.bootstrap, "ctlfs.rt1.feedback", "svc", "not json", partition=3)
    kcat_produce(broker.bootstrap, "ctlfs.rt1.commands", "x", '{"pipelines": 1}', partition=1)
    log = d.path("runtimes", "rt1", "log")
    wait_until(lambda: " feedback-rejected " in read(log) and " peer-skipped " in read(log),
               what="both messages logged")
    [rej] = [ln for ln in read(log).splitlines() if " feedback-rejected " in ln]
    assert (kv(rej)["offset"], kv(rej)["partition"]) == ("0", "3"), rej
    [skip] = [ln for ln in read(log).splitlines() if " peer-skipped " in ln]
    assert (kv(skip)["offset"], kv(skip)["partition"]) == ("0", "1"), skip
    assert "reason=" in rej and "reason=" in skip
    assert metric(d, "ctlfs_messages_unused_total", '{topic="feedback"}') == 1
    assert metric(d, "ctlfs_messages_unused_total", '{topic="command"}') == 1
    # and reading goes on, in that partition too
    kcat_produce(broker.bootstrap, "ctlfs.rt1.feedback", "svc", feedback("svc", "paused"),
                 partition=3)
    wait_until(lambda: read(d.path("runtimes", "rt1", "svc", "observed")) == "paused\n",
               what="svc paused")


def _conf(tmp_path, text):
    conf = tmp_path / "ctlfs.conf"
    conf.write_text(text)
    return conf


def test_a_runtime_on_configured_topic_names_round_trips(broker, ctlfs, tmp_path):
    conf = _conf(tmp_path, "[runtime legacy]\ncommand-topic=ops.legacy.actions\n"
                           "feedback-topic=ops.legacy.reports\n")
    d = ctlfs(f"--brokers={broker.bootstrap}", f"--config={conf}")
    res = declare(d, "legacy", "svc")
    declare(d, "plain", "svc")
    st = status_dict(d.path("runtimes", "legacy", "status"))
    assert (st["command_topic"], st["feedback_topic"]) == ("ops.legacy.actions",
                                                           "ops.legacy.reports"), st
    st = status_dict(d.path("runtimes", "plain", "status"))
    assert (st["command_topic"], st["feedback_topic"]) == ("ctlfs.plain.commands",
                                                           "ctlfs.plain.feedback"), st

    write_state(res / "state", "pause\n")
    [cmd] = kcat_consume(broker.bootstrap, "ops.legacy.actions")
    assert (cmd["key"], cmd["value"]["verb"]) == ("svc", "pause")
    assert kcat_consume(broker.bootstrap, "ctlfs.legacy.commands") == []
    kcat_produce(broker.bootstrap, "ops.legacy.reports", "svc",
                 feedback("svc", "paused", cmd["value"]["id"]), partition=1)
    wait_until(lambda: status_dict(res / "status")["observed"] == "paused", what="observed")
    st = status_dict(res / "status")
    assert st["last_command"].endswith(" pause applied"), st
    assert st["pending"] == "-", st
    assert handled(status_dict(d.path("runtimes", "legacy", "status"))["feedback_offset"]) == 1


def test_bad_or_shared_topic_names_stop_the_start(tmp_path):
    for text, words in [
        ("[runtime a]\ncommand-topic=bad topic\n", ["command-topic", "bad topic"]),
        ("[runtime a]\nfeedback-topic=" + "x" * 250 + "\n", ["feedback-topic"]),
        ("[runtime a]\ncommand-topic=t1\n[runtime b]\nfeedback-topic=t1\n", ["t1", "also"]),
        ("[runtime a]\ncommand-topic=t1\nfeedback-topic=t1\n", ["t1"]),
    ]:
        conf = _conf(tmp_path, text)
        p = start_expecting_failure([f"--db={tmp_path / 'x.db'}", f"--config={conf}"],
                                    tmp_path / "mnt")
        assert p.returncode == 2, (text, p.returncode, p.stderr)
        assert all(w in p.stderr for w in words), (text, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_tree_records_of_a_runtime_share_its_partition(broker, ctlfs):
    """Declarations of a runtime and of its resources are read in the order
    they were made on every host: one partition per runtime (murmur2 of the
    key's part before '/'), whatever the resources' names hash to."""
    d = ctlfs(f"--brokers={broker.bootstrap}")
    names = ["svc", "orders", "db", "a", "ingest-7", "x1"]
    for rt in ("grp", "other"):
        declare(d, rt, None)
        for n in names:
            os.mkdir(d.path("runtimes", rt, n))
    os.rmdir(d.path("runtimes", "grp", "svc"))
    want = {"grp/" + n for n in names} | {"grp", "other"} | {"other/" + n for n in names}
    wait_until(lambda: {m["key"] for m in kcat_consume(broker.bootstrap, "ctlfs.tree")} >= want,
               what="every declaration on ctlfs.tree")
    recs = kcat_consume(broker.bootstrap, "ctlfs.tree")
    for rt in ("grp", "other"):
        mine = [m for m in recs if m["key"].split("/")[0] == rt]
        assert {m["partition"] for m in mine} == {java_partition(rt)}, mine
    grp = [(m["key"], m["value"]["declared"]) for m in recs if m["key"].startswith("grp")]
    assert grp[0] == ("grp", True) and grp[-1] == ("grp/svc", False), grp
