"""Settings are read once per process, so each case runs in a fresh one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV_KEY = "django-insecure-swarmsite-development-key-never-use-in-production"


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_DEBUG", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS")
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_server_refuses_to_start_without_a_secret_key():
    result = run("-c", "import swarmsite.asgi")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_the_development_secret_key():
    result = run("manage.py", "check", DJANGO_SECRET_KEY=DEV_KEY)
    assert result.returncode != 0
    assert "development secret key cannot be used" in result.stderr


def test_commands_that_need_no_key_run_without_one():
    result = run("manage.py", "makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "No changes detected" in result.stdout


@pytest.mark.parametrize("module", ["swarmsite.asgi", "swarmsite.wsgi"])
def test_production_server_starts_with_a_real_key(module):
    result = run("-c", f"import {module}", DJANGO_SECRET_KEY="x" * 60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", ["swarmsite.asgi", "swarmsite.wsgi"])
def test_the_servers_start_up_heap_is_left_out_of_garbage_collections(module):
    script = (
        f"import gc, sys; import {module}; "
        "print(gc.get_freeze_count(), 'ingest.otlp.views' in sys.modules)"
    )
    result = run("-c", script, DJANGO_SECRET_KEY="x" * 60)
    assert result.returncode == 0, result.stderr
    frozen, views_loaded = result.stdout.split()
    # Django, DRF and our modules: well over 100,000 objects.
    assert int(frozen) > 100_000
    assert views_loaded == "True"


def test_production_settings_pass_the_deploy_check():
    result = run(
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY="k" + "9aZ-" * 20,
        DJANGO_ALLOWED_HOSTS="swarm.example.org",
    )
    assert result.returncode == 0, result.stderr + result.stdout
