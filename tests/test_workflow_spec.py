"""workflows.spec: a workflow spec file -> a validated, confined WorkflowSpec, or one line naming file:line and key."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from workflows.spec import SpecError, load_spec, redacted_env, resolve_db, resolve_env

REPO = Path(__file__).resolve().parent.parent

BASE = """\
name: nightly
schedule:
  cron: "0 2 * * *"
  timezone: Europe/Berlin
inputs: [incoming]
output: runs
stages:
  - name: curate
    kind: curate
    timeout: 90s
  - name: caption
    kind: caption
"""


def _spec(folder: Path, text: str, name: str = "wf.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _line(text: str, needle: str) -> int:
    """The line where ``needle`` (which may span lines) first starts."""
    return text[: text.index(needle)].count("\n") + 1


def _refused(folder: Path, text: str, needle: str, key: str, message: str, roots_env: str | None = None) -> str:
    """load_spec refuses ``text`` with ``file:line: key: message...``, the line being the one holding ``needle``."""
    path = _spec(folder, text)
    with pytest.raises(SpecError) as caught:
        load_spec(path, roots_env=roots_env)
    got = str(caught.value)
    assert "\n" not in got
    assert got.startswith(f"{path}:{_line(text, needle)}: {key}: "), got
    assert re.search(message, got), got
    return got


def test_the_example_validates_from_a_checkout_without_its_drops(monkeypatch):
    spec = load_spec(REPO / "workflows" / "examples" / "nightly.yaml", roots_env=None)
    examples = REPO / "workflows" / "examples"
    assert spec.name == "nightly" and spec.schedule.cron == ["0 2 * * *"] and spec.schedule.timezone == "Europe/Berlin"
    assert spec.inputs == [str(examples / "demo-out" / "incoming")] and spec.output == str(examples / "demo-out" / "nightly")
    assert [(s.name, s.kind, s.input) for s in spec.stages] == [
        ("curate", "curate", None), ("caption", "caption", "curate"), ("grade", "annotate-import", "caption")]
    assert spec.stage("curate").timeout_s == 7200 and spec.stage("grade").batch_name("nightly", 12) == "nightly-run12"
    assert spec.ray.working_dir == str(examples) and spec.source == examples / "nightly.yaml"
    monkeypatch.setenv("REFINERY_WORKFLOW_DB", "sqlite:////tmp/elsewhere.db")
    assert spec.store_url() == "sqlite:////tmp/elsewhere.db"  # no `store` in the example: the operator's default
    assert redacted_env(spec) == {"OPENAI_API_KEY": "<from $OPENAI_API_KEY>"}


def test_defaults_resolution_and_digest(tmp_path, monkeypatch):
    path = _spec(tmp_path, BASE)
    spec = load_spec(path, roots_env=None)
    assert not (tmp_path / "incoming").exists()  # loading never needs the input (a run lists it)
    assert spec.digest == hashlib.sha256(path.read_bytes()).hexdigest() and spec.source == path.resolve()
    assert spec.inputs == [str(tmp_path / "incoming")] and spec.output == str(tmp_path / "runs")
    curate, caption = spec.stages
    assert (curate.timeout_s, curate.retries, curate.resources.num_cpus, curate.args) == (90.0, 0, 1.0, [])
    assert caption.timeout_s == 3600 and caption.input == "curate" and spec.input_of(caption) is curate
    assert spec.ray.address is None and spec.ray.excludes[:2] == [".git", ".venv"] and spec.ray.head_cpus == 2
    assert spec.config_path(curate) is None
    monkeypatch.setenv("REFINERY_WORKFLOW_DB", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    assert spec.store_url() == "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    with pytest.raises(SpecError, match="has no stage 'nope'"):
        spec.stage("nope")


def test_config_files_and_sqlite_stores_become_absolute(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "curate.yaml").write_text("dedup: {radius: 4}\n")
    text = BASE.replace("    timeout: 90s\n", "    config: cfg/curate.yaml\n") + "store: sqlite:///state/wf.db\n"
    spec = load_spec(_spec(tmp_path, text), roots_env=None)
    assert spec.config_path(spec.stages[0]) == tmp_path / "cfg" / "curate.yaml"
    assert spec.store == f"sqlite:///{tmp_path}/state/wf.db" and spec.store_url() == spec.store
    _refused(tmp_path, BASE.replace("    timeout: 90s\n", "    config: cfg/missing.yaml\n"), "missing.yaml",
             "stages[0].config", "'cfg/missing.yaml' is not a file")


@pytest.mark.parametrize("old, new, needle, key, message", [
    ("    timeout: 90s\n", "    retries: \"2\"\n", "retries", "stages[0].retries", r"valid integer, got '2'$"),
    ("    timeout: 90s\n", "    timout: 30m\n", "timout", "stages[0].timout", "unknown key$"),
    ("    timeout: 90s\n", "    timeout: soon\n", "soon", "stages[0].timeout", "a duration such as 90s"),
    ('  cron: "0 2 * * *"', '  cron: "61 2 * * *"', "61 2", "schedule.cron", "not a cron expression of 5 fields"),
    ('  cron: "0 2 * * *"', '  cron:\n    - "0 2 * * *"\n    - "0 2 * * * 7"', "* 7", "schedule.cron[1]", "5 fields"),
    ("Europe/Berlin", "Europe/Berln", "Berln", "schedule.timezone", "'Europe/Berln' is not a time zone name"),
    ("  - name: caption", "  - name: curate", "name: curate\n    kind: caption", "stages[1].name",
     r"duplicate stage name 'curate' \(also stages\[0\]\)"),
    ("    kind: caption\n", "    kind: caption\n    input: grade\n  - name: grade\n    kind: caption\n", "input: grade",
     "stages[1].input", r"'grade' is stages\[2\], which runs later"),
    ("    kind: caption\n", "    kind: caption\n    input: ghost\n", "input: ghost", "stages[1].input", "no such stage"),
    ("    timeout: 90s\n", "    args: [--verbose, --output=/tmp/elsewhere]\n", "args", "stages[0].args[1]",
     "--output is set by the workflow"),
    ("    kind: caption\n", "    kind: captions\n", "captions", "stages[1].kind", "kind should be one of curate, caption"),
    ("    kind: curate\n", "    kind: caption\n", "kind: caption", "stages[0].kind", "the first stage must be curate"),
    ("    timeout: 90s\n", "    input: caption\n", "input: caption", "stages[0].input", "leave input out"),
    ("name: nightly", "name: Nightly!", "name:", "name", "should match pattern"),
    ("    timeout: 90s\n", "    resources: {num_cpus: 0}\n", "resources", "stages[0].resources.num_cpus", "greater than 0"),
])
def test_a_bad_value_names_its_line_and_key(tmp_path, old, new, needle, key, message):
    assert old in BASE
    _refused(tmp_path, BASE.replace(old, new), needle, key, message)


def test_a_missing_key_names_the_enclosing_mapping(tmp_path):
    text = BASE.replace("output: runs\n", "")
    path = _spec(tmp_path, text)
    with pytest.raises(SpecError, match=rf"^{re.escape(str(path))}:1: output: required key missing$"):
        load_spec(path, roots_env=None)
    _refused(tmp_path, BASE.replace("  - name: caption\n", "  - nam: caption\n"), "nam: caption", "stages[1].name",
             r"required key missing \(\+1 more\)$")  # and nam is unknown
    _refused(tmp_path, BASE.replace("    kind: caption\n", ""), "name: caption", "stages[1].kind", "kind should be one of")


def test_yaml_problems_name_their_line(tmp_path):
    dup = BASE + "output: again\n"
    path = _spec(tmp_path, dup)
    with pytest.raises(SpecError, match=rf"^{re.escape(str(path))}:{_line(dup, 'again')}: duplicate key 'output'"):
        load_spec(path, roots_env=None)
    alias = BASE.replace("inputs: [incoming]", "inputs: &in [incoming]\nroots: *in")
    with pytest.raises(SpecError, match=r":5: anchors and aliases"):
        load_spec(_spec(tmp_path, alias), roots_env=None)
    with pytest.raises(SpecError, match=r":1: a workflow spec is a mapping"):
        load_spec(_spec(tmp_path, "- just\n- a list\n"), roots_env=None)
    _refused(tmp_path, BASE + "digest: abc\n", "digest", "digest", r"unknown key \(set by refinery\)")


def test_secrets_stay_out_of_the_spec_and_out_of_messages(tmp_path, monkeypatch):
    secret = "hf_s3cr3tVALUE123"
    text = BASE + f"ray:\n  env:\n    LOG_LEVEL: debug\n    HF_TOKEN: {secret}\n"
    got = _refused(tmp_path, text, "HF_TOKEN", "ray.env.HF_TOKEN", r"put secrets in the environment: \{from_env: HF_TOKEN\}")
    assert secret not in got
    got = _refused(tmp_path, BASE + "ray:\n  env:\n    DEBUG: 12345\n", "DEBUG", "ray.env.DEBUG",
                   "should be a valid string or a mapping$")
    assert "12345" not in got  # a value below ray.env is never echoed
    got = _refused(tmp_path, BASE + "store: postgresql://refinery:pw-9f8e@db/refinery\n", "store", "store",
                   r"password in the spec.*REFINERY_WORKFLOW_DB")
    assert "pw-9f8e" not in got
    grade = "  - name: grade\n    kind: annotate-import\n    db: postgresql://lead:hunter2@db/annotate\n"
    assert "hunter2" not in _refused(tmp_path, BASE + grade, "db:", "stages[2].db", r"\{from_env: NAME\}")


def test_from_env_values_are_read_only_when_resolved(tmp_path, monkeypatch):
    text = (BASE + "  - name: grade\n    kind: annotate-import\n    db: {from_env: GRADE_DB}\n"
            "ray:\n  env:\n    MODE: nightly\n    HF_TOKEN: {from_env: WF_TEST_HF}\n")
    path = _spec(tmp_path, text)
    monkeypatch.delenv("WF_TEST_HF", raising=False)
    spec = load_spec(path, roots_env=None)  # loading never needs the variable
    assert redacted_env(spec) == {"MODE": "nightly", "HF_TOKEN": "<from $WF_TEST_HF>"}
    with pytest.raises(SpecError) as caught:
        resolve_env(spec)
    assert str(caught.value) == (f"{path}:{_line(text, 'HF_TOKEN')}: ray.env.HF_TOKEN.from_env: "
                                 "environment variable $WF_TEST_HF is not set")
    monkeypatch.setenv("WF_TEST_HF", "hf_real")
    assert resolve_env(spec) == {"MODE": "nightly", "HF_TOKEN": "hf_real"}
    with pytest.raises(SpecError, match=rf":{_line(text, 'GRADE_DB')}: stages\[2\]\.db\.from_env: .*\$GRADE_DB"):
        resolve_db(spec, spec.stage("grade"))
    monkeypatch.setenv("GRADE_DB", "sqlite:///grades.db")
    assert resolve_db(spec, spec.stage("grade")) == "sqlite:///grades.db"


def test_a_dotdot_or_a_symlink_never_leaves_the_root(tmp_path):
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    _refused(spec_dir, BASE.replace("inputs: [incoming]", "inputs: [incoming/../../etc]"), "inputs", "inputs[0]",
             "'..' is not allowed in a path")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, spec_dir / "link")
    got = _refused(spec_dir, BASE.replace("inputs: [incoming]", "inputs: [link/drops]"), "inputs", "inputs[0]",
                   r"lies outside the allowed roots \(the spec's folder\)")
    assert f"resolves to {outside}/drops" in got
    _refused(spec_dir, BASE.replace("output: runs", f"output: {tmp_path}/runs"), "output:", "output", "outside")
    _refused(spec_dir, BASE + "ray:\n  working_dir: link\n", "working_dir", "ray.working_dir", "outside")
    ok = load_spec(_spec(spec_dir, BASE.replace("inputs: [incoming]", "inputs: [link/drops]") + "roots: [., ../outside]\n"),
                   roots_env=None)  # a root of the spec's own may name a folder above it
    assert ok.inputs == [str(outside / "drops")]


def test_the_output_never_overlaps_an_input(tmp_path):
    _refused(tmp_path, BASE.replace("output: runs", "output: incoming/runs"), "output:", "output",
             r"overlaps inputs\[0\]")


def test_s3_references_stay_inside_an_s3_root(tmp_path):
    q = "endpoint_override=127.0.0.1:9000&scheme=http"
    s3 = BASE.replace("inputs: [incoming]", f'inputs: ["s3://photos/drops?{q}"]') + f'roots: [., "s3://photos/drops?{q}"]\n'
    spec = load_spec(_spec(tmp_path, s3), roots_env=None)
    assert spec.inputs == [f"s3://photos/drops?{q}"]
    for bad in [f"s3://photos/other?{q}", f"s3://photos/dropsx?{q}", "s3://photos/drops/day1", f"s3://photos/drops/../x?{q}"]:
        text = s3.replace(f'inputs: ["s3://photos/drops?{q}"]', f'inputs: ["{bad}"]')
        _refused(tmp_path, text, "inputs:", "inputs[0]", "outside the allowed roots|'..' is not allowed")
    out = s3.replace("output: runs", f'output: "s3://photos/drops/runs?{q}"')
    _refused(tmp_path, out, "output:", "output", "overlaps inputs")
    no_store = BASE.replace("output: runs", f'output: "s3://photos/curated?{q}"') + f'roots: [., "s3://photos?{q}"]\n'
    _refused(tmp_path, no_store, "output:", "output", "s3:// output is not supported yet")
    _refused(tmp_path, BASE.replace("inputs: [incoming]", 'inputs: ["gs://bucket/x"]'), "inputs", "inputs[0]",
             "gs:// scheme is not supported")


def test_refinery_workflow_roots_narrows_what_a_spec_reaches(tmp_path):
    allowed, spec_dir = tmp_path / "allowed", tmp_path / "specs"
    allowed.mkdir()
    spec_dir.mkdir()
    env = f"{allowed}:s3://bucket/x?endpoint_override=127.0.0.1:9000"
    _refused(spec_dir, BASE + "roots: [.]\n", "roots", "roots[0]", "lies outside every root of \\$REFINERY_WORKFLOW_ROOTS",
             roots_env=env)
    # No roots of its own: the variable's roots; the spec's folder (and so its relative output) is outside them.
    _refused(spec_dir, BASE, "inputs", "inputs[0]", r"outside the allowed roots \(\$REFINERY_WORKFLOW_ROOTS\)", roots_env=env)
    text = BASE.replace("inputs: [incoming]", f"inputs: [{allowed}/in]").replace("output: runs", f"output: {allowed}/out")
    text += f"roots: [{allowed}, \"s3://bucket/x/y?endpoint_override=127.0.0.1:9000\"]\nray:\n  working_dir: {allowed}\n"
    spec = load_spec(_spec(spec_dir, text), roots_env=env)
    assert spec.output == str(allowed / "out")
    # Narrowing: a spec root narrower than the variable's confines the spec to it.
    narrow = text.replace(f"roots: [{allowed}, ", f"roots: [{allowed}/in, ")
    _refused(spec_dir, narrow, "output:", "output", r"outside the allowed roots \(roots\)", roots_env=env)
    with pytest.raises(SpecError, match=r"REFINERY_WORKFLOW_ROOTS: 'relative' is not an absolute path"):
        load_spec(_spec(spec_dir, text), roots_env="relative")


def test_load_spec_reads_the_roots_variable_when_called(tmp_path, monkeypatch):
    path = _spec(tmp_path, BASE)
    monkeypatch.setenv("REFINERY_WORKFLOW_ROOTS", str(tmp_path / "elsewhere"))
    with pytest.raises(SpecError, match=r"outside the allowed roots \(\$REFINERY_WORKFLOW_ROOTS\)"):
        load_spec(path)
    monkeypatch.delenv("REFINERY_WORKFLOW_ROOTS")
    assert load_spec(path).output == str(tmp_path / "runs")


def test_stage_kinds_check_their_own_fields(tmp_path):
    train = BASE + "  - name: train\n    kind: train\n    config: tiny-cpu\n    steps: 20\n"
    spec = load_spec(_spec(tmp_path, train), roots_env=None)
    assert spec.stage("train").input == "caption" and spec.config_path(spec.stage("train")) is None  # bundled
    _refused(tmp_path, train.replace("tiny-cpu", "tiny-gpu-typo"), "tiny-gpu-typo", "stages[2].config",
             "no bundled trainer config 'tiny-gpu-typo'")
    _refused(tmp_path, train.replace("steps: 20", "steps: 0"), "steps", "stages[2].steps", "greater than or equal to 1")
    grade = BASE + "  - name: grade\n    kind: annotate-import\n    db: {from_env: DB}\n    batch: \"{who}-{run}\"\n"
    _refused(tmp_path, grade, "batch", "stages[2].batch", r"may use only \{workflow\} and \{run\}")
    export = BASE + "  - name: out\n    kind: annotate-export\n    db: {from_env: DB}\n    input: curate\n    select: keep\n"
    _refused(tmp_path, export, "select", "stages[2].select", "unknown key")
    _refused(tmp_path, BASE + "ray:\n  env:\n    9LIVES: x\n", "9LIVES", "ray.env.9LIVES", "should match pattern")
