"""Firebase user lookups through firebase-admin (the webhook's existence check, the reconciler).

Configured only when a Firebase service-account secret exists; without it the callers skip the
check and say so in their logs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import firebase_admin
from firebase_admin import auth, credentials, exceptions

from fleet.errors import ConfigurationError, FirebaseUnavailable


class FirebaseUserDirectory:
    """Asks Firebase Authentication whether a UID exists."""

    def __init__(self, app: firebase_admin.App) -> None:
        self.app = app

    @classmethod
    def from_service_account(cls, service_account_json: str) -> FirebaseUserDirectory:
        """One firebase-admin app per service account (a named app, reused across invocations)."""
        try:
            info: dict[str, Any] = json.loads(service_account_json)
            cred = credentials.Certificate(info)
        except (ValueError, KeyError) as error:
            raise ConfigurationError("the Firebase service-account secret is not valid") from error
        name = "sandbox-fleet-" + hashlib.sha256(service_account_json.encode()).hexdigest()[:16]
        try:
            app = firebase_admin.get_app(name)
        except ValueError:
            app = firebase_admin.initialize_app(cred, name=name)
        return cls(app)

    def exists(self, uid: str) -> bool:
        """True when Firebase has this UID; FirebaseUnavailable when Firebase cannot be asked."""
        try:
            auth.get_user(uid, app=self.app)
        except auth.UserNotFoundError:
            return False
        except (exceptions.FirebaseError, ValueError) as error:
            raise FirebaseUnavailable(f"Firebase user lookup failed: {error}") from error
        return True

    def list_uids(self) -> Iterator[str]:
        """Every UID in the project, page by page (for the reconciler)."""
        try:
            for user in auth.list_users(app=self.app).iterate_all():
                yield user.uid
        except exceptions.FirebaseError as error:
            raise FirebaseUnavailable(f"Firebase user listing failed: {error}") from error
