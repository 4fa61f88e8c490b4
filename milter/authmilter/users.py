"""User and group names to ids (``milter.user``, ``milter.group``)."""

from __future__ import annotations

import grp
import pwd

from authmilter.errors import ConfigError


def user_ids(user: str, group: str = "", where: str = "milter") -> tuple[int, int]:
    """(uid, gid) of ``user``, with ``group`` or else the user's primary group.

    ``where`` prefixes the error (``FILE: milter``), which names the key and the value.
    """
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"{where}.user: no such user {user!r}") from None
    gid = group_id(group, f"{where}.group") if group else pw.pw_gid
    return pw.pw_uid, gid


def group_id(group: str, where: str = "group") -> int:
    """The gid of ``group``; ConfigError naming ``where`` when there is no such group."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"{where}: no such group {group!r}") from None
