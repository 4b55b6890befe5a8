"""tools/ctlfs-bench --quick works and reports every figure (not a timing test:
the figures themselves are judged in docs/performance.md, never here)."""
import json
import subprocess

from conftest import BUILD, REPO

KEYS = [
    "write_durable_p50_ms", "write_durable_p99_ms", "wake_inotify_p50_ms",
    "wake_inotify_p99_ms", "wake_poll_p50_ms", "wake_poll_p99_ms", "roundtrip_p50_ms",
    "roundtrip_p99_ms", "shell_echo_p50_ms", "kcat_oneshot_p50_ms", "ratio_vs_kcat",
    "restart_history_s", "tail_history_ms", "history_lines",
]


def test_bench_quick_prints_every_figure():
    p = subprocess.run([str(REPO / "tools" / "ctlfs-bench"), "--quick", f"--build={BUILD}"],
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[0])
    missing = [k for k in KEYS if k not in out]
    assert not missing, f"missing {missing} in {out}"
    for k in KEYS:
        assert isinstance(out[k], (int, float)) and out[k] >= 0, (k, out[k])
    assert out["roundtrip_p50_ms"] > 0 and out["write_durable_p50_ms"] > 0
