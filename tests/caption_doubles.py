"""Caption backends for tests of the caption stage and run (not of any model).

``EchoBackend`` answers each image with a sentence naming its size and mean colour and the
prompt's first word, so a test can tell which caption belongs to which image. Class
attributes steer it: ``oom_above`` (raise ``torch.cuda.OutOfMemoryError`` for batches larger
than this), ``raise_on_width`` (raise for an image of that width, alone or in a batch),
``calls`` (every batch size it was called with, in this process), ``stop_after`` (raise
``KeyboardInterrupt`` on that call: a killed run).
``use(monkeypatch, cls)`` routes ``backend: hf`` to one of these.
"""
from __future__ import annotations

import numpy as np

import caption.backends as backends


def check(cfg) -> str | None:
    return None


class EchoBackend:
    oom_above: int | None = None
    raise_on_width: int | None = None
    stop_after: int | None = None
    calls: list[int] = []

    def __init__(self, cfg):
        self.cfg = cfg

    @property
    def model_ref(self) -> str:
        return "echo@0"

    def setup(self, env) -> None:
        self.env = env

    def caption(self, images: list[np.ndarray], prompts: list[str]) -> list[str]:
        type(self).calls.append(len(images))
        if self.stop_after is not None and len(type(self).calls) > self.stop_after:
            raise KeyboardInterrupt
        if self.oom_above is not None and len(images) > self.oom_above:
            import torch

            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if self.raise_on_width is not None and any(i.shape[1] == self.raise_on_width for i in images):
            raise ValueError(f"cannot caption an image {self.raise_on_width} wide")
        return [f"The image shows a picture {i.shape[1]}x{i.shape[0]} of mean colour "
                f"{int(i[..., 0].mean())},{int(i[..., 1].mean())},{int(i[..., 2].mean())}. {p.split()[0]}."
                for i, p in zip(images, prompts)]


def use(monkeypatch, cls=EchoBackend, **attrs) -> type:
    klass = type(cls.__name__, (cls,), {"calls": [], **attrs})
    import sys

    module = sys.modules[__name__]
    monkeypatch.setattr(module, "Active", klass, raising=False)
    monkeypatch.setitem(backends.BACKENDS, "hf", (__name__, "Active"))
    return klass
