"""tools/ctlfs-bench --quick works and reports every figure (not a timing test:
the figures themselves are judged in docs/performance.md, never here)."""
import json
import subprocess

from conftest import BUILD, REPO

KEYS = [   # the figures of issue 5, the wake-up delays of issue 4, cross-host of issue 8,
    "write_durable_p50_ms", "write_durable_p99_ms", "write_queued_p50_ms",
    "write_queued_p99_ms", "kcat_oneshot_p50_ms", "producer_rtt_p50_ms", "ratio_vs_kcat",
    "ratio_vs_producer", "roundtrip_p50_ms", "roundtrip_p99_ms", "throughput_durable_cmds_s",
    "throughput_queued_cmds_s", "stat_ratio", "read_ratio", "readdir_ratio",
    "resources_100k_mount_s", "resources_100k_rss_mb", "resources_1m_rss_mb",
    "restart_1m_history_s", "tail_1m_history_ms", "wake_inotify_p50_ms", "wake_inotify_p99_ms",
    "wake_poll_p50_ms", "wake_poll_p99_ms", "shell_echo_p50_ms", "cross_host_p50_ms",
    "cross_host_p99_ms",
    # the other control planes (issue 7)
    "mia10_write_p50_ms", "mia10_write_p99_ms", "ctlfs10_write_p50_ms", "mia10_ratio",
    "mia10_cmd_bytes", "ctlfs10_cmd_bytes", "mia1000_write_p50_ms", "mia1000_write_p99_ms",
    "ctlfs1000_write_p50_ms", "mia1000_ratio", "mia1000_cmd_bytes", "ctlfs1000_cmd_bytes",
    "lifecycle_start_running_p50_ms", "lifecycle_overhead_ms", "lifecycle_start_write_p50_ms",
    "lifecycle_mode_write_p50_ms", "rama_write_p50_ms", "rama_cli_direct_p50_ms", "rama_ratio",
    # throughput against the null FUSE tree, scale at start (issue 17)
    "throughput_minfs_writes_s", "throughput_durable_ratio", "throughput_queued_ratio",
    "throughput_queued_sent_cmds_s", "resources_1m_mount_s",
]
THROUGHPUT_KEYS = ["throughput_durable_cmds_s", "throughput_queued_cmds_s",
                   "throughput_queued_sent_cmds_s", "throughput_minfs_writes_s",
                   "throughput_durable_ratio", "throughput_queued_ratio"]


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


def test_bench_only_throughput_prints_its_figures():
    """--only=throughput, the A/B tool of issue 17: the three figures, both
    runs of each, and the ratios against minfs."""
    p = subprocess.run([str(REPO / "tools" / "ctlfs-bench"), "--only=throughput", "--quick",
                        f"--build={BUILD}"], capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[0])
    for k in THROUGHPUT_KEYS:
        assert isinstance(out.get(k), (int, float)) and out[k] > 0, (k, out.get(k))
    assert all(len(v) == 2 for v in out["throughput_runs"].values()), out["throughput_runs"]
    assert out["throughput_queued_ratio"] == round(out["throughput_queued_cmds_s"]
                                                   / out["throughput_minfs_writes_s"], 3)
