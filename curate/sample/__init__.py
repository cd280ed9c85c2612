"""The bundled sample dataset: real photographs from installed wheels plus labelled defects.

``build_sample(out_dir, layout, seed)`` writes about 40 images in one of ``LAYOUTS``
(``folder``, ``tar``, ``parquet``): the photos of ``PHOTOS`` (kept under the default config)
and variants that each trip one reason code, and returns a ``SampleManifest`` (also written
as ``out_dir/expected.json``). The output is a pure function of ``seed``.

Modules, one job each:
- ``photos``: ``PHOTOS``, ``Photo``, ``load_photo``, ``encode``;
- ``damage``: makers of broken files and non-images;
- ``transforms``: crops, resizes, blurs and level changes of photos;
- ``variants``: the items of the sample and the reasons each must get;
- ``manifest``: ``SampleEntry``, ``SampleManifest``, ``MANIFEST_NAME``;
- ``layouts``: the folder / tar / parquet writers and ``build_sample``.
"""
from curate.sample.damage import corrupt_jpeg, header_only_png, truncate
from curate.sample.layouts import LAYOUTS, build_sample
from curate.sample.manifest import MANIFEST_NAME, SampleEntry, SampleManifest
from curate.sample.photos import PHOTOS, Photo, encode, load_photo

__all__ = [
    "LAYOUTS",
    "MANIFEST_NAME",
    "PHOTOS",
    "Photo",
    "SampleEntry",
    "SampleManifest",
    "build_sample",
    "corrupt_jpeg",
    "encode",
    "header_only_png",
    "load_photo",
    "truncate",
]
