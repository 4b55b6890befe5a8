"""The agent's exec hook (`--apply=exec:CMD`, issue 18, seed 001) on real
mounts with the real agent: the hook's environment carries the whole command
(mode, issuer, times, scope, the message itself); its `state` lines on stdout
become feedback as they come (starting, then running), its exit status the
result, its `error` line the reason; a hook that hangs is killed after
--exec-timeout-ms while the agent serves other resources; and the elastic.io
bridge (contrib/elastic/elastic-bridge) drives a fake elastic.io API on
127.0.0.1: start shows starting then running, stop shutting-down then
stopped, a server error fails the command with the server's words."""

import base64
import json
import os
import shlex
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import (REPO, SLOW, command_lines, issued_id, kcat_consume, kv, read, read_word,
                      sh, status_dict, wait_until, whoami, write_state)
from test_lifecycle import _config, _flows, _observed_lines, _states_after

BRIDGE = REPO / "contrib" / "elastic" / "elastic-bridge"
EMAIL, API_KEY, FLOW_ID = "ops@example.com", "k3y-s3cret", "585918da586224001b96de89"


def _mount(ctlfs, broker, tmp_path):
    return ctlfs(f"--brokers={broker.bootstrap}", f"--config={_config(tmp_path)}")


def _hook_agent(agent, bootstrap, hook, resources, *extra, runtime="flows"):
    return agent(bootstrap, runtime, list(resources), apply=f"exec:{hook}",
                 extra=["--initial-state=stopped", *extra])


def _issue(res, verb):
    sh(f"echo {verb} > state", cwd=res)
    return issued_id(res, verb)


def _result(res, cid):
    """The newest result logged for command CID (sent, applied, failed...)."""
    lines = [kv(ln) for ln in command_lines(read(res / "log")) if kv(ln)["id"] == cid]
    return lines[-1]["result"] if lines else None


def _script(tmp_path, name, body):
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return p


# ---------------------------------------------------------------- the environment

def test_hook_gets_everything_the_command_carries(broker, ctlfs, agent, tmp_path):
    d = _mount(ctlfs, broker, tmp_path)
    (f1,) = _flows(d, "f1")
    dump = tmp_path / "env"
    hook = _script(tmp_path, "dump-env",
                   f'env | grep ^CTLFS_ | sort > "{dump}.$CTLFS_VERB.${{CTLFS_RESOURCE:-runtime}}"\n')
    _hook_agent(agent, broker.bootstrap, hook, ["f1"])
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="agent's first report")

    write_state(f1 / "mode", "realtime\n")
    start = _issue(f1, "start")
    wait_until(lambda: _result(f1, start) == "applied", what="start applied")
    env = dict(ln.split("=", 1) for ln in
               Path(f"{dump}.start.f1").read_text().splitlines())
    uid, user = whoami()
    msg = [m["value"] for m in kcat_consume(broker.bootstrap, "ctlfs.flows.commands")
           if m["value"]["id"] == start][0]
    assert env["CTLFS_RUNTIME"] == "flows" and env["CTLFS_RESOURCE"] == "f1"
    assert env["CTLFS_SCOPE"] == "resource" and env["CTLFS_DIALECT"] == "ctlfs"
    assert env["CTLFS_COMMAND_ID"] == start and env["CTLFS_VERB"] == "start"
    assert env["CTLFS_MODE"] == "realtime"
    assert env["CTLFS_BY"] == f"uid:{uid}({user})"
    assert env["CTLFS_BY_UID"] == str(uid) and env["CTLFS_BY_USER"] == user
    assert env["CTLFS_BY_COMM"] == msg["issued_by"]["comm"]
    assert env["CTLFS_BY_HOST"] == msg["issued_by"]["host"]
    assert env["CTLFS_ISSUED_AT"] == msg["issued_at"]
    # the message itself, byte for byte as it was read from the topic
    assert json.loads(env["CTLFS_COMMAND_JSON"]) == msg


def test_runtime_wide_command_runs_the_hook_once_without_a_resource(broker, ctlfs, agent,
                                                                    tmp_path):
    d = ctlfs(f"--brokers={broker.bootstrap}")
    os.mkdir(d.path("runtimes", "rt1"))
    for r in ("a", "b"):
        os.mkdir(d.path("runtimes", "rt1", r))
    runs = tmp_path / "runs"
    hook = _script(tmp_path, "note",
                   f'echo "$CTLFS_SCOPE ${{CTLFS_RESOURCE-none}} $CTLFS_VERB" >> "{runs}"\n')
    agent(broker.bootstrap, "rt1", ["a", "b"], apply=f"exec:{hook}")
    rt = d.path("runtimes", "rt1")
    wait_until(lambda: read_word(rt / "a" / "observed") == "running", what="first report")
    sh("echo pause > state", cwd=rt)
    wait_until(lambda: all(read_word(rt / r / "observed") == "paused" for r in "ab"),
               what="both resources paused")
    assert runs.read_text().splitlines() == ["runtime none pause"]


