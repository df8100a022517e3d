"""What a stage prints when stderr is not a terminal (`dvc repro`, CI, a log file): progress lines, and none of
the noise a newcomer takes for errors (pipeline.core.stage)."""

import logging
import subprocess
import sys
import textwrap

from pipeline.core.stage import LineProgress, progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_line_every_interval_with_rate_and_time_left(caplog):
    clock = Clock()
    bar = LineProgress(desc="train", unit="step", total=400, initial=100, every=30.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="progress"):
        for _ in range(10):  # 10 steps in 25 s: no line yet
            clock.t += 2.5
            bar.update(1)
        assert caplog.messages == []
        clock.t += 5.0
        bar.set_postfix(loss="0.1234")
        bar.update(1)  # 11 steps in 30 s
        assert caplog.messages == ["train: 111/400 step (28 %), 2.73 s/step, 13 min 08 s left, loss=0.1234"]
        clock.t += 100
        bar.update(280)
        bar.close()
        bar.close()  # once
        assert caplog.messages[-1] == "train: 391/400 step (98 %), 2.24 step/s, 4 s left, loss=0.1234"
        bar = LineProgress(desc="train", unit="step", total=400, initial=391, every=30.0, clock=clock)
        clock.t += 40
        bar.update(9)
        bar.close()
    assert caplog.messages[-1] == "train: 400/400 step (100 %), 4.44 s/step, done in 40 s"
    assert len(caplog.messages) == 3  # the 30-s line, the one after 100 s, the resumed run's one


def test_quick_loops_write_nothing_and_iteration_counts(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="progress"):
        with LineProgress(range(5), desc="iuv", unit="chunk", every=30.0, clock=clock) as bar:
            assert list(bar) == [0, 1, 2, 3, 4]
        assert bar.n == 5 and bar.total == 5
    assert caplog.messages == []


def test_no_total_and_fast_rates_read_naturally():
    clock = Clock()
    bar = LineProgress(desc="densepose", unit="img", every=30.0, clock=clock)
    clock.t = 40.0
    bar.update(200)
    assert bar.line(clock.t) == "densepose: 200 img, 5 img/s"


def test_a_stage_under_dvc_prints_lines_without_a_terminal():
    """stderr a pipe (what DVC and CI give a stage): the lines come, every DP3D_PROGRESS_SECONDS."""
    code = textwrap.dedent("""
        import time
        from pipeline.core.stage import progress, setup_logging
        setup_logging()
        bar = progress(total=6, desc="network", unit="step")
        for _ in range(6):
            time.sleep(0.06)
            bar.update(1)
        bar.close()
        progress(total=3, desc="hidden", unit="step", enabled=False).update(3)
    """)
    env = {"PYTHONPATH": ".", "DP3D_PROGRESS_SECONDS": "0.1", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if "progress INFO" in ln]
    assert 2 <= len(lines) <= 5, run.stderr
    assert "network: " in lines[0] and "/6 step" in lines[0]
    assert "network: 6/6 step (100 %)" in lines[-1] and "done in" in lines[-1]
    assert "hidden" not in run.stderr


def test_a_terminal_keeps_tqdm(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress(total=3, desc="x", unit="step")
    assert type(bar).__name__ == "tqdm"
    bar.close()


def test_warp_starts_without_its_greeting_or_the_no_driver_warning():
    """Anny initialises NVIDIA Warp, whose C library warns about a missing CUDA driver on every CPU machine."""
    code = ("from pipeline.core.dispatch import start_warp\nwp = start_warp()\nimport anny\n"
            "assert wp.get_device('cpu') is not None\nprint('ready')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": "."},
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ready"
    assert "Warp" not in run.stderr and "CUDA" not in run.stderr, run.stderr
