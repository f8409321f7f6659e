"""docker-compose.yml, checked by Debian's docker-compose without a daemon: it parses, every
mounted file exists, published ports are unique, images are pinned, and the pieces name each
other consistently (scrape targets, Alertmanager, the Grafana datasource)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:  # never a skip: scripts/setup-system.sh installs it
        pytest.fail("docker-compose missing: run scripts/setup-system.sh test (make test does)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "COMPOSE_"))}
    return subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**clean, **env})


@pytest.fixture(scope="module")
def stack() -> dict:
    out = compose_config(GRAFANA_ADMIN_PASSWORD="s3cret")
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_services(stack):
    services = stack["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert not any("zookeeper" in name for name in services)
    workers = [n for n, s in services.items() if s.get("command", [None])[0] == "worker"]
    assert len(workers) == 2
    assert [s["command"][0] for s in services.values() if "build" in s].count("simulate") == 1
    for name in (*workers, "simulator"):
        env = services[name]["environment"]
        assert env["SHOPPULSE_BROKER"] == "kafka://kafka:9092"
    for name in workers:
        assert services[name]["environment"]["SHOPPULSE_WEB_BIND"] == "0.0.0.0"
    for name in ("prometheus", "alertmanager", "grafana"):
        assert name in services


def test_mounted_paths_exist(stack):
    mounts = 0
    for name, service in stack["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("/"):
                mounts += 1
                assert Path(source).exists(), f"{name} mounts missing {source}"
    assert mounts >= 4
    grafana = stack["services"]["grafana"]["volumes"]
    assert any(v.endswith("/etc/grafana/provisioning:ro") for v in grafana)
    home = stack["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "grafana" / "dashboards" / Path(home).name).is_file()


def test_published_ports_are_unique(stack):
    seen: dict[int, str] = {}
    for name, service in stack["services"].items():
        for port in service.get("ports", []):
            published = int(port["published"] if isinstance(port, dict)
                            else str(port).split(":")[0])
            assert published not in seen, f"{name} and {seen[published]} publish {published}"
            seen[published] = name
    assert {3000, 9090, 9093} <= set(seen)


def test_images_are_pinned(stack):
    for name, service in stack["services"].items():
        image = service["image"]
        _, _, tag = image.rpartition(":")
        assert "@sha256:" in image or (tag and tag != "latest" and re.search(r"\d", tag)), \
            f"{name}: image {image} is not pinned to a version"


def test_grafana_password_is_required():
    out = compose_config()
    assert out.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in out.stderr


def test_pieces_name_each_other(stack):
    services = stack["services"]
    prom = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]
    workers = {n for n, s in services.items() if s.get("command", [None])[0] == "worker"}
    assert {t.split(":")[0] for t in targets} == workers
    assert all(t.endswith(":6066") for t in targets)  # the workers' web port in the image
    am = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]
    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    urls = {d["type"]: d["url"] for d in ds["datasources"]}
    assert urls["prometheus"] == "http://prometheus:9090"
    assert urls["alertmanager"] == "http://alertmanager:9093"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+\.\d+-", dockerfile, re.M), "base image not pinned"
    assert "EXPOSE 6066" in dockerfile
