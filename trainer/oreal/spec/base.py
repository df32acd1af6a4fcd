"""What every spec model shares: camelCase keys, unknown keys refused, and common field types."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Quantity = int | str  # a Kubernetes resource quantity: 2, "500m", "16Gi"


class SpecModel(BaseModel):
    """Base for every spec object: camelCase keys, unknown keys rejected, assignment validated."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )
