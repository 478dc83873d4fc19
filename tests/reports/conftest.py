"""A known data set for the stats: every figure is computed by hand."""

import pytest

from tests.reports.factories import build_known


@pytest.fixture
def known(project, other_project) -> dict:
    return build_known(project, other_project)
