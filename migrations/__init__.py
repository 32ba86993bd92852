"""Alembic migrations (Flask-Migrate). Procrastinate's schema is revision 0001."""
