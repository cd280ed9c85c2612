"""Config mistakes that would hang or crash a run later are one-line errors naming the key.

Each case goes through ``load_config`` and through the CLI (exit 2, one line on stderr); the
YAML loader refuses aliases and anchors, so an alias bomb fails at once; errors never repeat
the file's content at length.
"""
from __future__ import annotations

import re
import time

import pytest

from curate.cli import main
from curate.config import ConfigError, load_config
from curate.safe_yaml import MAX_ERROR_CHARS
from tests.cases import write_folder

BOMB = "\n".join(  # the "billion laughs": 9**8 strings if expanded, 400 bytes of text
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"{n}: &{n} [{','.join(['*' + p] * 9)}]" for p, n in zip("abcdefg", "bcdefgh")),
        "rules: *h",
    ]
) + "\n"

# (config text, what the one line must say: the key and the reason)
CASES = {
    "ray.num_cpus 0": ("ray: {num_cpus: 0}\n", r"ray\.num_cpus: Input should be greater than or equal to 1"),
    "ray.num_cpus negative": ("ray: {num_cpus: -4}\n", r"ray\.num_cpus: .*greater than or equal to 1"),
    "stage cpus negative": ("stages: {stats: {num_cpus: -1}}\n", r"stages\.stats\.num_cpus: Input should be greater than 0"),
    "stage gpus negative": ("stages: {read: {num_gpus: -1}}\n", r"stages\.read\.num_gpus: .*greater than or equal to 0"),
    "stage cpus above ray.num_cpus": (
        "ray: {num_cpus: 2}\nstages: {stats: {num_cpus: 3}}\n",
        r"stages\.stats: num_cpus 3 is more than ray\.num_cpus \(2\); Ray would wait forever",
    ),
    "actor pool above ray.num_cpus": (
        "ray: {num_cpus: 2}\nstages: {stats: {num_cpus: 1, actors: {min: 3, max: 4}}}\n",
        r"stages\.stats: num_cpus 1 x 3 actors = 3 is more than ray\.num_cpus \(2\)",
    ),
    "min above max": (
        "rules:\n  - {column: stat_aspect, min: 3, max: 2, reason: bad_aspect}\n",
        r"rules\[0\]: rule on 'stat_aspect': min \(3\) > max \(2\)",
    ),
    "NaN threshold": ("rules:\n  - {column: stat_aspect, max: .nan, reason: bad_aspect}\n", r"rules\[0\]\.max: Input should be a finite number"),
    "inf threshold": ("rules:\n  - {column: stat_clarity_norm, min: -.inf, reason: blurry}\n", r"rules\[0\]\.min: Input should be a finite number"),
    "inf cpus": ("stages: {write: {num_cpus: .inf}}\n", r"stages\.write\.num_cpus: Input should be a finite number"),
    "EPS format": ("decode: {formats: [JPEG, EPS]}\n", r"decode\.formats: 'EPS' is not allowed \(safe for untrusted input: JPEG, MPO"),
    "PDF format": ("decode: {formats: [PDF]}\n", r"decode\.formats: 'PDF' is not allowed"),
    "PS format": ("decode: {formats: [PNG, PS]}\n", r"decode\.formats: 'PS' is not allowed"),
    "JPG typo": ("decode: {formats: [JPG]}\n", r"decode\.formats: 'JPG' is not allowed \(did you mean JPEG\?"),
    "lower-case tif": ("decode: {formats: [tiff]}\n", r"did you mean TIFF\?"),
    "no formats": ("decode: {formats: []}\n", r"decode\.formats: is empty"),
    "rule column not in the schema": (
        "rules:\n  - {column: stat_sharpness, min: 1, reason: blurry}\n",
        r"rules\[0\]\.column: unknown column 'stat_sharpness'",
    ),
    "second rule's column": (
        "rules:\n  - {column: stat_aspect, max: 3, reason: bad_aspect}\n  - {column: width_px, min: 1, reason: too_small}\n",
        r"rules\[1\]\.column: unknown column 'width_px'",
    ),
    "alias bomb": (BOMB, r"not valid YAML: anchors and aliases \(&name, \*name\) are not allowed in a config \(line 1, column 4\)"),
    "anchor alone": ("ray: &r {num_cpus: 2}\n", r"anchors and aliases .* \(line 1, column 6\)"),
    "merge key": ("base: &b {num_cpus: 1}\nray:\n  <<: *b\n", r"anchors and aliases"),
}


