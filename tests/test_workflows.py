"""The scheduler recipes in workflows/: the crontab line, the systemd units, the Prefect flow.

They all run ``geoseg batch workflows/region.yaml``; these tests check that each
file is well-formed for its scheduler and calls the command the way its
contract allows (exit codes 0/1/75/130, options --dry-run --retries --no-merge
--log-file --log-json -q/--quiet).
"""

from __future__ import annotations

import configparser
import importlib.util
import logging
import py_compile
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
CRONTAB = WORKFLOWS / "cron" / "geoseg-region.crontab"
SERVICE = WORKFLOWS / "systemd" / "geoseg-region.service"
TIMER = WORKFLOWS / "systemd" / "geoseg-region.timer"
FLOW = WORKFLOWS / "prefect" / "flow.py"

JOB_NAME = "workflows/region.yaml"
#: The options of `geoseg batch` in its contract: True if the option takes a value.
BATCH_OPTIONS = {
    "--dry-run": False,
    "--retries": True,
    "--no-merge": False,
    "--log-file": True,
    "--log-json": False,
    "-q": False,
    "--quiet": False,
}
_SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}


def _batch_invocation(argv: list[str]) -> dict[str, Any]:
    """Check `argv` (one shell command) runs `geoseg batch` on the region job; its options and job.

    `argv` may start with wrappers (nice, ionice, env); the geoseg executable
    must be an absolute path (cron and systemd have no useful PATH).
    """
    starts = [i for i in range(len(argv) - 1) if Path(argv[i]).name == "geoseg" and argv[i + 1] == "batch"]
    assert len(starts) == 1, f"no single `geoseg batch` in {argv}"
    exe, args = argv[starts[0]], argv[starts[0] + 2 :]
    assert Path(exe).is_absolute(), f"{exe}: use the absolute path of the venv's geoseg"
    options: dict[str, str | None] = {}
    positional: list[str] = []
    it = iter(args)
    for arg in it:
        if arg.startswith("-"):
            name, eq, value = arg.partition("=")
            assert name in BATCH_OPTIONS, f"{name} is not an option of geoseg batch"
            if BATCH_OPTIONS[name]:
                options[name] = value if eq else next(it, None)
                assert options[name] and not options[name].startswith("-"), f"{name} needs a value"
            else:
                assert not eq, f"{name} takes no value"
                options[name] = None
        else:
            positional.append(arg)
    assert len(positional) == 1, f"geoseg batch takes one job file, got {positional}"
    job = positional[0]
    assert job.endswith("/" + JOB_NAME) and Path(job).is_absolute(), f"job {job} is not an absolute .../{JOB_NAME}"
    assert "--log-file" in options, "unattended runs need --log-file"
    assert Path(str(options["--log-file"])).is_absolute()
    assert "--log-json" in options
    assert "--dry-run" not in options, "a scheduled dry run maps nothing"
    return {"exe": exe, "job": job, "options": options}


