"""Topic checks against [topics] (core/base/topic-admin.c, core/engine/topics.c)
with a broker that answers the Admin API: tests/fakes/kafka_admin_broker.py,
a Kafka-protocol fake of one node that implements ApiVersions, Metadata,
CreateTopics and DescribeConfigs and nothing else (librdkafka's mock cluster,
ctlfs-broker, has no CreateTopics or DescribeConfigs). Every outcome but
`unavailable` needs it: created, matching, differing, missing, failed. The
last tests use the mock cluster for `unavailable`, and show that a check that
cannot be answered holds nothing up.

The fake has no Produce or Fetch: against it the daemon's producer and
consumer find nothing to use (its writes would time out), which these tests
do not need. What the fake was asked to create it records in its --state
file, and kcat -L reads its metadata."""

import json
import os
import queue
import re
import subprocess
import time

import pytest

from conftest import (EXIT_TIMEOUT, REPO, SLOW, START_TIMEOUT, _live, _next_line,
                      _reader_thread, _stderr_tail, _stop, declare, read, status_dict,
                      wait_until, write_state)

FAKE = REPO / "tests" / "fakes" / "kafka_admin_broker.py"
PYTHON = "/usr/bin/python3"

FEEDBACK_DEFAULT = "cleanup.policy=delete;retention.ms=604800000"