def _write(tmp_path, text: str):
    path = tmp_path / "my.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", CASES.values(), ids=CASES.keys())
def test_load_config_refuses_with_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(_write(tmp_path, text))
    assert "\n" not in str(err.value) and len(str(err.value)) <= MAX_ERROR_CHARS


@pytest.mark.parametrize("command", ["config", "run"])
@pytest.mark.parametrize("text, message", CASES.values(), ids=CASES.keys())
def test_cli_exits_2_with_one_line(tmp_path, capsys, command, text, message):
    config = _write(tmp_path, text)
    run = ["--input", str(write_folder(tmp_path / "in")), "--output", str(tmp_path / "out")] if command == "run" else []
    assert main([command, "--config", str(config), *run]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: config {config} ")
    assert re.search(message, lines[0]), lines[0]
    assert captured.out == "" and not (tmp_path / "out").exists()  # nothing started, nothing written


def test_alias_bomb_fails_in_well_under_a_second(tmp_path, capsys):
    config = _write(tmp_path, BOMB)
    assert len(BOMB.encode()) < 450
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_config(config)
    assert main(["config", "--config", str(config)]) == 2
    assert time.perf_counter() - start < 5  # it took 38 s before aliases were refused
    assert "lol" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "text",
    [
        "rules:\n  - {column: " + "stat_" * 2000 + ", min: 1, reason: blurry}\n",  # an untrusted value
        "stages: {" + "k" * 10_000 + ": {num_cpus: 1}}\n",  # an untrusted key (too long for a YAML key)
        "stages:\n  " + "k" * 1000 + ": {num_cpus: 1}\n",  # an unknown key pydantic reports
        "rules:\n" + "  - {column: stat_aspect, min: 5, max: 1, reason: bad_aspect}\n" * 500,  # 500 errors
        "decode: {formats: [JPEG, " + "X" * 5000 + "]}\n",
        "dedup: {keeper: [SECRET_VALUE_42 " + "y" * 3000 + "]}\n",
        "decode: [SECRET_VALUE_42, 2\n",  # PyYAML's own message quotes the offending line
    ],
    ids=["long column", "long key (YAML)", "long key (schema)", "many errors", "long format", "long literal", "yaml snippet"],
)
def test_errors_never_echo_the_file_at_length(tmp_path, text):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    message = str(err.value)
    assert "\n" not in message and len(message) <= MAX_ERROR_CHARS
    assert "k" * 50 not in message and "stat_" * 10 not in message and "X" * 50 not in message
    assert "y" * 50 not in message  # a scalar is quoted clipped to 30 characters at most
    if text.count("- {column") == 500:
        assert message.endswith("(+497 more)")
    if text.startswith("decode: [SECRET"):
        assert "SECRET_VALUE_42" not in message


def test_unreadable_and_oversized_files_are_one_line(tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"ray: {num_cpus: 2}\n\xff\xfe\x00junk\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 19\)"):
        load_config(binary)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * 2**20 + "\n")
    with pytest.raises(ConfigError, match=r"at most 1048576 bytes"):
        load_config(huge)
    deep = tmp_path / "deep.yaml"
    deep.write_text("rules: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(deep)


def test_what_validation_allows_still_loads(tmp_path):
    """The checks refuse only what cannot work: the edges of each stay valid."""
    config = load_config(_write(tmp_path, (
        "ray: {num_cpus: 2}\n"
        "stages: {stats: {num_cpus: 1, actors: {min: 2, max: 8}}}\n"  # 2 x 1 CPU fits; max may exceed (autoscaling)
        "decode: {formats: [JPEG, MPO, PNG, WEBP, GIF, BMP, TIFF]}\n"
        "rules:\n  - {column: stat_aspect, min: 2.5, max: 2.5, reason: bad_aspect}\n"
    )))
    assert config.ray.num_cpus == 2 and config.stages.stats.pool() == (2, 8)
    assert (config.rules[0].min, config.rules[0].max) == (2.5, 2.5)
    joined = load_config(_write(tmp_path, "ray: {address: auto, num_cpus: 1}\nstages: {stats: {num_cpus: 4}}\n"))
    assert joined.stages.stats.num_cpus == 4  # ray.num_cpus sizes a local Ray only; a joined cluster is checked on connect
