"""Errors of serving a model bundle: one this runtime refuses, or a device that cannot run here.
Both are the user's to act on (re-export the bundle, choose another device), so the CLI reports
them as one message with exit status 2."""

from __future__ import annotations

from catalogs.errors import MorphcatError


class BundleError(MorphcatError):
    """A model bundle this runtime refuses to serve (tampered, incomplete, too new, wrong input)."""


class DeviceUnavailableError(MorphcatError):
    """The device asked for (``device="cuda"``) cannot run here."""
