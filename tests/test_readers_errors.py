"""Input errors name the input; glob and brace expansion."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.config import InputConfig
from curate.readers import InputError, list_partitions
from curate.readers.listing import expand_braces
from reader_inputs import folder, shards  # noqa: F401, F811  (pytest fixtures)


def test_input_errors_name_the_input(tmp_path, folder, shards):
    cfg = InputConfig()
    with pytest.raises(InputError, match="does not exist"):
        list_partitions(str(tmp_path / "nope"), cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty.*no files found"):
        list_partitions(str(tmp_path / "empty"), cfg)
    with pytest.raises(InputError, match=r"no files found"):
        list_partitions(str(tmp_path / "shards" / "*.parquet"), cfg)
    with pytest.raises(InputError, match=r"00002\.tar does not exist; .*; and 1 more"):
        list_partitions(str(tmp_path / "shards" / "{00000..00007}.tar"), cfg)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("x")
    with pytest.raises(InputError, match=r"no images.*\.md"):
        list_partitions(str(tmp_path / "docs"), cfg)
    with pytest.raises(InputError, match="mixes 5 image files with 2 tars"):
        list_partitions(str(tmp_path), cfg)
    pq.write_table(pa.table({"name": ["x"], "score": [1.0]}), tmp_path / "docs" / "meta.parquet")
    with pytest.raises(InputError, match=r"meta\.parquet: no image column; columns are \['name', 'score'\]"):
        list_partitions(str(tmp_path / "docs" / "meta.parquet"), cfg)
    with pytest.raises(InputError, match="configured image_column 'jpg' not found"):
        list_partitions(str(tmp_path / "docs" / "meta.parquet"), InputConfig(image_column="jpg"))
    with pytest.raises(InputError, match="empty input"):
        list_partitions(" ", cfg)


def test_brace_expansion():
    assert expand_braces("s/{00008..00011}.tar") == [f"s/{n:05d}.tar" for n in range(8, 12)]
    assert expand_braces("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    assert expand_braces("plain{}.tar") == ["plain{}.tar"]
