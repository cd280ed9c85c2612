"""A name that is not UTF-8 and a subfolder that cannot be listed, through a whole run.

The permission check is real: the run happens in a child process whose effective user is
``nobody`` when the tests run as root (root reads a ``chmod 000`` folder; nobody does not).
Each odd entry is a row with its own reason, named safely, and the other images are kept.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import curate
from reader_inputs import photo

NOBODY = 65534
CHILD = textwrap.dedent(
    """
    import json, os, sys
    import curate.pipeline, curate.config, curate.report  # everything imported before the user changes
    from PIL import Image
    Image.init()
    config = curate.config.load_config(None)
    if os.geteuid() == 0:
        os.setegid(%d)
        os.seteuid(%d)
    result = curate.pipeline.run(sys.argv[1], sys.argv[2], config)
    print(json.dumps(result.manifest["reasons"]))
    """
    % (NOBODY, NOBODY)
)


@pytest.fixture
def world_readable_tmp():
    """A temporary folder the unprivileged child can reach (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="refinery-entries-"))
    path.chmod(0o755)
    yield path
    for folder, dirs, _ in os.walk(path):
        for d in dirs:
            os.chmod(os.path.join(folder, d), 0o755)
    shutil.rmtree(path)


def _reachable_by_others(path: Path) -> bool:
    """Whether an unprivileged user can read the package (a checkout under a mode-700 folder cannot)."""
    return all(p.stat().st_mode & 0o005 == 0o005 for p in [path, *path.parents])


@pytest.mark.skipif(not _reachable_by_others(Path(curate.__file__).parent),
                    reason="the checkout is not readable by other users, so the unprivileged child cannot import it")
def test_odd_entries_are_rows_with_a_reason_and_the_others_are_kept(world_readable_tmp):
    root, out = world_readable_tmp / "in", world_readable_tmp / "out"
    (root / "sub").mkdir(parents=True)
    (root / "locked").mkdir()
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    (root / "cat.jpg").write_bytes(photo("chelsea", side=600))
    (root / "sub" / "cup.png").write_bytes(photo("coffee", "PNG", side=600))
    (root / "locked" / "hidden.jpg").write_bytes(photo("rocket", side=600))
    with open(os.path.join(os.fsencode(root), b"\xff\xfe.jpg"), "wb") as f:
        f.write(photo("astronaut", side=600))
    os.chmod(root / "locked", 0)
    for folder in (root, root / "sub"):
        folder.chmod(0o755)
    assert stat.S_IMODE(os.stat(root / "locked").st_mode) == 0

    child = subprocess.run([sys.executable, "-c", CHILD, str(root), str(out / "curated")],
                           capture_output=True, text=True, timeout=300, env={**os.environ, "REFINERY_PROGRESS": "0"})
    assert child.returncode == 0, child.stderr[-2000:]
    assert json.loads(child.stdout.strip().splitlines()[-1]) == {"bad_name": 1, "unreadable_entry": 1}

    rows = curate.open(str(out / "curated")).read(["source_uri", "keep", "reasons", "error_message"]).to_pylist()
    by_name = {os.path.relpath(r["source_uri"], root): r for r in rows}
    assert sorted(by_name) == ["\\xff\\xfe.jpg", "cat.jpg", "locked", "sub/cup.png"]
    assert by_name["cat.jpg"]["keep"] and by_name["sub/cup.png"]["keep"]
    bad = by_name["\\xff\\xfe.jpg"]
    assert not bad["keep"] and bad["reasons"] == ["bad_name"]
    assert "not valid UTF-8" in bad["error_message"] and "\\xff\\xfe.jpg" in bad["error_message"]
    locked = by_name["locked"]
    assert not locked["keep"] and locked["reasons"] == ["unreadable_entry"]
    assert "could not be listed" in locked["error_message"] and "Permission denied" in locked["error_message"]
    assert "hidden.jpg" not in json.dumps(rows)  # the locked folder's content was never seen
