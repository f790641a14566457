"""The coordinator's REST API (FastAPI): every endpoint authenticated and decided by the policy."""

from clawfed.api.app import create_app
from clawfed.api.context import ApiContext, FederationControl

__all__ = ["ApiContext", "FederationControl", "create_app"]
