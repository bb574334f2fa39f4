"""A local cloud per test module: the real template, IAM enforced, no faults.

Each module starts its own cloud (about 4 s), so what one module leaves behind (users, stacks,
rollouts) never slows or changes another: a rollout moves every READY user of its cloud, and a
reconcile sweeps them all. Tests create their own users (and their own resources) so they never
depend on each other either.
A test that needs a fault profile either switches its module's cloud for its own duration
(`cloud_with_faults`, cheap) or starts a separate cloud in a child process (`spawn_cloud`,
slow: a full start-up; use sparingly).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxctl.localcloud.server import LocalCloud
from sandboxctl.localcloud.spawned import SpawnedLocalCloud


@pytest.fixture(scope="module")
def local_cloud() -> Iterator[LocalCloud]:
    """This module's LocalCloud, deployed from template.yaml with IAM enforcement on.

    It stops (and gives moto's process-global state back) when the module ends, before the
    next module's cloud starts: moto's backends are process-global, so one runs at a time.
    """
    # SANDBOXCTL_LOCAL_TEMPLATE runs the suite against another copy of the application.
    override = os.environ.get("SANDBOXCTL_LOCAL_TEMPLATE")
    cloud = LocalCloud(faults=None, template=Path(override) if override else None)
    cloud.start()
    try:
        yield cloud
    finally:
        cloud.stop()


@pytest.fixture
def cloud_with_faults(local_cloud: LocalCloud) -> Iterator[Callable[..., LocalCloud]]:
    """Switch the module's cloud to a fault profile for this test; back to none afterwards."""
    from sandboxctl.localcloud import faults

    def switch(profile: str | None, seed: int = 0) -> LocalCloud:
        faults.install_faults(profile, seed)
        local_cloud.faults, local_cloud.seed = profile, seed
        return local_cloud

    try:
        yield switch
    finally:
        faults.install_faults(None, 0)
        local_cloud.faults, local_cloud.seed = None, 0


@pytest.fixture
def spawn_cloud() -> Iterator[Callable[..., SpawnedLocalCloud]]:
    """Start independent local clouds (own moto, own state) in child processes."""
    started: list[SpawnedLocalCloud] = []

    def spawn(faults: str | None = None, seed: int = 0, **options: Any) -> SpawnedLocalCloud:
        cloud = SpawnedLocalCloud(faults=faults, seed=seed, **options)
        started.append(cloud)
        return cloud.start()

    try:
        yield spawn
    finally:
        for cloud in started:
            cloud.stop()
