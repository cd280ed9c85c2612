"""refinery's curation package. ``curate.open(uri)`` opens a finished output (``curate.reader``)."""


def open(uri: str):  # noqa: A001 - the package's reader, as the README shows it
    from curate.reader import open_output

    return open_output(uri)
