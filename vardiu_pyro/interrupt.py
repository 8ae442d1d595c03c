"""Stopping a run on request: SIGINT (Ctrl-C) and SIGTERM (``kill``, schedulers, pre-emption)
end the training loop at the next clean point, after a checkpoint, instead of wherever they land."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from .resume import resume_command

__all__ = ["StopSignals", "TrainingInterrupted"]


class StopSignals:
    """A context in which SIGINT and SIGTERM only record that a stop was asked for (``signal``).

    The training loop reads ``signal`` after each iteration, checkpoints and stops. A second
    SIGINT interrupts at once (``KeyboardInterrupt``), for a user who will not wait. Outside the
    main thread (where Python delivers no signals) the context does nothing. A signal the process
    was told to ignore (``SIG_IGN``: e.g. SIGINT of a job that a non-interactive shell started in
    the background) stays ignored. The previous handlers come back on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; the message says how to resume."""

    def __init__(self, signum: int, iteration: int, checkpoint: Path, run_dir: Path):
        self.signum, self.iteration, self.checkpoint, self.run_dir = signum, iteration, Path(checkpoint), Path(run_dir)
        super().__init__(f"stopped by {signal.Signals(signum).name} at iteration {iteration}; checkpoint written to "
                         f"{self.checkpoint}. Resume with:\n    {resume_command(self.run_dir)}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by that signal (130, 143)."""
        return 128 + self.signum
