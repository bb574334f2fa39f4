"""As root, each user gets a uid of their own, and the work dir is never a planted symlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox_runtime import handler
from sandbox_runtime.runtime import WorkDirUnsafe, ensure_private_dir


def test_a_thousand_users_on_one_host_never_share_a_uid(tmp_path: Path) -> None:
    registry = str(tmp_path / "uids.json")
    # users/user-0999/ and users/user-1143/ hash to the same uid: a hash alone collides.
    prefixes = [f"users/user-{i:04d}/" for i in range(950, 1200)]
    uids = [handler.sandbox_uid_for(prefix, registry) for prefix in prefixes]

    assert len(set(uids)) == len(prefixes)
    assert all(handler.UID_BASE <= uid < handler.UID_BASE + handler.UID_COUNT for uid in uids)
    # Stable: the same user gets the same uid every time (files in /tmp keep their owner).
    assert handler.sandbox_uid_for("users/user-0999/", registry) == uids[49]
    assert handler.sandbox_uid_for("users/user-1143/", registry) == uids[193]


def test_a_planted_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.mkdir()
    planted = tmp_path / "sandbox-runtime"
    planted.symlink_to(target)

    with pytest.raises(WorkDirUnsafe, match="not a plain directory"):
        ensure_private_dir(planted / "runs")
    with pytest.raises(WorkDirUnsafe, match="not a plain directory"):
        ensure_private_dir(planted)
    assert list(target.iterdir()) == []


def test_an_existing_work_dir_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)

    with pytest.raises(WorkDirUnsafe, match="writable by nobody else"):
        ensure_private_dir(shared)


def test_a_fresh_work_dir_is_created_private(tmp_path: Path) -> None:
    fresh = tmp_path / "a" / "work"
    ensure_private_dir(fresh)

    info = fresh.lstat()
    assert info.st_uid == os.geteuid()
    assert info.st_mode & 0o777 == 0o711
    ensure_private_dir(fresh)  # ours and private: accepted again
