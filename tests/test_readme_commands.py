"""The README's commands, pasted as they are, in the order the guide gives them.

Every ```bash, ```python, ```sql and ```yaml block of the user's guide runs in one scratch
folder after `refinery curate demo --output demo-out` (what `make demo` does), except the
blocks listed in ``NOT_PASTED`` (placeholders, a cluster, a browser, `make` itself), which
the suite covers elsewhere. A block that fails to run fails this test with its text.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BIN = Path(sys.executable).parent
# First line of each block that is not pasted here, and why.
NOT_PASTED = {
    "make demo": "the two commands: what `make demo` / `make test` run",
    "refinery curate run --input PATH_OR_URI": "synopsis with placeholders",
    "pip install -e .": "a Ray cluster (tests/test_job_submit.py submits a real job)",
    "make report-shot": "needs Chromium (tests/test_report_parts.py covers the script)",
    "dedup: {index: /data/dedup-index}": "a fragment of a config (tests/test_incremental.py)",
    "REFINERY_TOKEN=$(cat alice.token) refinery annotate review": "an interactive terminal app "
                                                                   "(tests/test_annotate_app.py drives it headless)",
    "refinery train fit --config trainer/configs/kolors-concept.yaml": "SDXL-size models and their weights on GPUs",
    "hf download THUDM/cogvlm-chat-hf": "real VLM weights and a GPU cluster (no hub is reachable; tests/test_caption_cli.py "
                                        "checks the one-line refusal without weights)",
}
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    guide = text[text.index("## User's guide") : text.index("\n## ", text.index("## User's guide") + 5)]
    found = []
    for lang, body in FENCE.findall(guide):
        first = body.strip().splitlines()[0]
        if lang in {"bash", "python", "sql", "yaml"} and not any(first.startswith(k) for k in NOT_PASTED):
            found.append((lang, body))
    return found


def run_block(lang: str, body: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    if lang == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", body]
    elif lang == "python":
        cmd = [sys.executable, "-c", body]
    elif lang == "sql":
        cmd = [sys.executable, "-c", "import duckdb, sys; print(duckdb.sql(sys.stdin.read()).fetchall())"]
    else:
        cmd = [sys.executable, "-c", "import sys, yaml; from curate.config import config_from; config_from(yaml.safe_load(sys.stdin))"]
    stdin = body if lang in {"sql", "yaml"} else None
    return subprocess.run(cmd, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=300)


def test_the_guide_has_the_blocks_it_should():
    langs = [lang for lang, _ in blocks()]
    assert langs.count("bash") >= 6 and langs.count("python") >= 4 and "sql" in langs and "yaml" in langs


@pytest.mark.ray  # the reading example's out.to_ray(...) starts a local Ray
def test_readme_commands_work_when_pasted(tmp_path):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "REFINERY_PROGRESS": "0"}
    demo = subprocess.run([str(BIN / "refinery"), "curate", "demo", "--output", "demo-out"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr[-2000:]
    for lang, body in blocks():
        done = run_block(lang, body, tmp_path, env)
        assert done.returncode == 0, f"README block failed ({lang}):\n{body}\n--- stderr:\n{done.stderr[-3000:]}"
