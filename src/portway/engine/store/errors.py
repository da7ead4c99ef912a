"""What the store refuses, as `PortwayError`s the admin API maps to HTTP statuses (404, 409, 400), so
callers never see a driver's exception."""

from __future__ import annotations

from portway.errors import PortwayError


class StoreError(PortwayError):
    """Root of the store's refusals."""


class NotFound(StoreError):
    """No such workspace, project, credential or policy (404)."""


class Conflict(StoreError):
    """The change clashes with what is stored: a duplicate name, a stale version, a non-empty parent (409)."""


class Invalid(StoreError):
    """The request itself is malformed: an unknown permission, a bad policy document (400)."""
