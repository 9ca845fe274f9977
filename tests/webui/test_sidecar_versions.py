"""The sidecar's "sd version" names the family as the host that reads it shows it (A1111 1.10 has no Flux)."""
from __future__ import annotations

import pytest

from cloudlora import host
from cloudlora.library import pull


@pytest.fixture
def as_host():
    before = host.current()
    yield lambda name: host.install(host.Host(name=name))
    host.install(before)


@pytest.mark.parametrize("name,family,want", [
    ("a1111", "flux", "Unknown"), ("forge", "flux", "Flux"), ("standalone", "flux", "Flux"),
    ("a1111", "sdxl", "SDXL"), ("forge", "sd15", "SD1"), ("a1111", "sd2", "SD2"),
])
def test_a_pulled_loras_sidecar_says_its_family_as_the_running_host_shows_it(as_host, name, family, want):
    as_host(name)
    side = pull.sidecar(family=family, triggers=["fx"], model="m", dataset="d", steps=3, job_id="j",
                        base={"sd version": "Flux"})
    assert side["sd version"] == want
    # A1111 1.10.1 uses a sidecar's "sd version" only when it is one of its SdVersion names
    if name == "a1111":
        assert side["sd version"] in ("Unknown", "SD1", "SD2", "SDXL")
