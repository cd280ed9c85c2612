"""What keeps a CLI command safe around the paths it writes: one-line errors, no lost stdout.

Contract:
- ``refuse_relative(flag, path)`` raises ``OutputError`` for a relative local ``path`` in a
  driver started by ``ray job submit`` (``curate.run_checks.under_ray_job``): it would be
  written into the job's temporary working directory, which Ray deletes.
- ``outputs_of(args)``: the paths a parsed command writes to; ``output_of(err, outputs)`` is the one of ``outputs`` an ``OSError`` is about (a local file
  name at, under or above it; an object-store error naming its bucket), else None.
- ``write_error(output, err)`` is the line ``error: cannot write OUTPUT: REASON`` (credentials
  masked, a hint after an S3 credential error).
- ``check_sample_folder(folder)`` raises ``OutputError`` for a non-empty folder that holds no
  earlier sample (``expected.json``): ``refinery curate sample`` never writes over user files.
- ``PipeSafe(stream)`` wraps stdout: after a ``BrokenPipeError`` (the reader, ``| head``, is
  gone) what follows goes to ``os.devnull`` and the command goes on.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from curate.layout import OutputError
from curate.s3 import masked


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def refuse_relative(flag: str, path: str) -> None:
    """Under ``ray job submit``, a relative path would be written into the job's temporary working dir."""
    from curate.run_checks import under_ray_job

    local = path[len("file://"):] if path.startswith("file://") else path
    if is_local(path) and under_ray_job() and not os.path.isabs(os.path.expanduser(local)):
        raise OutputError(
            f"{flag} {path[:200]} is relative: under `ray job submit` it would be written into the job's temporary "
            f"working directory ({os.getcwd()}), which Ray deletes; give an absolute path or a URI (s3://…)"
        )


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def output_of(err: OSError, outputs: list[str]) -> str | None:
    """The output ``err`` is about: a local path at, under or above it, or an error naming its bucket."""
    for output in outputs:
        if is_local(output):
            root = os.path.realpath(os.path.expanduser(output[len("file://"):] if output.startswith("file://") else output))
            names = [os.fsdecode(f) for f in (err.filename, err.filename2) if isinstance(f, (str, bytes, os.PathLike))]
            if any(_related(os.path.realpath(os.fsdecode(f)), root) for f in names):
                return output
        elif output.startswith("s3://"):
            bucket = output[len("s3://"):].split("/", 1)[0].split("?", 1)[0]
            if f"'{bucket}'" in str(err) or f"{bucket}/" in str(err):
                return output
    return None


_CREDENTIAL_HINT = re.compile(r"access.?denied|forbidden|invalid.?access.?key|signature|credential|expired.?token", re.I)


def write_error(output: str, err: OSError) -> str:
    shown = masked(output.split("?", 1)[0])[:200]
    if err.strerror and err.filename is not None:
        reason = f"{err.strerror} ({os.fsdecode(err.filename)[:200]})"
    else:
        reason = " ".join(str(err).split())[:300]
    if _CREDENTIAL_HINT.search(str(err)):
        reason += ("; check the S3 credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the "
                   "instance role, on every node) and that they may write this prefix")
    return f"error: cannot write {shown}: {masked(reason)}"


class PipeSafe:
    """A stdout that, once its reader is gone (``BrokenPipeError``), sends what follows to ``os.devnull``."""

    def __init__(self, stream):
        self.stream = stream

    def _lost(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self.stream.fileno())  # so that the interpreter's last flush succeeds too
        except (AttributeError, OSError, ValueError):
            self.stream = open(os.devnull, "w")
        finally:
            os.close(devnull)

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._lost()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._lost()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def outputs_of(args: argparse.Namespace) -> list[str]:
    """The paths a command writes to."""
    if args.command == "fetch":
        return [args.out]
    if args.command == "retune":
        return [args.output or args.shards]
    return [args.output] if getattr(args, "output", None) else []


def check_sample_folder(folder: Path) -> None:
    """Refuse a non-empty ``folder`` that is not an earlier sample: its files are not the sample's to replace."""
    from curate.sample import MANIFEST_NAME, SampleManifest

    if not folder.is_dir() or not any(folder.iterdir()):
        return
    try:
        SampleManifest.load(folder / MANIFEST_NAME)
    except (OSError, ValueError, KeyError, TypeError):
        raise OutputError(f"{folder} is not empty and holds no earlier sample ({MANIFEST_NAME}); "
                          "choose a new or empty folder") from None


def run_command(func, args: argparse.Namespace, user_errors: tuple[type[BaseException], ...],
                interrupted: str | None = None) -> int:
    """A package CLI's ``main`` body: ``func(args)`` with stdout made pipe-safe; an error in
    ``user_errors`` is one masked ``error: …`` line on stderr and exit 2; Ctrl-C prints
    ``interrupted`` (when given) and exits 130."""
    from curate.s3 import masked

    stdout, sys.stdout = sys.stdout, PipeSafe(sys.stdout)
    try:
        return func(args)
    except user_errors as err:
        print(masked(f"error: {err}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if interrupted:
            print(interrupted, file=sys.stderr)
        return 130
    finally:
        sys.stdout = stdout
