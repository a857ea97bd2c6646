"""Errors the Python API raises for bad input; the CLI prints their message on one line."""

MAX_ID = 2**63 - 1  # ids are bigint: a larger one is bad input, not a database error


class PlancheckError(Exception):
    """Base class: the message is safe to show (no credentials) and says what to do."""


class NotFound(PlancheckError):
    pass


class Conflict(PlancheckError):
    pass


class InvalidInput(PlancheckError):
    pass


class Unauthorized(PlancheckError):
    """No token, or one that is malformed, unknown, expired or revoked."""


class Forbidden(PlancheckError):
    """A valid token whose scope or project does not cover the request."""
