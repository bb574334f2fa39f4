"""Named failures, so callers (Step Functions Retry/Catch, HTTP mappers) can tell them apart."""

from __future__ import annotations


class FleetError(Exception):
    """Base class of every sandbox-fleet error."""


class ConfigurationError(FleetError):
    """A required setting (environment variable, secret) is missing or malformed."""


class EmitFailed(FleetError):
    """EventBridge did not accept an event; the caller must retry (nothing was recorded)."""


class UnknownFirebaseUser(FleetError):
    """Firebase does not know this UID (a forged or stale notice)."""


class FirebaseUserStillExists(FleetError):
    """A deletion notice arrived for a UID that Firebase still has."""


class FirebaseUnavailable(FleetError):
    """Firebase could not be asked; retry later."""


class RegistryUnavailable(FleetError):
    """DynamoDB left registry reads unprocessed after retries; retry later."""


class UserNotFound(FleetError):
    """No registry entry for this UID: the sandbox was never provisioned, or was deleted."""


class UserNotReady(FleetError):
    """The sandbox exists but cannot run code now (provisioning, failed or being deleted)."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the sandbox is {status}")
        self.status = status


class SandboxInvokeError(FleetError):
    """The user's sandbox function could not be invoked or failed outside its envelope."""
