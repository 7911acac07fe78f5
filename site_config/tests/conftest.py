import pytest


@pytest.fixture(autouse=True)
def _environment(chat_test_environment: None) -> None:
    """Every test here runs in the shared test environment (root conftest.py)."""