def _shell_commands(command: str) -> list[list[str]]:
    """`command` split into its simple commands at && || ; | &, each as an argv."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    parts: list[list[str]] = [[]]
    for token in lexer:
        if token in _SHELL_OPERATORS:
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


# -- cron ----------------------------------------------------------------------------------------------------------

_CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_CRON_NAMES = ["minute", "hour", "day of month", "month", "day of week"]


def _cron_field(text: str, lo: int, hi: int) -> set[int]:
    """The values one numeric crontab field matches (`*`, `a`, `a-b`, each with an optional `/step`, comma lists)."""
    values: set[int] = set()
    for item in text.split(","):
        m = re.fullmatch(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?", item)
        assert m, f"{text!r}: not a crontab field"
        span, step = m.group(1), int(m.group(2) or 1)
        if span == "*":
            a, b = lo, hi
        else:
            a, _, b_text = span.partition("-")
            a, b = int(a), int(b_text or a)
        assert lo <= a <= b <= hi and step >= 1, f"{text!r} is outside {lo}-{hi}"
        values |= set(range(a, b + 1, step))
    return values


def _cron_jobs(path: Path) -> list[str]:
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    entries = [ln for ln in lines if ln and not ln.startswith("#")]
    # NAME=value lines set the environment of the jobs below them.
    return [ln for ln in entries if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", ln)]


def test_crontab_runs_batch_monthly() -> None:
    jobs = _cron_jobs(CRONTAB)
    assert len(jobs) == 1, jobs
    fields = jobs[0].split(None, 5)
    assert len(fields) == 6, "a crontab line is 5 schedule fields and a command"
    schedule = [_cron_field(f, lo, hi) for f, (lo, hi) in zip(fields[:5], _CRON_RANGES, strict=True)]
    minute, hour, dom, month, _ = schedule
    # Once a month: one time of day, one day of the month, every month, and no weekday
    # restriction (cron ORs day of month and day of week when both are set).
    assert len(minute) == len(hour) == len(dom) == 1, dict(zip(_CRON_NAMES, schedule, strict=True))
    assert month == set(range(1, 13))
    assert fields[4] == "*"
    command = fields[5]
    assert not re.search(r"(?<!\\)%", command), "cron turns an unescaped % into a newline"
    calls = [c for c in _shell_commands(command) if "batch" in c]
    assert len(calls) == 1
    _batch_invocation(calls[0])


def test_cron_field_parser_rejects_bad_fields() -> None:
    # The schedule check above is only as good as this parser.
    assert _cron_field("*/15", 0, 59) == {0, 15, 30, 45}
    assert _cron_field("1,3-5", 0, 7) == {1, 3, 4, 5}
    for bad in ("60", "1-", "a", "*/0", "5-2"):
        with pytest.raises(AssertionError):
            _cron_field(bad, 0, 59)


# -- systemd -------------------------------------------------------------------------------------------------------


class _Repeated(dict):  # type: ignore[type-arg]
    """configparser storage keeping every value of a key that a unit file assigns more than once.

    While reading, configparser stores each option as a list of lines; a second
    assignment of the key replaces that list, which here extends it instead.
    """

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, list) and isinstance(self.get(key), list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values in order]}}."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, dict_type=_Repeated, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return {s: {k: v.split("\n") for k, v in parser[s].items()} for s in parser.sections()}


def _one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= is missing"
    assert len(values) == 1, f"[{section}] {key}= is set {len(values)} times"
    return values[0]


def test_unit_parser_keeps_repeated_keys(tmp_path: Path) -> None:
    unit = tmp_path / "x.service"
    unit.write_text("[Service]\nEnvironment=A=1\nEnvironment=B=2\nType=simple\n[Service]\nType=oneshot\n")
    assert _unit(unit) == {"Service": {"Environment": ["A=1", "B=2"], "Type": ["simple", "oneshot"]}}


def test_service_unit() -> None:
    unit = _unit(SERVICE)
    assert _one(unit, "Service", "Type") == "oneshot"
    user = _one(unit, "Service", "User")
    assert user not in ("root", "0"), "run the batch as a dedicated unprivileged user"
    assert Path(_one(unit, "Service", "WorkingDirectory")).is_absolute()
    env = dict(v.split("=", 1) for line in unit["Service"]["Environment"] for v in shlex.split(line))
    assert Path(env["GEOSEG_HOME"]).is_absolute()
    call = _batch_invocation(shlex.split(_one(unit, "Service", "ExecStart")))
    assert "--quiet" in call["options"] or "-q" in call["options"], "progress bars would fill the journal"
    # 75 (another run holds the job's lock) is benign; 1 (a scene failed) and 130 (interrupted) are not.
    success = {c for line in unit["Service"].get("SuccessExitStatus", []) for c in line.split()}
    assert success == {"75"}
    # systemctl stop must end the run with a signal geoseg turns into a clean interrupt (the next run resumes).
    assert unit["Service"].get("KillSignal", ["SIGTERM"])[-1] in ("SIGTERM", "SIGINT", "TERM", "INT")
    assert int(_one(unit, "Service", "Nice")) > 0
    assert _one(unit, "Service", "IOSchedulingClass") in ("best-effort", "idle", "2", "3")
    assert "Install" not in unit, "the timer starts the service; enable the timer, not the service"


def test_timer_unit() -> None:
    unit = _unit(TIMER)
    assert re.fullmatch(r"\*-\*-0?1 \d{1,2}:\d{2}(:\d{2})?|monthly", _one(unit, "Timer", "OnCalendar"))
    assert _one(unit, "Timer", "Persistent") == "true"
    assert _one(unit, "Timer", "RandomizedDelaySec")
    assert _one(unit, "Timer", "Unit") == SERVICE.name
    assert _one(unit, "Install", "WantedBy") == "timers.target"


def test_systemd_analyze_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on PATH; the units were only checked with configparser")
    # verify fails on an ExecStart binary that does not exist here: point it at /bin/true.
    for src in (SERVICE, TIMER):
        text = src.read_text(encoding="utf-8")
        text, n = re.subn(r"^(ExecStart=[-@:+!]*)\S+", r"\1/bin/true", text, flags=re.M)
        assert n == (1 if src is SERVICE else 0)
        (tmp_path / src.name).write_text(text, encoding="utf-8")
    units = [str(tmp_path / SERVICE.name), str(tmp_path / TIMER.name)]
    proc = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    # verify exits 0 after an unknown key or an unparsable value ("..., ignoring"): read what it says about our files.
    ours = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "geoseg-region." in ln]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr

    calendar = _one(_unit(TIMER), "Timer", "OnCalendar")
    proc = subprocess.run(
        [analyze, "calendar", "--iterations=3", calendar], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    days = [date.fromisoformat(d) for d in re.findall(r"(\d{4}-\d{2}-\d{2}) \d{2}:\d{2}:\d{2}", proc.stdout)]
    assert len(days) == 3, proc.stdout
    assert all(d.day == 1 for d in days)
    assert len({(d.year, d.month) for d in days}) == 3, "one run a month"


def test_scheduled_commands_use_real_cli_options() -> None:
    """Once geoseg/cli/batch.py exists: every option the recipes pass is one the command has."""
    import click

    from geoseg.cli import main

    command = main.commands.get("batch")
    if command is None:
        pytest.skip("`geoseg batch` is not registered with the CLI yet")
    takes_value: dict[str, bool] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in (*param.opts, *param.secondary_opts):
                takes_value[opt] = not (param.is_flag or param.count)
    cron_call = next(c for c in _shell_commands(_cron_jobs(CRONTAB)[0].split(None, 5)[5]) if "batch" in c)
    service_call = shlex.split(_one(_unit(SERVICE), "Service", "ExecStart"))
    for argv in (cron_call, service_call):
        for name in _batch_invocation(argv)["options"]:
            assert name in takes_value, f"geoseg batch has no option {name}"
            assert takes_value[name] == BATCH_OPTIONS[name], f"{name}: value or flag?"


# -- Prefect -------------------------------------------------------------------------------------------------------


def test_prefect_flow_compiles(tmp_path: Path) -> None:
    py_compile.compile(str(FLOW), cfile=str(tmp_path / "flow.pyc"), doraise=True)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect API (subprocess server, throwaway database) for the flow tests of this module."""
    with pytest.MonkeyPatch.context() as mp:
        # Read when prefect is first imported: keep its files out of the user's ~/.prefect.
        mp.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        mp.delenv("PREFECT_API_URL", raising=False)
        pytest.importorskip("prefect")
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness():
            yield


