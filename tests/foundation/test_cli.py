"""The CLI as a user runs it: a subprocess, exit codes, one-line errors, JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LEARNLOOP = [sys.executable, "-m", "learnloop.cli"]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LEARNLOOP, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_data_check_json_reports_row_counts(synth_root):
    result = run("data", "check", "--json", "--root", str(synth_root))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["datasets"]["oulad"]["rows"]["student_info"] == 960
    assert report["datasets"]["asap_aes"]["rows"]["essays"] == 480
    assert report["datasets"]["synth_beir"]["status"] == "ok"


def test_data_check_on_a_corrupt_file_exits_nonzero_with_one_line(synth_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    path = root / "oulad" / "studentRegistration.csv"
    path.write_text(path.read_text().replace("date_registration", "registered_on", 1))
    result = run("data", "check", "--json", "--root", str(root))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "studentRegistration.csv" in errors[0] and "'date_registration'" in errors[0]


def test_data_synth_writes_what_the_readers_read(tmp_path):
    out = tmp_path / "synth"
    result = run("data", "synth", "--out", str(out), "--students", "30", "--essays", "20")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == out
    check = json.loads(run("data", "check", "--json", "--root", str(out)).stdout)
    assert check["ok"] and check["datasets"]["oulad"]["rows"]["student_info"] == 30 * 8


def test_help_lists_the_command_groups():
    result = run("--help")
    assert result.returncode == 0
    assert "data" in result.stdout and "demo" in result.stdout


def test_user_errors_are_one_line_and_exit_1_not_a_traceback(tmp_path):
    """A command that does not report a user error itself still never shows a traceback for one."""
    missing = run("train", "risk", "--training-set", str(tmp_path / "nope.parquet"),
                  env={"LEARNLOOP_DATA_DIR": str(tmp_path / "var")})
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "no such file or folder" in missing.stderr and "nope.parquet" in missing.stderr


def test_data_check_finding_nothing_or_an_empty_file_fails_with_one_line(synth_root, tmp_path):
    import shutil

    nothing = run("data", "check", "--json", "--root", str(tmp_path / "mistyped"))
    assert nothing.returncode == 1 and json.loads(nothing.stdout)["ok"] is False
    assert "no data sets in" in nothing.stderr and "no such folder" in nothing.stderr
    copy = tmp_path / "copy"
    shutil.copytree(synth_root / "oulad", copy / "oulad")
    (copy / "oulad" / "courses.csv").write_text("")
    empty = run("data", "check", "--root", str(copy))
    assert empty.returncode == 1 and "Traceback" not in empty.stderr
    assert "courses.csv" in empty.stderr and "is empty" in empty.stderr


def test_bench_arguments_that_cannot_work_are_refused_with_the_reason(synth_root):
    search = run("bench", "search", "--json", "--items", "100000", env={"LEARNLOOP_DATASETS_DIR": str(synth_root)})
    assert search.returncode != 0 and "Traceback" not in search.stderr
    assert "index fewer than that" in search.stderr
    serve = run("bench", "serve", "--only", "bogus")
    words = " ".join(serve.stderr.replace("│", " ").split())  # rich boxes and wraps the message
    assert serve.returncode == 2 and "choose from bentoml, mlflow, api, limit, essay" in words


def test_training_options_that_cannot_work_are_refused(synth_root, tmp_path):
    learner = run("train", "risk", "--learner", "foo", env={"LEARNLOOP_DATA_DIR": str(tmp_path / "var")})
    assert learner.returncode == 2 and "Traceback" not in learner.stderr and "'hgb'" in learner.stderr
    essays = run("train", "essays", "--prompt", "99", "--data", str(synth_root / "asap_aes" / "essays.tsv"),
                 env={"LEARNLOOP_DATA_DIR": str(tmp_path / "var")})
    assert essays.returncode == 1 and "no essays of prompt(s) 99" in essays.stderr


def test_features_commands_on_a_store_never_built_fail_with_what_to_run_first(tmp_path):
    """`features materialize` reported success on a store never built; `features bench` printed a traceback."""
    env = {"LEARNLOOP_DATA_DIR": str(tmp_path / "var")}
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    for args in (("features", "materialize", "--json"), ("features", "bench", "--json", "--repeats", "1"),
                 ("features", "ingest", str(events), "--json")):
        result = run(*args, env=env)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (args, result.stderr[-2000:])
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "run `learnloop features build` first" in errors[0], (args, result.stderr)
        assert result.stdout == "", args


def test_help_screens_wrap_sentences_where_the_terminal_ends():
    """Docstrings are wrapped at 110 columns and the help screens kept those breaks: `learnloop drift --help`
    read "… with its current window (the" / "prediction log), …". Every paragraph is now one line of help."""
    import inspect

    from learnloop.cli import build_app

    def commands(typer_app):
        yield from typer_app.registered_commands
        for group in typer_app.registered_groups:
            yield from commands(group.typer_instance)

    found = list(commands(build_app()))
    assert len(found) > 25
    broken = [command.callback.__name__ for command in found
              if any("\n" in paragraph for paragraph in
                     (command.help or inspect.getdoc(command.callback) or "").split("\n\n"))]
    assert broken == []
    result = run("drift", "--help", env={"COLUMNS": "100"})
    assert result.returncode == 0
    assert [line for line in result.stdout.splitlines() if line.rstrip(" │").endswith("(the")] == []


def test_scipy_numeric_warnings_do_not_reach_the_operator(monkeypatch):
    """`learnloop drift check --reference-presentations …` printed eight 'RuntimeWarning: divide by zero
    encountered in divide' lines from scipy (inside Evidently's chi-square tests) before its table."""
    import warnings

    from learnloop import cli

    shown = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *args, **kwargs: shown.append(str(message)))
    cli._quiet_third_parties()
    warnings.showwarning("divide by zero encountered in divide", RuntimeWarning,
                         "/venv/lib/python3.11/site-packages/scipy/stats/_stats_py.py", 7192)
    warnings.showwarning("ours", RuntimeWarning, "/work/learnloop/pipelines/monitoring/_drift.py", 1)
    warnings.showwarning("old", DeprecationWarning, "/venv/lib/python3.11/site-packages/ibis/x.py", 1)
    assert shown == ["ours"]
