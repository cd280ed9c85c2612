"""The config's building blocks shared by every section: strict models and stage specs.

``_Strict`` is the base of every config model (unknown keys are errors, numbers must be YAML
numbers, no NaN/inf). ``StageSpec`` is how the Ray adapter runs one stage (CPUs, GPUs, batch
size, actor pool, error policy); ``ActorPool`` an autoscaling pool's bounds. Kept apart from
``curate.config`` so that section modules (``curate.models.config``) build on them without
importing the whole config.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    """Strict types: a number must be a YAML number (``true`` or ``"4"`` is not an int; an int is a float)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class ActorPool(_Strict):
    """An autoscaling actor pool: Ray runs between ``min`` and ``max`` actors of a class stage."""

    min: int = Field(ge=1)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "ActorPool":
        if self.min > self.max:
            raise ValueError(f"actors.min ({self.min}) must be <= actors.max ({self.max})")
        return self


class StageSpec(_Strict):
    """How the Ray adapter runs one stage (``stages.<name>`` in the config).

    ``actors``: null for a function stage (stateless Ray tasks); for a class stage an int (a
    fixed pool) or ``{min, max}`` (an autoscaling pool). ``on_error`` (class stages): ``row``
    retries a batch that raised row by row and turns each row that still raises into a
    rejected row with reason ``stage_error``; ``fail`` lets the exception fail the run.
    """

    num_cpus: float = Field(0.5, gt=0)
    num_gpus: float = Field(0, ge=0)
    batch_size: int = Field(32, ge=1)
    actors: Annotated[int, Field(strict=True, ge=1)] | ActorPool | None = Field(
        None, description="null: tasks; n: a pool of n actors; {min, max}: an autoscaling pool"
    )
    on_error: Literal["row", "fail"] = "fail"

    def pool(self) -> tuple[int, int] | None:
        """(min, max) actors, or None for tasks."""
        if self.actors is None:
            return None
        if isinstance(self.actors, int):
            return self.actors, self.actors
        return self.actors.min, self.actors.max
