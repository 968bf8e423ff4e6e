"""Errors of the training stage that a user acts on (the CLI reports each as one message, exit
status 2): models that cannot be trained or started as asked, and a models folder that lacks
what a later stage needs."""

from __future__ import annotations

from catalogs.errors import MorphcatError


class TrainingError(MorphcatError):
    """The models cannot be trained as asked: a pretrained or shared backbone that does not fit
    the configuration of this run, or settings that contradict each other."""


class ArtifactError(MorphcatError, FileNotFoundError):
    """A models folder lacks a model or its sidecar (still a ``FileNotFoundError`` for callers
    that test for a missing file)."""
