"""The fused model stage: one RGB decode per image, every enabled model over it.

Contract: ``ModelStage(models_cfg, names, decode_cfg)`` is a class stage (an actor pool
through ``curate.ray_adapter``; each actor builds it once). Building it builds and sets up
the named models (``curate.models.registry``) on the device and threads its resources give
(``ModelEnv.from_resources(models_cfg.stage.num_cpus, .num_gpus)``). ``__call__(batch)``
takes ``row_key`` and ``image`` (encoded bytes) and returns ``row_key`` plus every column of
the ``models`` and ``embeddings`` groups (``MODEL_OUT``): each image is decoded once to the
``rgb`` view (``curate.filters.base``: upright, short side <= 640, long side <= 1280) and the
models run in registry order over the batch's arrays, each seeing the columns earlier models
returned (``context``). ``model_pass`` is ``measured``; a row whose bytes no longer decode
gets ``error`` and the decode message in ``model_error``; a model that raises on a batch is
retried image by image and the images it still raises on get ``error``, that model's
columns null and ``model_error`` naming the model (the other models' columns stay); a
``ModelUnavailable`` from a model (weights that do not fit) is raised: the run stops. Columns
of models that are off stay null. It never decides keep/reject.
"""
from __future__ import annotations

import logging

import pyarrow as pa

from curate.config import DecodeConfig
from curate.decode import DecodeError
from curate.filters.base import ImageView
from curate.models.base import ModelEnv, ModelUnavailable
from curate.models.config import ModelsConfig
from curate.models.registry import build_models
from curate.schema import GROUPS, conform, subschema

MODEL_OUT = ["row_key", *GROUPS["models"][1:], *GROUPS["embeddings"][1:]]
log = logging.getLogger(__name__)


class ModelStage:
    def __init__(self, cfg: ModelsConfig, names: tuple[str, ...], decode: DecodeConfig = DecodeConfig()):
        self.decode = decode
        self.env = ModelEnv.from_resources(cfg.stage.num_cpus, cfg.stage.num_gpus)
        self.env.pin_threads()
        self.models = build_models(cfg, names)
        for model in self.models:
            model.setup(self.env)

    def _run_model(self, model, images: list, context: dict) -> tuple[dict[str, list], list[str | None]]:
        """One model over the batch; per-image fallback when the batch raises."""
        try:
            return model.measure(images, context), [None] * len(images)
        except ModelUnavailable:  # the model cannot run at all (weights that do not fit): the run stops
            raise
        except Exception as err:  # noqa: BLE001 -- find the images it raises on
            log.warning("model %s raised on a batch of %d images (%s); retrying image by image", model.name, len(images), err)
        out: dict[str, list] = {c: [] for c in model.columns}
        errors: list[str | None] = []
        for i, image in enumerate(images):
            one_context = {k: v[i : i + 1] for k, v in context.items()}
            try:
                values = model.measure([image], one_context)
                errors.append(None)
            except ModelUnavailable:
                raise
            except Exception as err:  # noqa: BLE001
                values = {}
                errors.append(f"model {model.name} raised {type(err).__name__}: {str(err)[:500]}")
            for c in model.columns:
                out[c].append((values.get(c) or [None])[0])
        return out, errors

    def __call__(self, batch: pa.Table) -> pa.Table:
        keys = batch.column("row_key").to_pylist()
        data = batch.column("image").to_pylist()
        n = len(keys)
        columns: dict[str, list] = {c: [None] * n for c in MODEL_OUT[1:]}
        status: list[str] = ["measured"] * n
        errors: list[str | None] = [None] * n
        images, where = [], []
        for i, blob in enumerate(data):
            try:
                images.append(ImageView.decode(blob or b"", self.decode, ("rgb",)).rgb)
                where.append(i)
            except DecodeError as err:
                status[i], errors[i] = "error", f"decode: {err.message}"
        context: dict[str, list] = {}
        for model in self.models:
            if not images:
                break
            values, failed = self._run_model(model, images, context)
            for column in model.columns:
                got = values.get(column)
                if got is None or len(got) != len(images):
                    raise RuntimeError(f"model {model.name} returned {column!r} for {0 if got is None else len(got)} "
                                       f"of {len(images)} images")
                context[column] = got
                for j, i in enumerate(where):
                    columns[column][i] = got[j]
            for j, message in enumerate(failed):
                if message:
                    i = where[j]
                    status[i] = "error"
                    errors[i] = message if errors[i] is None else f"{errors[i]}; {message}"
        columns["model_pass"], columns["model_error"] = status, errors
        table = pa.table({"row_key": pa.array(keys, pa.int64()), **{c: columns[c] for c in MODEL_OUT[1:]}}
                         if n else {c: [] for c in MODEL_OUT})
        return conform(table, subschema(MODEL_OUT))
