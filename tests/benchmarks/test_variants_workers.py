"""A study's worker processes end with it: a killed `variants --jobs N` must not leave runs training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The suites' own pool set-up: spawn workers initialised by `init_worker` (the pool starts them as it needs
# them), one busy for ten minutes; TASK says how: plain sleeping, or catching SIGTERM as training does.
POOL_SCRIPT = textwrap.dedent("""
    import multiprocessing, signal, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from benchmarks.suites import common

    def sleep(seconds):
        time.sleep(seconds)

    def sleep_through_sigterm(seconds):
        signal.signal(signal.SIGTERM, lambda *_: None)
        time.sleep(seconds)

    if __name__ == "__main__":
        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=common.init_worker, initargs=(1,))
        pool.submit(int, 0).result()  # the workers exist and ran their initializer
        pool.submit(TASK, 600)
        time.sleep(1)
        print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
        time.sleep(600)
""")


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie that nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and the parent-death signal are Linux's")
@pytest.mark.parametrize("task", ["sleep", "sleep_through_sigterm"])
def test_workers_end_when_the_study_process_is_killed(tmp_path, task):
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT.replace("TASK", task))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    parent = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        workers = [int(p) for p in line.split()]
        assert workers and all(_alive(p) for p in workers), line
        parent.send_signal(signal.SIGKILL)  # the hardest case: the study gets no chance to clean up
        parent.wait(timeout=30)
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "a worker outlived the killed study"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in workers if "workers" in locals() else []:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