# ---------------------------------------------------------------- the line protocol

def test_state_lines_are_reported_as_they_come(broker, ctlfs, agent, tmp_path):
    d = _mount(ctlfs, broker, tmp_path)
    (f1,) = _flows(d, "f1")
    go = tmp_path / "go"
    # starting at once; running only once the test lets it (the hook waits
    # on a FIFO: no sleep, no race)
    os.mkfifo(go)
    hook = _script(tmp_path, "slow-start", f"""
case $1 in
start) echo "state starting"; read x < "{go}"; echo "state running" ;;
stop)  echo "state shutting-down"; read x < "{go}" ;;
esac
""")
    _hook_agent(agent, broker.bootstrap, hook, ["f1"])
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="agent's first report")

    start = _issue(f1, "start")
    wait_until(lambda: read_word(f1 / "observed") == "starting", what="starting shown")
    st = status_dict(f1 / "status")
    assert st["pending"] == start and st["last_command"] == f"{start} start sent"
    with open(go, "w") as f:
        f.write("go\n")
    wait_until(lambda: _result(f1, start) == "applied", what="start applied")
    wait_until(lambda: read_word(f1 / "observed") == "running", what="running reported")
    assert _states_after(read(f1 / "log"), start)[:2] == ["starting", "running"]

    stop = _issue(f1, "stop")
    wait_until(lambda: read_word(f1 / "observed") == "shutting-down", what="shutting-down shown")
    assert _result(f1, stop) == "sent"
    with open(go, "w") as f:
        f.write("go\n")
    wait_until(lambda: _result(f1, stop) == "applied", what="stop applied")
    assert read(f1 / "observed") == "stopped\n"
    assert _states_after(read(f1 / "log"), stop) == ["shutting-down", "stopped"]


def test_failure_reason_unknown_and_overlong_lines(broker, ctlfs, agent, tmp_path):
    d = _mount(ctlfs, broker, tmp_path)
    (f1,) = _flows(d, "f1")
    hook = _script(tmp_path, "fails", """
echo "state starting"
echo "hello there"
echo "state flying"
head -c 10000 /dev/zero | tr '\\0' x; echo
echo "error the API said no" 
echo "some noise" >&2
exit 3
""")
    a = _hook_agent(agent, broker.bootstrap, hook, ["f1"])
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="agent's first report")
    start = _issue(f1, "start")
    wait_until(lambda: _result(f1, start) == "failed", what="start failed")
    st = status_dict(f1 / "status")
    assert st["last_error"] == "apply failed: the API said no (exit status 3)", st
    failed = [ln for ln in command_lines(read(f1 / "log"))
              if kv(ln)["id"] == start and kv(ln)["result"] == "failed"]
    assert "the API said no (exit status 3)" in failed[-1]
    # the failed start did not start it: back where it was
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="stopped again")
    log = Path(a.stderr_path).read_text()
    assert "ignored: not a line of the protocol" in log          # hello there
    assert 'ignored: "flying" is not a state' in log
    cut = [ln for ln in log.splitlines() if "stdout (line cut)" in ln]
    assert len(cut) == 1 and len(cut[0]) < 4096 + 200, "an overlong line is cut once"


def test_stderr_last_line_is_the_reason_without_an_error_line(broker, ctlfs, agent, tmp_path):
    d = _mount(ctlfs, broker, tmp_path)
    (f1,) = _flows(d, "f1")
    hook = _script(tmp_path, "dies", 'echo "first" >&2\necho "curl: (7) refused" >&2\nexit 7\n')
    _hook_agent(agent, broker.bootstrap, hook, ["f1"])
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="agent's first report")
    start = _issue(f1, "start")
    wait_until(lambda: _result(f1, start) == "failed", what="start failed")
    assert status_dict(f1 / "status")["last_error"] == \
        "apply failed: curl: (7) refused (exit status 7)"


