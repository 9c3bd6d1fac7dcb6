"""Accounts, tokens, roles, bans and stream keys."""

from .models import Role, Session, User
from .routes import register_routes
from .service import MIGRATIONS, Auth, IssuedToken

__all__ = ["MIGRATIONS", "Auth", "IssuedToken", "Role", "Session", "User", "register_routes"]
