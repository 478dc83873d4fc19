"""Helpers shared by tests that are not fixtures."""

import pytest
from django.db import connection

ON_POSTGRES = connection.vendor == "postgresql"
ON_SQLITE = connection.vendor == "sqlite"

postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL")