def test_a_hanging_hook_is_killed_and_others_are_served_meanwhile(broker, ctlfs, agent,
                                                                  tmp_path):
    d = _mount(ctlfs, broker, tmp_path)
    hang, quick = _flows(d, "hang", "quick")
    pidfile = tmp_path / "pid"
    hook = _script(tmp_path, "maybe-hang", f"""
if [ "$CTLFS_RESOURCE" = hang ]; then
  echo "state starting"
  sleep 300 &
  echo $! > "{pidfile}"
  wait
fi
""")
    timeout_ms = int(3000 * SLOW)
    _hook_agent(agent, broker.bootstrap, hook, ["hang", "quick"],
                f"--exec-timeout-ms={timeout_ms}")
    wait_until(lambda: read_word(quick / "observed") == "stopped", what="agent's first report")
    h = _issue(hang, "start")
    wait_until(lambda: read_word(hang / "observed") == "starting", what="hang starting")
    q = _issue(quick, "start")
    # served while the other hook hangs
    wait_until(lambda: _result(quick, q) == "applied", what="quick applied meanwhile")
    assert _result(hang, h) == "sent"
    wait_until(lambda: _result(hang, h) == "failed", timeout=timeout_ms / 1000 + 15 * SLOW,
               what="the hanging hook failed")
    assert status_dict(hang / "status")["last_error"] == \
        f"apply failed: timed out after {timeout_ms} ms, killed"
    # its child went with it (the process group)
    pid = int(pidfile.read_text())

    def gone():
        try:
            return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
    wait_until(gone, what="the hook's child killed")


# ---------------------------------------------------------------- the elastic.io bridge

