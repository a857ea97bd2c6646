"""`Plancheck`: every verb of plancheck in one object, one part per resource it serves."""

from __future__ import annotations

from plancheck.api.access import AccessApi
from plancheck.api.catalog import CatalogApi
from plancheck.api.followups import FollowUpsApi
from plancheck.api.operations import OperationsApi
from plancheck.api.plans import PlansApi


class Plancheck(CatalogApi, PlansApi, FollowUpsApi, AccessApi, OperationsApi):
    """Every verb of plancheck, on the metadata database and broker of its settings."""
