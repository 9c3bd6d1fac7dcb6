"""Accounts, tokens, roles, bans and stream keys."""

from .routes import register_routes
from .service import MIGRATIONS, Auth, IssuedToken, Role, Session, User

__all__ = ["MIGRATIONS", "Auth", "IssuedToken", "Role", "Session", "User", "register_routes"]
