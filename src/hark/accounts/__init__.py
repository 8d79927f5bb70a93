"""People: users, their roles in organisations, and signing in."""
