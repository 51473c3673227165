"""The one way the suite runs a child process: its output drained while it runs.

A pipe holds 64 KiB. A child that writes more than that to a pipe nobody reads
blocks in ``write``, and a server blocked in its access log stops answering:
``make test`` once stood still for 11 minutes that way. So every child started
here has its stdout and stderr read continuously by a thread of its own, into a
buffer the test can look at while the child runs and after it stops. Every wait
takes a deadline, and leaving the ``with`` block always reaps the child and
joins its readers, whatever happened inside it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO, Self

_CHUNK = 65536


class _Drain:
    """Reads one pipe to its end on a daemon thread; the bytes stay readable."""

    def __init__(self, pipe: IO[bytes], name: str) -> None:
        self._pipe = pipe
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self._pipe.fileno()
        try:
            while chunk := os.read(fd, _CHUNK):
                with self._lock:
                    self._chunks.append(chunk)
        except OSError:  # closed under us by close(): nothing more to read
            pass

    def data(self) -> bytes:
        with self._lock:
            return b"".join(self._chunks)

    def close(self, timeout_s: float = 10) -> None:
        # The child has exited: the writer's end is closed and the reader ends
        # at EOF. A grandchild that kept the pipe open must not hold us, so the
        # join has a deadline and the pipe is closed either way.
        self._thread.join(timeout_s)
        self._pipe.close()


class Child:
    """A child process, started on ``__enter__`` (or ``start``), always reaped on exit.

    ``stdout`` and ``stderr`` hold what it wrote so far, as text; with
    ``merge_stderr`` (the default) both streams go to ``stdout``, in order.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        merge_stderr: bool = True,
        stdin: int | None = subprocess.DEVNULL,
        **popen: object,
    ) -> None:
        self.args = list(args)
        self._kwargs: dict[str, object] = {"env": env, "cwd": cwd, "stdin": stdin, **popen}
        self._merge = merge_stderr
        self.proc: subprocess.Popen[bytes] | None = None
        self._drains: list[_Drain] = []

    def start(self) -> Self:
        self.proc = subprocess.Popen(  # type: ignore[call-overload]
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if self._merge else subprocess.PIPE,
            **self._kwargs,
        )
        assert self.proc is not None and self.proc.stdout is not None
        name = os.path.basename(self.args[0])
        self._drains = [_Drain(self.proc.stdout, f"drain {name} stdout")]
        if not self._merge:
            assert self.proc.stderr is not None
            self._drains.append(_Drain(self.proc.stderr, f"drain {name} stderr"))
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def stdout(self) -> str:
        return self._drains[0].data().decode(errors="replace") if self._drains else ""

    @property
    def stderr(self) -> str:
        if self._merge or len(self._drains) < 2:
            return ""
        return self._drains[1].data().decode(errors="replace")

    @property
    def output(self) -> str:
        """Everything it wrote so far: stdout, then stderr if they were kept apart."""
        return self.stdout + self.stderr

    def send_signal(self, signum: int) -> None:
        assert self.proc is not None, "not started"
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        """Its exit status; ``subprocess.TimeoutExpired`` if it is still running after the deadline."""
        assert self.proc is not None, "not started"
        rc = self.proc.wait(timeout_s)
        self._close()
        return rc

    def _close(self) -> None:
        assert self.proc is not None
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        for drain in self._drains:
            drain.close()

    def wait_for(
        self, condition: Callable[[], object], *, what: str, timeout_s: float = 60
    ) -> None:
        """Poll ``condition`` until true; fail naming ``what`` and the child's output tail
        if the deadline passes or the child exits first."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.returncode is not None and not condition():
                raise AssertionError(
                    f"{self.args[0]} exited ({self.returncode}) before {what}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s} s waiting for {what}:\n{self.tail()}"
                )
            time.sleep(0.05)

    def wait_for_output(self, pattern: str, *, timeout_s: float = 60) -> re.Match[str]:
        """The first match of ``pattern`` in what it wrote, once it appears."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = re.search(pattern, self.output)
            if match:
                found.append(match)
            return match is not None

        self.wait_for(seen, what=f"output matching {pattern!r}", timeout_s=timeout_s)
        return found[0]

    def stop(self, *, timeout_s: float = 30, signum: int = signal.SIGTERM) -> int:
        """Signal it (SIGTERM by default), wait up to ``timeout_s``, then SIGKILL. Its exit status;
        ``subprocess.TimeoutExpired`` (once it is killed and reaped) if it outlived the deadline."""
        if self.proc is None:
            return 0
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signum)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(30)
                    raise
            return self.proc.wait(30)
        finally:
            self._close()

    def tail(self, chars: int = 3000) -> str:
        return self.output[-chars:]
