"""`preflight logs` end to end: real trainer logs, JSON, training config, bad input, --plot."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "logs"


def test_real_whisper_run_overfits_from_step_1000(run_cli):
    code, out, err = run_cli("logs", str(FIXTURES / "whisper_small_hi" / "trainer_state.json"), "--json")
    doc = json.loads(out)
    findings = {f["id"]: f for f in doc["findings"]}
    assert err == "" and code == 0  # warnings only
    assert findings["logs.overfitting"]["status"] == "warn"
    assert "best eval_loss 0.3075 at step 1000" in findings["logs.overfitting"]["observed"]
    assert "load_best_model_at_end=True" in findings["logs.overfitting"]["remediation"]
    assert doc["format"] == "hf-trainer-state" and doc["series"]["eval_loss"]["points"] == 5


def test_run_folder_and_terminal_report(run_cli):
    code, out, _ = run_cli("logs", str(FIXTURES / "llamafactory_lora"))
    assert "preflight logs:" in out and "logs.no_eval" in out and "eval_strategy" in out
    assert "learning rate" in out  # the chart's second panel


def test_a_folder_says_which_log_it_read(run_cli, tmp_path):
    import shutil

    for n in (999, 1000, 500):
        (tmp_path / f"checkpoint-{n}").mkdir()
        shutil.copy(FIXTURES / "whisper_small_hi" / "trainer_state.json", tmp_path / f"checkpoint-{n}")
    code, out, _ = run_cli("logs", str(tmp_path), "--json")
    doc = json.loads(out)
    assert doc["source"] == str(tmp_path / "checkpoint-1000" / "trainer_state.json")
    assert doc["chosen_because"] == "the newest checkpoint's (checkpoint-1000: the highest step)"
    assert doc["candidates"][1:] == [str(tmp_path / f"checkpoint-{n}" / "trainer_state.json") for n in (999, 500)]
    _, out, _ = run_cli("logs", str(tmp_path))
    assert "read: the newest checkpoint's (checkpoint-1000" in " ".join(out.split())
    # a file named on the command line was not chosen: nothing to say
    _, out, _ = run_cli("logs", str(tmp_path / "checkpoint-500" / "trainer_state.json"), "--json")
    assert "chosen_because" not in json.loads(out)


def test_training_config_is_compared(run_cli, tmp_path):
    config = tmp_path / "train.yaml"  # LLaMA-Factory style
    config.write_text("learning_rate: 1.0e-3\nlr_scheduler_type: cosine\nwarmup_ratio: 0.1\nnum_train_epochs: 3.0\n")
    _, out, _ = run_cli("logs", str(FIXTURES / "whisper_small_hi" / "trainer_state.json"), "--json",
                        "--config", str(config))
    mismatch = next(f for f in json.loads(out)["findings"] if f["id"] == "logs.lr_mismatch")
    assert mismatch["status"] == "warn"  # logged peak ~1e-5 against 1e-3 configured


def test_corrupt_and_missing_logs_are_input_errors(run_cli, tmp_path):
    bad = tmp_path / "trainer_state.json"
    bad.write_text('{"log_history": [{"step": 1, "loss": 2.0},\n  {"step": 2, "loss": ')
    code, out, err = run_cli("logs", str(bad))
    assert code == 2 and out == "" and "trainer_state.json" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli("logs", str(tmp_path / "nothing-here"))
    assert code == 2 and "nothing-here" in err


def test_bad_training_config_value(run_cli, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("learning_rate: fast\n")
    code, _, err = run_cli("logs", str(FIXTURES / "llamafactory_lora"), "--config", str(config))
    assert code == 2 and "learning_rate must be a number" in err


def test_plot_writes_a_png_or_says_what_is_missing(run_cli, tmp_path):
    png = tmp_path / "run.png"
    code, _, err = run_cli("logs", str(FIXTURES / "whisper_small_hi" / "trainer_state.json"), "--plot", str(png))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert code == 2 and "matplotlib" in err
    else:
        assert code == 0 and png.read_bytes().startswith(b"\x89PNG")
        from matplotlib.image import imread

        pixels = imread(str(png))
        assert pixels.shape[:2] == (600, 1000)  # 10 x 6 inches at 100 dpi
        # the overfitting onset (step 1000) is marked: a pale red vertical line over the white
        red = (pixels[..., 0] > 0.9) & (abs(pixels[..., 1] - 0.6) < 0.1) & (abs(pixels[..., 2] - 0.6) < 0.1)
        assert red.sum(axis=0).max() > 200  # one column red over most of the loss panel's height


def test_follow_reports_again_when_the_log_grows(tmp_path):
    import os
    import subprocess
    import sys
    import time

    log = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 2.0 - s / 100, "eval_loss": None}) for s in range(1, 30)]
    log.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "preflight", "logs", str(log), "--json", "--follow", "--interval", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        first = json.loads(proc.stdout.readline())
        assert all(f["id"] != "logs.nan_loss" or f["status"] == "pass" for f in first["findings"])
        with log.open("a") as handle:  # the run diverges
            handle.write(json.dumps({"step": 30, "loss": float("nan")}).replace("NaN", "NaN") + "\n")
        deadline = time.monotonic() + 15
        second = None
        while time.monotonic() < deadline and second is None:
            line = proc.stdout.readline()
            if line:
                second = json.loads(line)
        assert second is not None, "no second report after the log grew"
        nan = next(f for f in second["findings"] if f["id"] == "logs.nan_loss")
        assert nan["status"] == "fail" and "30" in nan["observed"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _state(n: int) -> str:
    history = [{"step": s, "loss": 2.0 - s / 100, "learning_rate": 1e-4, "epoch": s / 100}
               for s in range(1, n + 1)]
    return json.dumps({"global_step": n, "log_history": history}, indent=2)


def test_follow_survives_a_log_caught_mid_write(tmp_path):
    """The Trainer rewrites trainer_state.json in place at every save: a poll that catches it
    half written (or a restarted run's empty file) is said once on stderr and read again, and
    the watch goes on to report the grown log. A file broken at the first read still exits 2."""
    import os
    import subprocess
    import sys
    import time

    log = tmp_path / "trainer_state.json"
    log.write_text(_state(20))
    cmd = [sys.executable, "-m", "preflight", "logs", str(log), "--json", "--follow", "--interval", "0.2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["series"]["train_loss"]["points"] == 20
        half = tmp_path / "half.json"
        half.write_text(_state(40)[:300])
        os.replace(half, log)  # caught mid-write (the same half each poll)
        time.sleep(1.0)
        assert proc.poll() is None, "the watch ended on a half-written log"
        fresh = tmp_path / "fresh.json"
        fresh.write_text(_state(40))
        os.replace(fresh, log)  # whole at once: no other half-written state for a poll to catch
        second = json.loads(proc.stdout.readline())
        assert second["series"]["train_loss"]["points"] == 40
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "invalid JSON" in err and "reading again" in err and "Traceback" not in err
    assert err.count("invalid JSON") == 1  # said once, not at every poll

    log.write_text(_state(40)[:300])  # broken from the start: nothing to keep watching
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "invalid JSON" in done.stderr and done.stdout == ""


def test_follow_waits_for_a_job_that_has_not_logged_yet(tmp_path):
    """`--follow` started beside a job that has only just started: no output folder yet, then an
    empty log_history; it waits, then reports the first real log. Without --follow a missing
    path is still an input error (exit 2)."""
    import os
    import subprocess
    import sys

    out_dir = tmp_path / "saves"
    cmd = [sys.executable, "-m", "preflight", "logs", str(out_dir), "--json", "--follow", "--interval", "0.2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        import time

        time.sleep(1.0)
        assert proc.poll() is None, "the watch ended before the job wrote anything"
        out_dir.mkdir()
        (out_dir / "trainer_state.json").write_text(json.dumps({"global_step": 0, "log_history": []}))
        time.sleep(0.8)
        assert proc.poll() is None, "the watch ended on an empty log_history"
        staged = tmp_path / "staged.json"
        staged.write_text(_state(25))
        os.replace(staged, out_dir / "trainer_state.json")
        first = json.loads(proc.stdout.readline())
        assert first["series"]["train_loss"]["points"] == 25
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "no such file or directory" in err and "waiting for the first log" in err
    assert err.count("no such file or directory") == 1 and "Traceback" not in err

    done = subprocess.run(cmd[:-3], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert done.returncode == 0  # without --follow: the folder now holds a log
    missing = [sys.executable, "-m", "preflight", "logs", str(tmp_path / "nope"), "--json"]
    done = subprocess.run(missing, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "no such file or directory" in done.stderr


def test_training_config_is_read_as_preflight_config_reads_it(run_cli, tmp_path):
    """--config goes through preflight config's reader: Axolotl's own key names (lr_scheduler,
    num_epochs) count, a bad value is located at its line, and a DeepSpeed file is refused."""
    from preflight.logs.command import read_training_config

    axolotl = tmp_path / "axolotl.yml"
    axolotl.write_text("base_model: NousResearch/Llama-3.2-1B\nadapter: lora\nmicro_batch_size: 2\n"
                       "num_epochs: 1\nlearning_rate: 0.0002\nlr_scheduler: cosine\nwarmup_steps: 10\n")
    assert read_training_config(axolotl) == {"learning_rate": 0.0002, "lr_scheduler_type": "cosine",
                                             "warmup_steps": 10.0, "num_train_epochs": 1.0}
    _, out, _ = run_cli("logs", str(FIXTURES / "whisper_small_hi" / "trainer_state.json"), "--json",
                        "--config", str(axolotl))
    mismatch = next(f for f in json.loads(out)["findings"] if f["id"] == "logs.lr_mismatch")
    assert mismatch["status"] == "warn"  # logged peak ~1e-5 against 2e-4 configured
    bad = tmp_path / "bad.yml"
    bad.write_text("base_model: x\nadapter: lora\nmicro_batch_size: 2\nlearning_rate: fast\n")
    code, _, err = run_cli("logs", str(FIXTURES / "llamafactory_lora"), "--config", str(bad))
    assert code == 2 and f"{bad}:4:" in err and "learning_rate must be a number" in err
    ds = tmp_path / "ds.json"
    ds.write_text('{"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 2}}')
    code, _, err = run_cli("logs", str(FIXTURES / "llamafactory_lora"), "--config", str(ds))
    assert code == 2 and "not a training config" in err and err.count("\n") == 1


def test_a_large_log_ends_the_process_early_with_every_byte_written(tmp_path, run_cli):
    """`preflight logs` on a log of 100,000 points or more leaves through os._exit once its report
    is flushed (no freeing of millions of floats at exit): the exit code and the whole JSON
    document must still come out, through a pipe too; in-process main() returns as ever."""
    import os
    import subprocess
    import sys

    history = [{"step": s, "loss": 2.0 - s * 1e-6, "learning_rate": 1e-4} for s in range(1, 60_001)]
    log = tmp_path / "trainer_state.json"
    log.write_text(json.dumps({"global_step": 60_000, "max_steps": 60_000, "log_history": history}))
    cmd = [sys.executable, "-m", "preflight", "logs", str(log), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ})
    doc = json.loads(done.stdout)  # the whole document, flushed before the early exit
    assert doc["series"]["train_loss"]["points"] == 60_000
    assert done.returncode == doc["verdict"]["exit_code"] and "Traceback" not in done.stderr
    head = subprocess.run(f"{' '.join(cmd)} | head -c 100", shell=True, capture_output=True, text=True, timeout=120)
    assert len(head.stdout) == 100 and head.stderr == ""  # a closed pipe: quiet
    code, out, _ = run_cli("logs", str(log), "--json")  # in-process: returns normally
    assert code == doc["verdict"]["exit_code"] and json.loads(out)["series"] == doc["series"]
    # the shortcut is taken for the large log only: an atexit handler runs after a small one
    script = ("import atexit, sys; atexit.register(lambda: print('teardown', file=sys.stderr)); "
              "sys.argv = ['preflight', 'logs', sys.argv[1], '--json']; "
              "from preflight.cli import entry; entry()")
    big = subprocess.run([sys.executable, "-c", script, str(log)], capture_output=True, text=True, timeout=120)
    small = subprocess.run([sys.executable, "-c", script, str(FIXTURES / "whisper_small_hi" / "trainer_state.json")],
                           capture_output=True, text=True, timeout=120)
    assert "teardown" not in big.stderr and json.loads(big.stdout)["series"] == doc["series"]
    assert "teardown" in small.stderr and small.returncode == 0
