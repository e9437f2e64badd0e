"""bench/ shares the test set-up: `cuda`-marked cases are skipped without a GPU."""

from tests.conftest import pytest_collection_modifyitems  # noqa: F401
