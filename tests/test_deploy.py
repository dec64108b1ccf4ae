"""The deployment files parse and say what the README promises."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
APP_SERVICES = {"web", "worker", "beat", "flower", "nats_bridge"}


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_it_names_every_service_the_readme_promises():
    services = _compose()["services"]
    readme = (REPO / "README.md").read_text()

    assert {"postgres", "redis", "nats", *APP_SERVICES} <= set(services)
    for name in APP_SERVICES:
        assert f"`{name}`" in readme, f"README does not mention the {name} service"


def test_it_builds_every_app_service_from_one_image():
    services = _compose()["services"]

    builds = {name: services[name].get("build") for name in APP_SERVICES}
    assert set(builds.values()) == {"."}
    assert (REPO / "Dockerfile").is_file()
    assert "celery" in services["worker"]["command"]
    assert "beat" in services["beat"]["command"]
    assert "infatium.asgi:application" in services["web"]["command"]
    assert services["nats_bridge"]["command"][-2:] == ["manage.py", "nats_bridge"]


def test_it_runs_nats_with_jetstream_and_redis_without_eviction():
    services = _compose()["services"]

    assert "-js" in services["nats"]["command"]
    assert "noeviction" in services["redis"]["command"]


def test_it_documents_every_environment_variable_in_env_example():
    settings_source = (REPO / "infatium" / "settings.py").read_text()
    read = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', settings_source))
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M))

    assert {"DATABASE_URL", "REDIS_URL", "NATS_URL", "SECRET_KEY", "SENTRY_DSN"} <= read
    assert read - documented == set()