class FakeElastic:
    """elastic.io's flow API, as far as the bridge uses it, on 127.0.0.1.
    A started flow reads `starting` until release() and `active` after; a
    stopped one `stopping`, then `inactive`. fail=(code, detail) answers
    every POST with that error."""

    def __init__(self):
        self.requests = []
        self.flows = {FLOW_ID: {"status": "inactive", "current_status": "inactive",
                                "type": "ordinary"}}
        self.fail = None
        self.gate = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code, body=None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                fake.requests.append((self.command, self.path, self.headers.get("Authorization"),
                                      body))
                parts = self.path.strip("/").split("/")
                flow = fake.flows.get(parts[2]) if len(parts) >= 3 else None
                if parts[:2] != ["v2", "flows"] or flow is None:
                    return self._answer(404, {"errors": [{"detail": "flow not found"}]})
                if self.command != "GET" and fake.fail:
                    code, detail = fake.fail
                    return self._answer(code, {"errors": [{"title": "Error", "detail": detail}]})
                if self.command == "GET":
                    if fake.gate.is_set():
                        flow["current_status"] = flow["status"]
                    return self._answer(200, {"data": {"id": parts[2], "type": "flow",
                                                       "attributes": dict(flow)}})
                if self.command == "PATCH":
                    flow["type"] = json.loads(body)["data"]["attributes"]["type"]
                    return self._answer(200, {"data": {"attributes": dict(flow)}})
                verb = parts[3] if len(parts) == 4 else ""
                if verb not in ("start", "stop"):
                    return self._answer(404, {"errors": [{"detail": "no such route"}]})
                fake.gate.clear()
                flow["status"] = "active" if verb == "start" else "inactive"
                flow["current_status"] = "starting" if verb == "start" else "stopping"
                return self._answer(202)

            do_GET = do_POST = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def posts(self):
        return [(m, p, a) for m, p, a, _ in self.requests if m != "GET"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_elastic():
    f = FakeElastic()
    yield f
    f.close()


def _bridge_agent(agent, broker, fake, tmp_path, monkeypatch):
    conf = tmp_path / "elastic-bridge.conf"
    key = tmp_path / "elastic.key"
    key.write_text(API_KEY + "\n")
    conf.write_text(f"[elastic]\nbase_url = {fake.url}\nemail = {EMAIL}\n"
                    f"api_key_file = {key}\npoll_ms = 20\ntimeout_s = {30 * SLOW}\n"
                    f"[flows]\norders = {FLOW_ID}\n")
    monkeypatch.setenv("ELASTIC_BRIDGE_CONFIG", str(conf))   # the agent's hooks inherit it
    return _hook_agent(agent, broker.bootstrap, shlex.quote(str(BRIDGE)), ["orders"])


def test_bridge_starts_and_stops_a_flow(broker, ctlfs, agent, tmp_path, monkeypatch,
                                        fake_elastic):
    d = _mount(ctlfs, broker, tmp_path)
    (orders,) = _flows(d, "orders")
    _bridge_agent(agent, broker, fake_elastic, tmp_path, monkeypatch)
    wait_until(lambda: read_word(orders / "observed") == "stopped", what="agent's first report")
    auth = "Basic " + base64.b64encode(f"{EMAIL}:{API_KEY}".encode()).decode()

    write_state(orders / "mode", "realtime\n")
    start = _issue(orders, "start")
    wait_until(lambda: read_word(orders / "observed") == "starting", what="starting shown")
    assert _result(orders, start) == "sent"
    fake_elastic.gate.set()          # the flow's containers are up
    wait_until(lambda: _result(orders, start) == "applied", what="start applied")
    assert read(orders / "observed") == "running\n"
    assert _states_after(read(orders / "log"), start)[:2] == ["starting", "running"]
    # the real-time mode became elastic.io's flow type, before the start
    assert fake_elastic.posts() == [("PATCH", f"/v2/flows/{FLOW_ID}", auth),
                                    ("POST", f"/v2/flows/{FLOW_ID}/start", auth)]
    assert fake_elastic.flows[FLOW_ID]["type"] == "long_running"
    assert all(a == auth for _, _, a, _ in fake_elastic.requests)

    stop = _issue(orders, "stop")
    wait_until(lambda: read_word(orders / "observed") == "shutting-down",
               what="shutting-down shown")
    fake_elastic.gate.set()
    wait_until(lambda: _result(orders, stop) == "applied", what="stop applied")
    assert read(orders / "observed") == "stopped\n"
    assert _states_after(read(orders / "log"), stop) == ["shutting-down", "stopped"]
    assert fake_elastic.posts()[-1] == ("POST", f"/v2/flows/{FLOW_ID}/stop", auth)


def test_bridge_server_error_fails_the_command_with_its_reason(broker, ctlfs, agent, tmp_path,
                                                               monkeypatch, fake_elastic):
    d = _mount(ctlfs, broker, tmp_path)
    (orders,) = _flows(d, "orders")
    _bridge_agent(agent, broker, fake_elastic, tmp_path, monkeypatch)
    wait_until(lambda: read_word(orders / "observed") == "stopped", what="agent's first report")
    fake_elastic.fail = (500, "flow graph is invalid")
    start = _issue(orders, "start")
    wait_until(lambda: _result(orders, start) == "failed", what="start failed")
    why = (f"apply failed: elastic.io POST /v2/flows/{FLOW_ID}/start: HTTP 500 "
           "flow graph is invalid (exit status 1)")
    assert status_dict(orders / "status")["last_error"] == why
    failed = [ln for ln in command_lines(read(orders / "log"))
              if kv(ln)["id"] == start and kv(ln)["result"] == "failed"]
    assert why in failed[-1]
    assert read(orders / "observed") == "stopped\n"
    assert [p for _, p, _ in fake_elastic.posts()] == [f"/v2/flows/{FLOW_ID}/start"]


def test_a_restarted_agent_restores_through_the_hook(broker, ctlfs, agent, tmp_path):
    """At start the agent takes up each resource's newest command, applied
    with the hook (waited for, before the first report), which gets that
    command whole."""
    d = _mount(ctlfs, broker, tmp_path)
    (f1,) = _flows(d, "f1")
    runs = tmp_path / "runs"
    hook = _script(tmp_path, "note",
                   f'echo "$CTLFS_VERB $CTLFS_COMMAND_ID $CTLFS_MODE" >> "{runs}"\n'
                   'echo "state starting"\n')
    first = _hook_agent(agent, broker.bootstrap, hook, ["f1"])
    wait_until(lambda: read_word(f1 / "observed") == "stopped", what="agent's first report")
    start = _issue(f1, "start")
    wait_until(lambda: _result(f1, start) == "applied", what="start applied")
    assert first.stop() == 0
    again = _hook_agent(agent, broker.bootstrap, hook, ["f1"])
    assert runs.read_text().splitlines() == [f"start {start} ordinary"] * 2
    assert "restored resource=f1 state=running" in Path(again.stderr_path).read_text()
    wait_until(lambda: read_word(f1 / "observed") == "running", what="running reported")


def test_round_trip_figures(broker, ctlfs, agent, tmp_path):
    """`echo start > state` (and stop) to `applied` through a hook that
    reports starting (stopping), against the simulated flow (warm-up 0), 10 start/stop rounds
    each; printed as FIGURES lines (-s). Bounded loosely: a hook is a fork
    and an exec per command, not a second."""
    import statistics
    import time
    d = _mount(ctlfs, broker, tmp_path)
    hooked, simulated = _flows(d, "hooked", "simulated")
    hook = _script(tmp_path, "quick",
                   'case $1 in start) echo "state starting" ;; *) echo "state stopping" ;; esac\n')
    _hook_agent(agent, broker.bootstrap, hook, ["hooked"])
    agent(broker.bootstrap, "flows", ["simulated"], extra=["--initial-state=stopped",
                                                            "--warmup-ms=0"])
    for res in (hooked, simulated):
        wait_until(lambda: read_word(res / "observed") == "stopped", what="first report")
    figures = {}
    for res in (hooked, simulated):
        times = []
        for _ in range(10):
            for verb in ("start", "stop"):
                t0 = time.monotonic()
                cid = _issue(res, verb)
                wait_until(lambda: _result(res, cid) == "applied", interval=0.005,
                           what=f"{verb} applied")
                times.append((time.monotonic() - t0) * 1000)
        figures[res.name] = times
        print(f"\nFIGURES exec-hook-round-trip {res.name}: n={len(times)} "
              f"median_ms={statistics.median(times):.1f} max_ms={max(times):.1f}")
        assert max(times) < 5000 * SLOW
