"""Reading one image file safely: confined, regular files only, under a byte budget.

Contract: ``read_bytes(ref, max_bytes, roots, backoff)`` returns the whole file at ``ref`` or
raises ``ReadError``:
- ``http(s)`` references are ``Refused(url_not_fetched)`` (downloading is img2dataset's job);
- with ``roots``, the reference must lie inside one of them once symlinks and ``..`` are
  resolved (``fsutil.within``), else ``Refused(path_not_allowed)``, never opened;
- only a regular file is opened: a FIFO, device, socket or folder (or a link to one), a
  dangling link or a link loop is a ``ReadError`` saying which, a name that is not valid UTF-8
  ``Refused(bad_name)``, a folder that cannot be listed ``Refused(unreadable_entry)``, never
  opened for reading (a local file is opened non-blocking without following links, and
  checked to be the regular file that was stat'ed);
- a file whose size (stat, or ``FileInfo.size`` on an object store) is over ``max_bytes`` is
  ``Refused(too_large)`` before reading, and at most ``max_bytes + 1`` bytes are ever read,
  so a size that lied (0 for a ``/proc`` file) ends as ``too_large`` too;
- a transient failure (network, throttling: ``curate.readers.retry.is_transient``) is tried
  again with ``backoff``; one that outlasts it, and any other failure, is a ``ReadError`` with
  the message (not found and permission errors are never retried).
``read_prefix(ref, max_bytes, roots, backoff)`` reads the same way but returns the first
``max_bytes`` bytes of a larger file (and says it was cut) instead of refusing it (sidecars).
``Refused`` is a ``ReadError`` whose ``reason`` is the row's reason code; ``reason_of(err)``
gives it (None for a plain ``ReadError``: ``read_error``).
"""
from __future__ import annotations

import errno
import os
import stat

import pyarrow as pa
import pyarrow.fs as pafs

from curate.config import InputConfig
from curate.readers.contract import ReadError
from curate.readers.fsutil import IMG2DATASET_HINT, is_download_url, real_path, redacted, resolve, within
from curate.readers.retry import Backoff, with_retries
from curate.reasons import Reason


class Refused(ReadError):
    """Bytes deliberately not read; ``reason`` is the row's reason code."""

    def __init__(self, reason: Reason, message: str):
        super().__init__(message)
        self.reason = reason


def reason_of(err: ReadError) -> str | None:
    """The reason code a ``ReadError`` gives its row (None: ``read_error``)."""
    return str(err.reason) if isinstance(err, Refused) else None


