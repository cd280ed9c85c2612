"""refinery's curation package, and its Python API (``curate.api``; the README's *Python API*):

- ``curate.run(input, output, config=None, overwrite=False, …)``: ``refinery curate run``;
- ``curate.retune(shards, config=None, output=None)``: ``refinery curate retune``;
- ``curate.open(uri, remap=None)``: a finished output, to read (``curate.reader``);
- ``curate.load_config(config)``: a ``CurateConfig`` from None, a YAML path, a mapping or a config.
"""
# The submodule curate.retune is imported first: importing it later would rebind the package's
# name ``retune`` to the module, over the function below.
import curate.retune as _retune_module  # noqa: F401
from curate.api import load_config, retune, run


def open(uri: str, remap=None):  # noqa: A001 - the package's reader, as the README shows it
    """``curate.reader.open_output(uri, remap)``: a finished output (folder, ``file://`` or ``s3://``)."""
    from curate.reader import open_output

    return open_output(uri, remap)


__all__ = ["load_config", "open", "retune", "run"]
