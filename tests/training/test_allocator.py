"""videollama3.training.allocator: when `videollama3 train` restarts itself with jemalloc, and the errors it gives."""

from __future__ import annotations

import subprocess
import sys

import pytest

from videollama3.cli import main
from videollama3.errors import ConfigError
from videollama3.training import allocator
from videollama3.training.allocator import ALLOCATOR_ENV, allocator_choice, find_jemalloc, jemalloc_environment


@pytest.fixture
def library(tmp_path):
    path = tmp_path / "libjemalloc.so.2"
    path.write_bytes(b"")
    return str(path)


def test_choice_defaults_to_auto_and_rejects_unknown_values():
    assert allocator_choice({}) == "auto"
    assert allocator_choice({ALLOCATOR_ENV: " System "}) == "system"
    with pytest.raises(ConfigError, match=f"{ALLOCATOR_ENV}='tcmalloc': expected one of auto, jemalloc, system"):
        allocator_choice({ALLOCATOR_ENV: "tcmalloc"})


def test_auto_preloads_jemalloc_for_linux_cpu_training_and_keeps_other_preloads(library, tmp_path):
    env = jemalloc_environment(False, {"PATH": "/bin"}, "linux", [str(tmp_path / "absent.so"), library])
    assert env == {"PATH": "/bin", "LD_PRELOAD": library}
    env = jemalloc_environment(False, {"LD_PRELOAD": "/opt/libfoo.so"}, "linux", [library])
    assert env["LD_PRELOAD"] == f"{library}:/opt/libfoo.so"


@pytest.mark.parametrize(
    "uses_accelerator, environ, platform",
    [
        (False, {ALLOCATOR_ENV: "system"}, "linux"),  # asked not to
        (False, {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "linux"),  # already running with it: no loop
        (True, {}, "linux"),  # GPU training: not measured, left alone
        (False, {}, "darwin"),  # LD_PRELOAD is Linux's
    ],
)
def test_auto_leaves_the_allocator_alone(library, uses_accelerator, environ, platform):
    assert jemalloc_environment(uses_accelerator, environ, platform, [library]) is None


def test_auto_without_jemalloc_keeps_the_system_allocator(tmp_path):
    assert jemalloc_environment(False, {}, "linux", [str(tmp_path / "absent.so")]) is None


def test_required_jemalloc_that_is_missing_or_impossible_is_an_error(library, tmp_path):
    missing = str(tmp_path / "absent.so")
    with pytest.raises(ConfigError, match=rf"no jemalloc library found \(looked for {missing}\).*apt install"):
        jemalloc_environment(False, {ALLOCATOR_ENV: "jemalloc"}, "linux", [missing])
    with pytest.raises(ConfigError, match="Linux only, not darwin"):
        jemalloc_environment(False, {ALLOCATOR_ENV: "jemalloc"}, "darwin", [library])


def test_train_command_restarts_itself_under_jemalloc(monkeypatch, library, capsys):
    """`videollama3 train` started as a command re-executes `python -m videollama3` with the same arguments."""
    calls = []

    def fake_execve(executable, argv, env):
        calls.append((executable, argv, env))
        raise SystemExit(0)  # the real execve never returns

    monkeypatch.setattr(allocator, "JEMALLOC_PATHS", (library,))
    monkeypatch.setattr(allocator.os, "execve", fake_execve)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv(ALLOCATOR_ENV, raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["videollama3", "train", "tiny", "--set", "train.max_steps=1"])
    with pytest.raises(SystemExit):
        main()
    [(executable, argv, env)] = calls
    assert executable == sys.executable
    assert argv == [sys.executable, "-m", "videollama3", "train", "tiny", "--set", "train.max_steps=1"]
    assert env["LD_PRELOAD"] == library
    assert f"restarting with jemalloc ({library})" in capsys.readouterr().err


def test_train_command_reports_a_required_jemalloc_that_is_missing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(allocator, "JEMALLOC_PATHS", (str(tmp_path / "absent.so"),))
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setenv(ALLOCATOR_ENV, "jemalloc")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["videollama3", "train", "tiny"])
    assert main() == 2
    assert (
        "videollama3 train: error: VIDEOLLAMA3_ALLOCATOR=jemalloc: no jemalloc library found" in capsys.readouterr().err
    )


def test_called_as_a_function_the_command_never_replaces_the_process(monkeypatch, library):
    monkeypatch.setattr(allocator, "JEMALLOC_PATHS", (library,))
    monkeypatch.setattr(allocator.os, "execve", lambda *a: pytest.fail("execve from main(argv)"))
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv(ALLOCATOR_ENV, raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("videollama3.training.runner.run_recipe", lambda recipe, **kwargs: [])
    assert main(["train", "tiny"]) == 0


@pytest.mark.skipif(find_jemalloc() is None, reason="jemalloc is not installed (apt install libjemalloc2)")
def test_the_found_library_preloads():
    check = "from pathlib import Path; print('jemalloc' in Path('/proc/self/maps').read_text())"
    with_it = subprocess.run(
        [sys.executable, "-c", check], env={"LD_PRELOAD": find_jemalloc()}, capture_output=True, text=True
    )
    without = subprocess.run([sys.executable, "-c", check], env={}, capture_output=True, text=True)
    assert (with_it.stdout.strip(), without.stdout.strip()) == ("True", "False"), with_it.stderr + without.stderr