def _capped(read, expected: int, cap: int) -> bytes:
    """Bytes from ``read(n)`` until EOF or ``cap`` bytes, asking first for ``expected + 1``."""
    parts, total = [], 0
    while total < cap:
        chunk = read(min(max(expected + 1 - total, 1 << 16), cap - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


def _too_large(ref: str, size: int | str, max_bytes: int) -> Refused:
    return Refused(Reason.TOO_LARGE, f"{ref}: {size} bytes, over the budget input.max_file_bytes={max_bytes}; not read")


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _missing(ref: str, path: str, err: OSError) -> ReadError:
    if err.errno == errno.ELOOP:
        return ReadError(f"{ref}: symlink loop; not read")
    if os.path.islink(path):
        return ReadError(f"{ref}: dangling symlink to {os.readlink(path)}; not read")
    if "\\x" in os.path.basename(path) and _undecodable_name(path):
        return Refused(Reason.BAD_NAME, f"{ref}: the name is not valid UTF-8 (shown with \\xNN escapes); rename it to read it")
    return ReadError(f"cannot read {ref}: {err}")


def _undecodable_name(path: str) -> bool:
    """Whether ``path`` is the backslash-escaped spelling of a file name that is not UTF-8."""
    folder, name = os.path.split(path)
    try:
        names = os.listdir(os.fsencode(folder))
    except OSError:
        return False
    return any(n.decode("utf-8", "backslashreplace") == name for n in names)


def _folder(ref: str, path: str, real: str) -> ReadError:
    """Why a folder is not an image: a link to one, one, or one that could not be listed."""
    if os.path.islink(path):
        return ReadError(f"{ref}: a symlink to a folder ({real}), which is not followed; not read")
    try:
        with os.scandir(real):
            pass
    except OSError as err:
        message = f"{ref}: a folder that could not be listed, so its files could not be read: {err}"
        return Refused(Reason.UNREADABLE_ENTRY, message)
    return ReadError(f"{ref}: a folder, not a regular file; not opened")


def _read_local(ref: str, path: str, max_bytes: int, backoff: Backoff, prefix: bool = False) -> bytes:
    real = real_path(path)  # what ``within`` checked; opened without following links again
    try:
        before = with_retries(lambda: os.stat(real), backoff)
    except OSError as err:
        raise _missing(ref, path, err) from err
    if stat.S_ISDIR(before.st_mode):
        raise _folder(ref, path, real)
    if not stat.S_ISREG(before.st_mode):
        raise ReadError(f"{ref}: {_kind(before.st_mode)}, not a regular file; not opened")
    if before.st_size > max_bytes and not prefix:
        raise _too_large(ref, before.st_size, max_bytes)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = with_retries(lambda: os.open(real, flags), backoff)
    except OSError as err:
        raise ReadError(f"cannot read {ref}: {err}") from err
    with open(fd, "rb", buffering=0) as file:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise ReadError(f"{ref}: replaced while being opened; not read")

        def whole() -> bytes:
            file.seek(0)
            return _capped(file.read, before.st_size, max_bytes + 1)

        try:
            data = with_retries(whole, backoff)
        except OSError as err:
            raise ReadError(f"cannot read {ref}: {err}") from err
    if len(data) > max_bytes and not prefix:
        raise _too_large(ref, f"more than {max_bytes}", max_bytes)
    return data


def _fetch_remote(ref: str, fs: pafs.FileSystem, path: str, max_bytes: int, prefix: bool = False) -> bytes:
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise ReadError(f"cannot read {ref}: not found")
    if info.type != pafs.FileType.File:
        raise ReadError(f"{ref}: {'a folder' if info.type == pafs.FileType.Directory else 'not a regular file'}; not opened")
    if info.size is not None and info.size > max_bytes and not prefix:
        raise _too_large(ref, info.size, max_bytes)
    with fs.open_input_stream(path, compression=None) as stream:
        return _capped(stream.read, info.size or 0, max_bytes + 1)


def _read_remote(ref: str, fs: pafs.FileSystem, path: str, max_bytes: int, backoff: Backoff, prefix: bool = False) -> bytes:
    try:
        data = with_retries(lambda: _fetch_remote(ref, fs, path, max_bytes, prefix), backoff)
    except (OSError, pa.ArrowException) as err:
        if isinstance(err, ReadError):
            raise
        raise ReadError(f"cannot read {ref}: {err}") from err
    if len(data) > max_bytes and not prefix:
        raise _too_large(ref, f"more than {max_bytes}", max_bytes)
    return data


def read_prefix(ref: str, max_bytes: int, roots: tuple[str, ...] | None, backoff: Backoff) -> tuple[bytes, bool]:
    """The first ``max_bytes`` bytes of the regular file at ``ref`` and whether it holds more;
    the same confinement and refusals as ``read_bytes``, but a larger file is cut, not refused."""
    if is_download_url(ref) or (roots is not None and not within(ref, roots)):
        read_bytes(ref, max_bytes, roots, backoff)  # raises the same Refused
    fs, path = resolve(ref)
    if isinstance(fs, pafs.LocalFileSystem):
        data = _read_local(ref, path, max_bytes, backoff, prefix=True)
    else:
        data = _read_remote(ref, fs, path, max_bytes, backoff, prefix=True)
    return data[:max_bytes], len(data) > max_bytes


DEFAULT_MAX_BYTES: int = InputConfig.model_fields["max_file_bytes"].default
DEFAULT_BACKOFF = Backoff.of(InputConfig())


def read_bytes(
    ref: str, max_bytes: int = DEFAULT_MAX_BYTES, roots: tuple[str, ...] | None = None, backoff: Backoff = DEFAULT_BACKOFF
) -> bytes:
    """The whole content of the regular file at ``ref`` (see module doc)."""
    if is_download_url(ref):
        shown = redacted(ref)[:200]
        raise Refused(Reason.URL_NOT_FETCHED, f"{shown}: an http(s) URL, not downloaded; download the images first "
                      f"(e.g. {IMG2DATASET_HINT}) and curate the tars")
    if roots is not None and not within(ref, roots):
        shown = ", ".join(roots) or "(none)"
        message = f"{ref}: resolves outside the allowed roots ({shown}; add more with input.allowed_roots); not read"
        raise Refused(Reason.PATH_NOT_ALLOWED, message)
    fs, path = resolve(ref)
    if isinstance(fs, pafs.LocalFileSystem):
        return _read_local(ref, path, max_bytes, backoff)
    return _read_remote(ref, fs, path, max_bytes, backoff)