def _load_flow(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    name = "geoseg_workflows_prefect_flow"
    spec = importlib.util.spec_from_file_location(name, FLOW)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


class _FakeBatch:
    """Stands in for geoseg.batch.load_job/run_batch; returns real BatchResult objects."""

    def __init__(self, tmp_path: Path, statuses: dict[str, str], errors: tuple[BaseException, ...] = ()) -> None:
        self.manifest = tmp_path / "test-region.manifest.json"
        self.statuses = statuses
        self.errors = list(errors)
        self.loaded: list[tuple[Path, dict[str, Any]]] = []
        self.runs = 0

    def load_job(self, path: Path, **overrides: Any) -> Any:
        self.loaded.append((Path(path), overrides))
        return SimpleNamespace(region="test-region", retries=overrides.get("retries"))

    def run_batch(self, job: Any) -> Any:
        from geoseg.batch import BatchResult, SceneOutcome

        self.runs += 1
        if self.errors:
            raise self.errors.pop(0)
        scenes = [
            SceneOutcome(
                scene=s, path=f"/data/{s}.tif", status=st, attempts=1, error="boom" if st == "failed" else None
            )
            for s, st in self.statuses.items()
        ]
        return BatchResult(job.region, scenes, self.manifest, None, 0.1)


def test_prefect_flow_fails_on_failed_scenes_and_returns_manifest(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    module = _load_flow(monkeypatch)

    fake = _FakeBatch(tmp_path, {"s1": "done", "s2": "failed", "s3": "skipped"})
    monkeypatch.setattr(module, "load_job", fake.load_job)
    monkeypatch.setattr(module, "run_batch", fake.run_batch)
    monkeypatch.chdir(tmp_path)
    # Prefect's loggers do not propagate to the root logger caplog listens on.
    prefect_logger = logging.getLogger("prefect")
    prefect_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO), pytest.raises(module.ScenesFailed) as err:
            module.map_region(job=JOB_NAME)
    finally:
        prefect_logger.removeHandler(caplog.handler)
    assert err.value.failed == ["s2"] and err.value.manifest == fake.manifest
    assert fake.runs == 1, "a failed scene is not a transient error: the batch retried it already"
    assert fake.loaded == [(tmp_path / JOB_NAME, {"retries": None})]
    logged = caplog.text
    assert "s1: done" in logged and "s3: skipped" in logged and re.search(r"s2: failed.*boom", logged)

    fake = _FakeBatch(tmp_path, {"s1": "done", "s3": "skipped"})
    monkeypatch.setattr(module, "load_job", fake.load_job)
    monkeypatch.setattr(module, "run_batch", fake.run_batch)
    assert module.map_region(job=str(tmp_path / "region.yaml"), retries=3) == fake.manifest
    assert fake.loaded == [(tmp_path / "region.yaml", {"retries": 3})]


def test_prefect_flow_retries_only_transient_errors(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoseg.errors import ConfigError, JobLockedError

    module = _load_flow(monkeypatch)
    monkeypatch.setattr(module, "run_job", module.run_job.with_options(retry_delay_seconds=0, retry_jitter_factor=None))

    # The job's lock is held by another run, then a network share hiccups: both retried.
    fake = _FakeBatch(tmp_path, {"s1": "done"}, (JobLockedError("locked"), TimeoutError("nfs")))
    monkeypatch.setattr(module, "load_job", fake.load_job)
    monkeypatch.setattr(module, "run_batch", fake.run_batch)
    assert module.map_region(job=str(tmp_path / "region.yaml")) == fake.manifest
    assert fake.runs == 3

    # A wrong job file fails the same way every time: no retry.
    fake = _FakeBatch(tmp_path, {"s1": "done"}, (ConfigError("region.yaml: scenes: field required"),))
    monkeypatch.setattr(module, "load_job", fake.load_job)
    monkeypatch.setattr(module, "run_batch", fake.run_batch)
    with pytest.raises(ConfigError):
        module.map_region(job=str(tmp_path / "region.yaml"))
    assert fake.runs == 1
