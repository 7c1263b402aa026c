"""Which kind of data a resource holds: ``[[classification]]``, matched in one place.

``[[classification]]`` (``pipeline.config.Classification``) names kinds of data by a regular
expression found in a resource (``s3://bucket/key``, ``dynamodb:table/key``, an API path, an
ARN); the first pattern found gives the class. ``tenantwatch impact`` and its customer notices
name the kind of data an incident touched with it (``pipeline.impact``), and the
``access_pattern`` detector weighs what an actor touched by it, so both always agree on what is
``financial``. A shared module beside ``pipeline.principals``: detectors may import it, and it
imports nothing but the configuration's types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.config import Classification


@dataclass(frozen=True)
class DataClasses:
    """The configured classes, compiled once, in their order."""

    rules: tuple[tuple[re.Pattern[str], str], ...] = ()

    @classmethod
    def of(cls, classification: Iterable[Classification]) -> DataClasses:
        return cls(tuple((re.compile(c.pattern), c.data_class) for c in classification))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def data_class(self, resource: str | None) -> str | None:
        """The class of the data at ``resource``: the first pattern found in it (None: no
        pattern is, or there is no resource)."""
        if not resource:
            return None
        for rx, name in self.rules:
            if rx.search(resource):
                return name
        return None
