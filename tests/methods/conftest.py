"""Fixtures of the method tests; helpers live in loss_testing.py."""

from __future__ import annotations

import pytest
from loss_testing import make_info

from spml_rs.dataset_info import DatasetInfo


@pytest.fixture
def info() -> DatasetInfo:
    return make_info()
