"""The record of a Hydra sweep: one status file per job, and an index of the sweep directory.

``JobRecorder`` is a Hydra callback (``hydra.callbacks`` in ``configs/config.yaml``). Hydra calls
it in the process that runs the job, whatever the launcher (the basic one, a joblib worker, a
SLURM task), so it works the same everywhere:

- every run directory gets ``job.json``: job number, overrides, status (``running`` when the job
  starts, then ``completed``, ``failed`` with the error, or ``interrupted``: ``record_exit``), run directory,
  host, times; a run resumed to its end (``trainer.resume``) is ``completed`` too, with the resume under
  ``resumes`` (``record_resumed``);
- in a multirun, the sweep directory gets ``index.jsonl`` (an append-only log: one line when each
  job starts and one when it ends) and ``index.md`` (the current status of every job, by job
  number), both written under a file lock, so jobs finishing at once in parallel processes
  neither interleave nor lose lines.

A job killed from outside (out of memory, a SLURM time limit) stays ``running``. ``read_runs``
scans a sweep directory for run directories (those holding Hydra's ``.hydra/overrides.yaml``):
this, not the index, is what ``python -m vardiu_pyro.report`` reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

try:  # POSIX; on other systems the index is written without a lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["JobRecorder", "record_exit", "record_resumed", "Run", "read_runs", "not_started", "expected_overrides",
           "read_index", "JOB_FILE", "INDEX_JSONL", "INDEX_MD"]

JOB_FILE = "job.json"
INDEX_JSONL = "index.jsonl"
INDEX_MD = "index.md"
LOCK = ".index.lock"


def _is_secondary_rank() -> bool:
    """A process of a torchrun launch other than rank 0 (it writes nothing; see vardiu_pyro.distributed)."""
    return int(os.environ.get("RANK", "0")) > 0 and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / LOCK, "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)


class JobRecorder(Callback):
    """Writes ``job.json`` into every run directory and keeps the sweep's index up to date."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _is_secondary_rank():
            return
        record = self._record(config, status="running")
        self._write(config, record)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if _is_secondary_rank():
            return
        if job_return.status == JobStatus.COMPLETED:
            record = self._end_record(config, "completed")
            record["return_value"] = job_return._return_value if _jsonable(job_return._return_value) else None
        else:  # the exception (JobReturn.return_value would re-raise it)
            record = self._end_record(config, "failed", job_return._return_value)
        self._write(config, record)

    @classmethod
    def _end_record(cls, config: DictConfig, status: str, error: BaseException | None = None) -> dict:
        """The record of a job that ended with ``status`` (and ``error``), keeping the start time of ``on_job_start``."""
        record = cls._record(config, status=status)
        with contextlib.suppress(OSError, ValueError):
            record["started"] = json.loads((Path(config.hydra.runtime.output_dir) / JOB_FILE).read_text())["started"]
        record["ended"] = time.time()
        if error is not None:
            record["error"] = f"{type(error).__name__}: {error}"
            record["traceback"] = "".join(traceback.format_exception(error))
        return record

    @staticmethod
    def _record(config: DictConfig, status: str) -> dict:
        hydra = config.hydra
        return {"num": OmegaConf.select(config, "hydra.job.num", default=None),
                "id": OmegaConf.select(config, "hydra.job.id", default=None),
                "status": status,
                "overrides": list(OmegaConf.to_container(hydra.overrides.task)),
                "run_dir": str(hydra.runtime.output_dir),
                "host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}

    @staticmethod
    def _write(config: DictConfig, record: dict) -> None:
        run_dir = Path(config.hydra.runtime.output_dir)
        _write_json_atomic(run_dir / JOB_FILE, record)
        if config.hydra.mode == RunMode.MULTIRUN:
            _add_to_index(Path(str(config.hydra.sweep.dir)).absolute(), run_dir, record)


def _add_to_index(sweep_dir: Path, run_dir: Path, record: dict) -> None:
    """Append ``record`` (its run directory relative to the sweep's) to the sweep's ``index.jsonl``; rewrite ``index.md``."""
    line = {k: v for k, v in record.items() if k != "traceback"}
    line["run_dir"] = os.path.relpath(run_dir, sweep_dir)
    with _locked(sweep_dir):
        with open(sweep_dir / INDEX_JSONL, "a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp = sweep_dir / f".{INDEX_MD}.{os.getpid()}.tmp"
        tmp.write_text(format_index(read_index(sweep_dir)))
        os.replace(tmp, sweep_dir / INDEX_MD)


def record_exit(status: str, error: BaseException) -> None:
    """Record the end of a job that leaves the process by ``sys.exit`` (``fit``'s one-line errors and interruptions),
    which Hydra's ``on_job_end`` never sees: ``status`` (``failed``, ``interrupted``) and the error go into its
    ``job.json`` and the sweep's index, as ``JobRecorder`` writes them. Nothing where no ``job.json`` was started."""
    if _is_secondary_rank() or not HydraConfig.initialized():
        return
    config = OmegaConf.create({"hydra": HydraConfig.get()})
    run_dir = Path(config.hydra.runtime.output_dir)
    if not (run_dir / JOB_FILE).exists():
        return
    record = JobRecorder._end_record(config, status, error)
    _write_json_atomic(run_dir / JOB_FILE, record)
    # not config.hydra.sweep.dir: read here, its ${now:...} would name a new directory
    sweep_dir = _sweep_dir_of(run_dir) if config.hydra.mode == RunMode.MULTIRUN else None
    if sweep_dir is not None:
        _add_to_index(sweep_dir, run_dir, record)


def _sweep_dir_of(run_dir: Path) -> Path | None:
    """The sweep directory a job's run directory lies in: the nearest folder above it with the sweep's index."""
    return next((d for d in Path(run_dir).absolute().parents if (d / INDEX_JSONL).exists()), None)


def record_resumed(run_dir: str | Path) -> None:
    """Record that a resumed run finished: the ``job.json`` of its first launch (left ``interrupted``, ``failed``, or
    ``running`` by a kill) says ``completed``, and lists the resume under ``resumes`` (the resume command's own run
    directory, the status and error it replaces); a job of a sweep adds that record to the sweep's index. A run
    already ``completed`` (resuming it changes nothing) and a run without ``job.json`` are left alone."""
    run_dir = Path(run_dir).absolute()
    record = _read_json(run_dir / JOB_FILE)
    if _is_secondary_rank() or record is None or record.get("status") == "completed":
        return
    ended = time.time()
    record["resumes"] = [*record.get("resumes", []), {
        "run_dir": str(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None, "ended": ended,
        "replaced_status": record.get("status"), "replaced_error": record.get("error")}]
    record.pop("traceback", None)
    record.pop("error", None)
    record.update(status="completed", ended=ended)
    _write_json_atomic(run_dir / JOB_FILE, record)
    if record.get("num") is None:
        return
    sweep_dir = _sweep_dir_of(run_dir)
    if sweep_dir is not None and any(r.get("num") == record["num"] and (sweep_dir / r["run_dir"]).absolute() == run_dir
                                     for r in read_index(sweep_dir)):
        _add_to_index(sweep_dir, run_dir, record)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def read_index(sweep_dir: str | Path) -> list[dict]:
    """The latest line of ``index.jsonl`` for each job, by job number."""
    latest: dict[Any, dict] = {}
    path = Path(sweep_dir) / INDEX_JSONL
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                latest[record["num"]] = record
    return [latest[k] for k in sorted(latest, key=lambda n: (n is None, n))]


def format_index(records: list[dict]) -> str:
    lines = ["# Sweep index", "", "| job | status | run dir | overrides | error |", "|---|---|---|---|---|"]
    for r in records:
        overrides = " ".join(f"`{o}`" for o in r["overrides"])
        error = (r.get("error") or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r['num']} | {r['status']} | {r['run_dir']} | {overrides} | {error} |")
    return "\n".join(lines) + "\n"


@dataclass
class Run:
    """One run directory of a sweep, as found on disk; or a job of the sweep that has none (``started=False``)."""

    path: Path | None
    overrides: list[str]
    job: dict | None = None  # job.json
    summary: dict | None = None  # summary.json (present once a run has finished)
    metrics: list[dict] = field(default_factory=list)  # metrics.jsonl
    started: bool = True
    job_num: int | None = None  # a job not started: its number in the sweep

    @property
    def num(self) -> int | None:
        return self.job.get("num") if self.job else self.job_num

    @property
    def status(self) -> str:
        """``completed`` (has ``summary.json``), ``failed`` (the job raised), ``incomplete`` or ``not started``."""
        if not self.started:
            return "not started"
        if self.summary is not None:
            return "completed"
        if self.job is not None and self.job.get("status") == "failed":
            return "failed"
        return "incomplete"

    @property
    def error(self) -> str | None:
        return self.job.get("error") if self.job else None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or cut short by an interruption
        return None


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:  # a last line cut short
                break
    return records


def read_runs(sweep_dir: str | Path) -> list[Run]:
    """Every run directory under ``sweep_dir`` (any depth), ordered by job number then path."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep_dir={sweep_dir}: no such directory")
    runs = []
    for overrides_file in sweep_dir.rglob(".hydra/overrides.yaml"):
        path = overrides_file.parent.parent
        overrides = [str(o) for o in OmegaConf.to_container(OmegaConf.load(overrides_file))]
        runs.append(Run(path=path, overrides=overrides, job=_read_json(path / JOB_FILE),
                        summary=_read_json(path / "summary.json"), metrics=_read_jsonl(path / "metrics.jsonl")))
    return sorted(runs, key=lambda r: (r.num is None, r.num if r.num is not None else 0, str(r.path)))


def expected_overrides(sweep_dir: str | Path) -> list[list[str]] | None:
    """The overrides of every job of a sweep, in job order, from its ``multirun.yaml`` (expanded as Hydra's basic
    sweeper expands them); None where that cannot be known (no ``multirun.yaml``, another sweeper, sweeper params)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the expansion the sweep itself ran
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(sweep_dir) / "multirun.yaml"
    if not path.exists():
        return None
    try:
        config = OmegaConf.load(path)
        sweeper = OmegaConf.select(config, "hydra.sweeper", default=None)
        if sweeper is None or not str(sweeper.get("_target_", "")).endswith(".BasicSweeper") or sweeper.get("params"):
            return None
        task = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=[])]
        return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(task), None)[0]
    except Exception:  # a sweep this code cannot expand: report what is on disk
        return None


def not_started(sweep_dir: str | Path, runs: list[Run]) -> list[Run]:
    """The jobs of the sweep in ``sweep_dir`` that have no run directory among ``runs`` (the sweep stopped before
    them, or their launcher has not run them yet); none where the sweep's jobs cannot be known, or where some run
    matches none of them (then the expansion is not the sweep's)."""
    expected = expected_overrides(sweep_dir)
    if expected is None:
        return []
    keys = [frozenset(e) for e in expected]
    found = {frozenset(r.overrides) for r in runs}
    if not found <= set(keys):
        return []
    return [Run(path=None, overrides=list(e), started=False, job_num=num)
            for num, (e, key) in enumerate(zip(expected, keys)) if key not in found]
