"""What the PyTorch references share to measure a training step the way the Loom benchmarks do: the process's
resident set from /proc/self/status, its peak restarted after the warm-up, and one fresh process per
configuration (so one configuration's freed-but-kept memory never counts against the next)."""
import ctypes
import gc
import json
import subprocess
import sys


def status_bytes(field):
    """A byte count from /proc/self/status ("VmRSS", "VmHWM"; reported there in kB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def restart_peak_rss():
    """Collects garbage and hands freed heap back to the kernel, then restarts the kernel's peak-RSS counter
    (VmHWM) from the current resident set. Returns that resident set (the footprint); the step's growth is
    status_bytes("VmHWM") minus it."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return before


def run_in_fresh_process(script, threads, cfg):
    """Runs `script --threads N --one <cfg as JSON>` in a new interpreter and prints its JSON line, or the
    configuration with the error's last line when it failed."""
    res = subprocess.run([sys.executable, script, "--threads", str(threads), "--one", json.dumps(cfg)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        print(json.dumps(dict(cfg, error=res.stderr.strip().splitlines()[-1:])), flush=True)
        return
    print(res.stdout.strip(), flush=True)