class AdminBroker:
    """A kafka_admin_broker.py process. .bootstrap "127.0.0.1:PORT"; .state()
    its --state file; .created the `created ...` lines it printed."""

    def __init__(self, tmp, args):
        self.state_path = tmp / f"admin-broker-{id(self)}.json"
        self.stderr_path = tmp / f"admin-broker-{id(self)}.stderr"
        self._err = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([PYTHON, str(FAKE), "--port", "0",
                                      "--state", str(self.state_path), *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, bufsize=1)
        _live["procs"].append(self.proc)
        self.lines = []
        self._q = queue.Queue()
        _reader_thread(self.proc.stdout, self._q, self.lines)
        line = _next_line(self._q, START_TIMEOUT, "kafka_admin_broker.py", self.proc,
                          self.stderr_path)
        assert re.fullmatch(r"bootstrap=127\.0\.0\.1:\d+", line), line
        self.bootstrap = line[len("bootstrap="):]

    def state(self):
        return json.loads(self.state_path.read_text())

    def created(self):
        return [ln.rstrip("\n") for ln in self.lines if ln.startswith("created ")]

    def close(self):
        """stdin EOF ends it; returns its exit status."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                _stop(self.proc)
        self._err.close()
        return self.proc.returncode


@pytest.fixture
def admin_broker(tmp_path):
    """Factory: admin_broker(*args) -> AdminBroker (args: --topic, --refuse-create, ...)."""
    made = []

    def make(*args):
        b = AdminBroker(tmp_path, args)
        made.append(b)
        return b
    yield make
    bad = [f"kafka_admin_broker.py exited {rc}" + _stderr_tail(b.stderr_path)
           for b in made if (rc := b.close()) != 0]
    assert not bad, "\n".join(bad)


def mount(ctlfs, tmp_path, bootstrap, topics, db=None, mnt=None, name="ctlfs.conf"):
    """The daemon on BOOTSTRAP with TOPICS as its [topics] group."""
    conf = tmp_path / name
    conf.write_text("[topics]\n" + topics)
    return ctlfs(f"--config={conf}", f"--brokers={bootstrap}", db=db, mnt=mnt)


def checked(path, key):
    """Waits until status PATH's KEY is no longer "checking"; returns it."""
    return wait_until(lambda: (v := status_dict(path)[key]) != "checking" and v,
                      what=f"{path.name} {key} answered")


def _checks(text, who):
    """WHO's topic-checked lines of a log -> {topic: [(role, outcome, detail), ...]}."""
    out = {}
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if parts[1:3] == [who, "topic-checked"]:
            # the detail is quoted (C escapes) only when it holds a blank
            m = re.match(r'topic=(\S+) role=(\S+) outcome=(\S+) detail=("(?:[^"\\]|\\.)*"|\S*)$',
                         parts[3])
            assert m, line
            detail = m.group(4)
            if detail.startswith('"'):
                detail = detail[1:-1].encode().decode("unicode_escape")
            out.setdefault(m.group(1), []).append((m.group(2), m.group(3), detail))
    return out


def root_checks(d, starts=1):
    """The root's own topic-checked lines (`- topic-checked ...`): {topic:
    (role, outcome, detail)} of the last start, each topic checked once per
    start (STARTS of them on this database)."""
    checks = _checks(read(d.path("log")), "-")
    assert all(len(v) == starts for v in checks.values()), checks
    return {k: v[-1] for k, v in checks.items()}


def runtime_checks(d, rt="rt1", starts=1):
    checks = _checks(read(d.path("runtimes", rt, "log")), f"runtimes/{rt}")
    assert all(len(v) == starts for v in checks.values()), checks
    return {k: v[-1] for k, v in checks.items()}


def wait_rt1(d):
    """rt1's two checks, once answered: (command_topic_check, feedback_topic_check)."""
    st = d.path("runtimes", "rt1", "status")
    return checked(st, "command_topic_check"), checked(st, "feedback_topic_check")


def kcat_partitions(bootstrap):
    p = subprocess.run(["kcat", "-L", "-J", "-b", bootstrap], capture_output=True, text=True,
                       timeout=30 * SLOW)
    assert p.returncode == 0, p.stderr
    return {t["topic"]: len(t["partitions"]) for t in json.loads(p.stdout)["topics"]}


# ---------------------------------------------------------------- created, matching

def test_created_as_configured_then_matching_after_restart(tmp_path, admin_broker, ctlfs):
    fake = admin_broker()
    topics = "partitions=2\nreplication-factor=1\n"
    d = mount(ctlfs, tmp_path, fake.bootstrap, topics)
    os.mkdir(d.path("runtimes", "rt1"))
    tree = checked(d.path("status"), "tree_topic_check")
    command, feedback = wait_rt1(d)
    assert tree == "created: partitions=2 replication-factor=1 cleanup.policy=compact"
    assert command == "created: partitions=2 replication-factor=1 cleanup.policy=compact"
    assert feedback == ("created: partitions=2 replication-factor=1 "
                        f"{FEEDBACK_DEFAULT}")
    assert status_dict(d.path("status"))["topics_not_as_configured"] == "-"

    # what the broker was asked: each topic once, as configured
    state = fake.state()
    asked = [t for r in state["create_requests"] for t in r["topics"]]
    assert sorted(t["name"] for t in asked) == \
        ["ctlfs.rt1.commands", "ctlfs.rt1.feedback", "ctlfs.tree"], asked
    assert all(not r["validate_only"] for r in state["create_requests"])
    want = {"ctlfs.tree": {"cleanup.policy": "compact"},
            "ctlfs.rt1.commands": {"cleanup.policy": "compact"},
            "ctlfs.rt1.feedback": {"cleanup.policy": "delete", "retention.ms": "604800000"}}
    for t in asked:
        assert (t["partitions"], t["replication_factor"], t["configs"], t["error"]) == \
            (2, 1, want[t["name"]], 0), t
    for name, configs in want.items():
        assert state["topics"][name] == {"partitions": 2, "replication_factor": 1,
                                         "configs": configs, "origin": "CreateTopics"}
    assert len(fake.created()) == 3, fake.created()
    parts = kcat_partitions(fake.bootstrap)
    assert {n: parts.get(n) for n in want} == {n: 2 for n in want}, parts

    # one line per topic in the root's log, the runtime's two in its own
    checks = root_checks(d)
    assert checks["ctlfs.tree"] == ("tree", "created",
                                    "partitions=2 replication-factor=1 cleanup.policy=compact")
    assert checks["ctlfs.rt1.commands"][:2] == ("command", "created")
    assert checks["ctlfs.rt1.feedback"] == ("feedback", "created",
                                            f"partitions=2 replication-factor=1 "
                                            f"{FEEDBACK_DEFAULT}")
    assert runtime_checks(d) == {k: v for k, v in checks.items() if k != "ctlfs.tree"}
    d.stop()

    # the same daemon again (same database: rt1 is there at start)
    d = mount(ctlfs, tmp_path, fake.bootstrap, topics, db=d.db, mnt=d.mnt)
    assert checked(d.path("status"), "tree_topic_check") == "matching: partitions=2"
    assert wait_rt1(d) == ("matching: partitions=2", "matching: partitions=2")
    assert status_dict(d.path("status"))["topics_not_as_configured"] == "-"
    assert len(fake.state()["create_requests"]) == 3, "a topic that exists was created again"
    checks = root_checks(d, starts=2)
    assert checks == {n: (checks[n][0], "matching", "partitions=2") for n in want}, checks
    assert runtime_checks(d, starts=2) == \
        {k: v for k, v in checks.items() if k != "ctlfs.tree"}
    d.stop()


# ---------------------------------------------------------------- differing

def test_existing_topics_differing(tmp_path, admin_broker, ctlfs):
    fake = admin_broker("--topic",
                        "ctlfs.rt1.feedback:2:cleanup.policy=delete;retention.ms=86400000",
                        "--topic", "ctlfs.rt1.commands:3")
    d = mount(ctlfs, tmp_path, fake.bootstrap, "partitions=2\n")
    os.mkdir(d.path("runtimes", "rt1"))
    command, feedback = wait_rt1(d)
    assert feedback == "differing: retention.ms=86400000 (want 604800000)"
    assert command == "differing: partitions=3 (want 2), cleanup.policy=delete (want compact)"
    assert checked(d.path("status"), "tree_topic_check").startswith("created: ")
    assert status_dict(d.path("status"))["topics_not_as_configured"] == \
        "ctlfs.rt1.commands ctlfs.rt1.feedback"
    checks = root_checks(d)
    assert checks["ctlfs.rt1.feedback"] == ("feedback", "differing",
                                            "retention.ms=86400000 (want 604800000)")
    assert re.search(r'^\S+ - topic-checked topic=ctlfs\.rt1\.feedback role=feedback '
                     r'outcome=differing detail="retention\.ms=86400000 \(want 604800000\)"$',
                     read(d.path("log")), re.M), read(d.path("log"))
    assert runtime_checks(d)["ctlfs.rt1.feedback"] == checks["ctlfs.rt1.feedback"]
    # told on stderr (the journal) too
    err = d.stderr()
    assert "topic ctlfs.rt1.feedback (feedback): differing: retention.ms=86400000 " \
           "(want 604800000)" in err, err
    # reported, never changed; only the missing tree topic was created
    state = fake.state()
    assert [t["name"] for r in state["create_requests"] for t in r["topics"]] == ["ctlfs.tree"]
    assert state["topics"]["ctlfs.rt1.feedback"]["configs"] == \
        {"cleanup.policy": "delete", "retention.ms": "86400000"}
    d.stop()


# ---------------------------------------------------------------- missing

def test_create_false_reports_missing_topics(tmp_path, admin_broker, ctlfs):
    fake = admin_broker("--topic", "ctlfs.tree:1:cleanup.policy=compact")
    d = mount(ctlfs, tmp_path, fake.bootstrap, "create=false\n")
    os.mkdir(d.path("runtimes", "rt1"))
    assert checked(d.path("status"), "tree_topic_check") == "matching: partitions=1"
    assert wait_rt1(d) == ("missing: no such topic, and [topics] create=false",) * 2
    assert status_dict(d.path("status"))["topics_not_as_configured"] == \
        "ctlfs.rt1.commands ctlfs.rt1.feedback"
    assert root_checks(d)["ctlfs.rt1.commands"] == \
        ("command", "missing", "no such topic, and [topics] create=false")
    assert fake.state()["create_requests"] == []
    assert sorted(kcat_partitions(fake.bootstrap)) == ["ctlfs.tree"]
    d.stop()


# ---------------------------------------------------------------- failed

@pytest.mark.parametrize("fake_args, topics, want", [
    (["--refuse-create"], "",
     "failed: CreateTopics: TOPIC_AUTHORIZATION_FAILED: Authorization failed."),
    (["--refuse-create", "cluster"], "",
     "failed: CreateTopics: CLUSTER_AUTHORIZATION_FAILED: Authorization failed."),
    # the manual's replication-factor=3 on a cluster of one broker
    ([], "replication-factor=3\n",
     "failed: CreateTopics: INVALID_REPLICATION_FACTOR: Replication factor: 3 larger than "
     "available brokers: 1."),
    (["--topic", "ctlfs.tree:1:cleanup.policy=compact", "--refuse-describe"], "",
     "failed: DescribeConfigs: TOPIC_AUTHORIZATION_FAILED: Authorization failed."),
], ids=["create-topic-acl", "create-cluster-acl", "replication-factor", "describe-acl"])
def test_refused_by_the_broker(tmp_path, admin_broker, ctlfs, fake_args, topics, want):
    fake = admin_broker(*fake_args)
    d = mount(ctlfs, tmp_path, fake.bootstrap, topics)
    assert checked(d.path("status"), "tree_topic_check") == want
    assert status_dict(d.path("status"))["topics_not_as_configured"] == "ctlfs.tree"
    assert root_checks(d)["ctlfs.tree"] == ("tree", "failed", want[len("failed: "):])
    assert f"topic ctlfs.tree (tree): {want}" in d.stderr()
    assert "kafka admin unavailable" not in d.stderr()   # refused is not unavailable
    assert fake.created() == []
    d.stop()


# ---------------------------------------------------------------- unavailable

def test_unavailable_on_the_mock_cluster_holds_nothing_up(tmp_path, broker, ctlfs, agent):
    """librdkafka's mock answers neither CreateTopics nor DescribeConfigs: each
    check ends after timeout-ms. Meanwhile and after, the runtime works."""
    d = mount(ctlfs, tmp_path, broker.bootstrap, "timeout-ms=300\n")
    res = declare(d)
    agent(broker.bootstrap)
    wait_until(lambda: read(res / "observed") == "running\n",
               what="observed == running (the agent's first feedback applied)")
    tree = checked(d.path("status"), "tree_topic_check")
    command, feedback = wait_rt1(d)
    for v in (tree, command, feedback):
        assert re.fullmatch(r"unavailable: admin unavailable: (CreateTopics|DescribeConfigs) "
                            r"timed out after 300 ms \(broker may not support the Admin "
                            r"API\)", v), v
    st = status_dict(d.path("status"))
    assert st["topics_not_as_configured"] == "-"      # unavailable is not astray
    assert {v[1] for v in root_checks(d).values()} == {"unavailable"}
    assert d.stderr().count("kafka admin unavailable") == 1, d.stderr()
    # a round trip after the checks
    write_state(res / "state", "pause\n")
    wait_until(lambda: read(res / "observed") == "paused\n", what="observed == paused")
    d.stop()


def test_a_check_under_way_holds_nothing_up(tmp_path, broker, ctlfs, agent):
    """With a long timeout-ms the checks are still under way (`checking`)
    while commands go out and feedback comes in; unmounting with them in
    flight is prompt and clean."""
    d = mount(ctlfs, tmp_path, broker.bootstrap, "timeout-ms=120000\n")
    res = declare(d)
    agent(broker.bootstrap)
    wait_until(lambda: read(res / "observed") == "running\n", what="observed == running")
    write_state(res / "state", "pause\n")
    wait_until(lambda: read(res / "observed") == "paused\n", what="observed == paused")
    rt = status_dict(d.path("runtimes", "rt1", "status"))
    assert (rt["command_topic_check"], rt["feedback_topic_check"]) == ("checking", "checking")
    st = status_dict(d.path("status"))
    assert (st["tree_topic_check"], st["topics_not_as_configured"]) == ("checking", "-")
    t0 = time.monotonic()
    d.stop()
    assert time.monotonic() - t0 < 10 * SLOW


# ---------------------------------------------------------------- races

def test_created_by_another_client_meanwhile(tmp_path, admin_broker, ctlfs):
    """Another admin host (or auto-creation) creates the topic between ctlfs's
    metadata request and its CreateTopics: TOPIC_ALREADY_EXISTS, and the topic
    is compared as any existing one, its partition count included."""
    fake = admin_broker("--created-meanwhile", "ctlfs.tree:3:cleanup.policy=compact",
                        "--created-meanwhile",
                        "ctlfs.rt1.feedback:2:cleanup.policy=delete;retention.ms=86400000")
    d = mount(ctlfs, tmp_path, fake.bootstrap, "partitions=2\n")
    os.mkdir(d.path("runtimes", "rt1"))
    assert checked(d.path("status"), "tree_topic_check") == "differing: partitions=3 (want 2)"
    command, feedback = wait_rt1(d)
    assert command.startswith("created: partitions=2 "), command
    assert feedback == "differing: retention.ms=86400000 (want 604800000)"
    asked = [(t["name"], t["error"]) for r in fake.state()["create_requests"]
             for t in r["topics"]]
    assert sorted(asked) == [("ctlfs.rt1.commands", 0), ("ctlfs.rt1.feedback", 36),
                             ("ctlfs.tree", 36)], asked
    assert status_dict(d.path("status"))["topics_not_as_configured"] == \
        "ctlfs.rt1.feedback ctlfs.tree"
    d.stop()


def test_topic_without_leaders_yet(tmp_path, admin_broker, ctlfs):
    """A topic listed with LEADER_NOT_AVAILABLE and no partitions (a broker's
    answer right after the topic's creation) exists: it is described, and its
    partition count, which is not known, is not compared."""
    fake = admin_broker("--topic", "ctlfs.tree:2:cleanup.policy=compact",
                        "--metadata-error", "ctlfs.tree:5")
    d = mount(ctlfs, tmp_path, fake.bootstrap, "partitions=2\n")
    assert checked(d.path("status"), "tree_topic_check") == "matching: as configured"
    assert fake.state()["create_requests"] == []
    d.stop()


def test_broker_defaults(tmp_path, admin_broker, ctlfs):
    """partitions and replication-factor not set: -1 goes to the broker
    (CreateTopics v4, KIP-464), which picks its own (3 and 1 here)."""
    fake = admin_broker()
    d = mount(ctlfs, tmp_path, fake.bootstrap, "")
    assert checked(d.path("status"), "tree_topic_check") == \
        "created: partitions=default replication-factor=default cleanup.policy=compact"
    (req,) = fake.state()["create_requests"]
    assert req["version"] >= 4, req
    assert [(t["partitions"], t["replication_factor"]) for t in req["topics"]] == [(-1, -1)]
    assert kcat_partitions(fake.bootstrap) == {"ctlfs.tree": 3}
    d.stop()
