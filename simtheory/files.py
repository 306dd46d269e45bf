"""Files: atomic writes, provenance, and claims on work that several processes may share.

* :func:`atomic_write_bytes` / :func:`atomic_write_text`: a file is either the old one or the new one,
  never partial, also across a power loss; a write that fails (no space, no permission, a read-only
  directory) raises :class:`WriteError` naming the path and the cause, and leaves nothing under the final
  name that was not there before.
* :func:`provenance`: versions, platform and git commit, for every sidecar.
* :func:`claim`: an exclusive, non-blocking claim on a piece of work (a sweep cell, a diffusion run
  directory) held by this process: an OS file lock (``filelock``), released when the process ends however
  it ends (a SIGKILL too), so a dead process's claim is recovered by the next one that asks. The holder's
  PID and host are written beside the lock for the messages of the processes that wait.

Several processes may write into one directory at once: each writer's temporary file carries its host
and PID, and only the temporaries of a dead process on this host (or older than a day, from another host)
are removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HOST = socket.gethostname()
STALE_TEMPORARY_S = 86_400  # a temporary file of another host is taken for abandoned after a day


class WriteError(OSError):
    """A file could not be written (the message names the path and the cause); nothing partial is left
    under the file's name, and rerunning resumes once the cause is fixed."""


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it sets it: done once, at import (not racing other threads)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True


def _remove_abandoned(path: Path) -> None:
    """Temporaries of ``path`` left by a writer that died: same host and a dead PID, or older than a day."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        parts = tmp.name[len(path.name) + 2 : -len(".tmp")].split(".")
        try:
            host, pid = ".".join(parts[:-2]), int(parts[-2])
        except (ValueError, IndexError):  # a name from before hosts and PIDs were written: by age
            host, pid = None, None
        try:
            old = time.time() - tmp.stat().st_mtime > STALE_TEMPORARY_S
        except FileNotFoundError:  # its writer just finished or cleaned up
            continue
        if (host == HOST and pid is not None and not _alive(pid)) or old:
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file, ``fsync`` and ``os.replace``, then ``fsync`` the
    directory: the file is either the old one or the new one, never partial, also across a power loss.

    The file gets the mode the user's umask gives a new file (0644 by default), not the temporary file's
    0600. Raises :class:`WriteError` (naming the path and the cause) when the file system refuses; the
    temporary file is removed then, and the path keeps what it held."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(path)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{HOST}.{os.getpid()}.", suffix=".tmp"
        )
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise
    _fsync_dir(path.parent)
    return path


def _write_error(path: Path, exc: OSError) -> WriteError:
    name = errno.errorcode.get(exc.errno, "") if exc.errno else ""
    return WriteError(
        exc.errno,
        f"cannot write {path}: {exc.strerror or exc}{f' ({name})' if name else ''}; nothing partial was left "
        "under that name -- fix the cause (space, permissions) and rerun to resume",
    )


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory handles (Windows)
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def provenance() -> dict:
    """Python, NumPy and (where imported) SymPy, SciPy and torch versions, the platform, simtheory's version
    and its git commit."""
    import sys

    import numpy

    info = {"python": sys.version.split()[0], "numpy": numpy.__version__, "platform": platform.platform()}
    for mod in ("sympy", "scipy", "torch"):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, "__version__", "?")
    from . import __version__

    info["simtheory"] = __version__
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        if sha.returncode == 0:
            info["git_sha"] = sha.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


class Claim:
    """An exclusive claim on ``path`` (a lock file ``path.lock`` and its holder's record ``path.owner``).

    :meth:`acquire` takes it without waiting (True if taken); :meth:`release` gives it back. The OS releases
    it when the process dies, so a claim never outlives its holder. :meth:`holder` says who holds it."""

    def __init__(self, path):
        from filelock import FileLock

        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.owner_path = self.path.with_name(self.path.name + ".owner")
        self._lock = FileLock(str(self.lock_path), thread_local=False)

    def acquire(self) -> bool:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        except OSError as exc:
            raise _write_error(self.lock_path, exc) from None
        atomic_write_text(
            self.owner_path, json.dumps({"pid": os.getpid(), "host": HOST, "since": time.time()})
        )
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            self.owner_path.unlink(missing_ok=True)
            self._lock.release()

    def holder(self) -> str:
        """``"PID N on HOST"`` of the claim's holder (as it wrote itself), or ``"another process"``."""
        try:
            rec = json.loads(self.owner_path.read_text())
            return f"PID {rec['pid']} on {rec['host']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim(path) -> Claim:
    """A :class:`Claim` on ``path`` (not yet taken: call :meth:`Claim.acquire`)."""
    return Claim(path)
