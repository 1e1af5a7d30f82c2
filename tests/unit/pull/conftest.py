from __future__ import annotations

import pytest

from devkit.fakeportal.generate import generate_dossiers


@pytest.fixture(scope="session")
def dossiers() -> list[dict]:
    return generate_dossiers(1200, seed=11)
