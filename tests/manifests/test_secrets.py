"""Per-cluster secrets (API keys, the job Redis password): generated git-ignored, rendered only where they
belong, never into the committed tree."""

from __future__ import annotations

import re
import stat
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.manifests.overlays import OVERLAYS
from harness.manifests.paths import REPO_ROOT
from harness.manifests.render import render
from harness.manifests.schemas import SchemaCatalog
from harness.manifests.secrets import (
    API_KEY_NAMES,
    generate_api_keys,
    generate_redis_password,
    generate_secrets,
    read_api_keys,
    read_redis_password,
    render_with_keys,
    uses_api_keys,
    uses_secrets,
)
from harness.manifests.validate import check_objects
from harness.targets.kube import API_KEY_CLIENTS
from tests.manifests.helpers import the


def policy_keys(objects: list[dict]) -> list[str]:
    return the(objects, "AuthorizationPolicy", "ocr-require-api-key")["spec"]["rules"][0]["when"][0]["values"]


def route_keys(objects: list[dict]) -> dict[str, tuple[str, str]]:
    """Each keyed route of the gateway's VirtualService: its name -> (the key it matches, the tenant it sets)."""
    routes = the(objects, "VirtualService", "ocr")["spec"]["http"]
    return {
        r["name"]: (r["match"][0]["headers"]["x-api-key"]["exact"], r["headers"]["request"]["set"]["x-tenant-id"])
        for r in routes
        if r.get("match")
    }


def redis_password(objects: list[dict]) -> str:
    return the(objects, "Secret", "ocr-redis-auth")["stringData"]["password"]


def test_generated_keys_are_private_random_and_kept(tmp_path: Path) -> None:
    path = generate_api_keys(tmp_path / "secrets")
    keys = read_api_keys(path)
    assert set(keys) == set(API_KEY_NAMES)
    assert len(set(keys.values())) == 2 and all(len(v) >= 40 for v in keys.values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_api_keys(generate_api_keys(tmp_path / "secrets")) == keys  # kept
    assert read_api_keys(generate_api_keys(tmp_path / "secrets", force=True)) != keys  # replaced


def test_the_generated_redis_password_is_private_url_safe_and_kept(tmp_path: Path) -> None:
    path = generate_redis_password(tmp_path / "secrets")
    password = read_redis_password(path)
    assert len(password) >= 40 and re.fullmatch(r"[A-Za-z0-9_-]+", password)
    assert urllib.parse.quote(password, safe="") == password  # goes into redis://:PASSWORD@host unquoted
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_redis_password(generate_redis_password(tmp_path / "secrets")) == password
    assert read_redis_password(generate_redis_password(tmp_path / "secrets", force=True)) != password


def test_generate_secrets_makes_every_set_and_keeps_what_exists(tmp_path: Path) -> None:
    keys_path = generate_api_keys(tmp_path)
    keys = read_api_keys(keys_path)
    paths = generate_secrets(tmp_path)
    assert sorted(p.name for p in paths) == ["api-keys.env", "redis-auth.env"]
    assert read_api_keys(keys_path) == keys
    assert read_redis_password(tmp_path / "redis-auth.env")


def test_an_incomplete_keys_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "api-keys.env").write_text("OCR_API_KEY_PRIMARY=abc\n")
    with pytest.raises(HarnessError, match="lacks OCR_API_KEY_SECONDARY"):
        read_api_keys(tmp_path / "api-keys.env")
    with pytest.raises(HarnessError, match="harness manifests keys"):
        read_api_keys(tmp_path / "absent.env")


def test_the_committed_tree_renders_placeholders() -> None:
    objects = render("milestone2")
    keys = policy_keys(objects)
    assert keys and all(key.startswith("placeholder-") for key in keys)
    assert sorted(key for key, _ in route_keys(objects).values()) == sorted(keys)
    assert "set-by-replacement" not in str(objects)  # every slot the replacements fill is filled
    # The deploy's guard looks for "placeholder-" in the render's text: the Secret keeps it readable.
    assert redis_password(render("milestone3")).startswith("placeholder-")


def test_a_cluster_render_carries_its_secrets_and_nothing_else_does(
    manifests_copy: Path, catalog: SchemaCatalog
) -> None:
    generate_secrets(manifests_copy / "secrets")
    keys = read_api_keys(manifests_copy / "secrets" / "api-keys.env")
    password = read_redis_password(manifests_copy / "secrets" / "redis-auth.env")
    objects = render_with_keys("full", manifests_dir=manifests_copy)
    assert policy_keys(objects) == [keys[name] for name in API_KEY_NAMES]
    # Each key names its client as the tenant, the client the acceptance harness sends that key for.
    assert route_keys(objects) == {client: (keys[name], client) for client, name in API_KEY_CLIENTS.items()}
    assert redis_password(objects) == password
    # The sources' ConfigMaps are local config: replacement sources, never applied to the cluster.
    sources = {"ocr-api-keys", "ocr-redis-auth-source"}
    assert not [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] in sources]
    text = "\n".join(str(o) for o in objects)
    # Each key twice: the gateway's policy, and its route in the gateway's VirtualService.
    assert {value: text.count(value) for value in keys.values()} == {value: 2 for value in keys.values()}
    assert text.count(password) == 1  # the Secret alone; everyone else refers to it
    assert "placeholder-" not in text and "set-by-replacement" not in text
    assert [str(f) for f in check_objects(objects, catalog, OVERLAYS["full"])] == []


def test_an_overlay_without_jobs_needs_no_redis_password(manifests_copy: Path) -> None:
    keys = read_api_keys(generate_api_keys(manifests_copy / "secrets"))
    objects = render_with_keys("milestone2", manifests_dir=manifests_copy)
    assert policy_keys(objects) and not [o for o in objects if o["kind"] == "Secret"]
    assert sorted(key for key, _ in route_keys(objects).values()) == sorted(keys.values())
    assert not (manifests_copy / "secrets" / "redis-auth.env").exists()


def test_a_jobs_render_without_a_redis_password_says_how_to_make_it(manifests_copy: Path) -> None:
    generate_api_keys(manifests_copy / "secrets")
    with pytest.raises(HarnessError, match=r"no job Redis password .*harness manifests keys"):
        render_with_keys("milestone3", manifests_dir=manifests_copy)


def test_overlays_without_the_mesh_need_no_keys(manifests_copy: Path) -> None:
    assert not uses_api_keys("milestone1", manifests_copy / "overlays")
    assert uses_api_keys("milestone3", manifests_copy / "overlays")
    assert not uses_secrets("scale-to-zero", manifests_copy / "overlays")
    objects = render_with_keys("scale-to-zero", manifests_dir=manifests_copy)
    assert not (manifests_copy / "secrets").exists()
    assert the(objects, "InferenceService", "ocr")


def test_a_cluster_render_without_keys_says_how_to_make_them(manifests_copy: Path) -> None:
    with pytest.raises(HarnessError, match="harness manifests keys"):
        render_with_keys("milestone2", manifests_dir=manifests_copy)


def test_generated_files_are_git_ignored() -> None:
    paths = [
        "manifests/secrets/api-keys.env",
        "manifests/secrets/redis-auth.env",
        "manifests/secrets/kustomization.yaml",
    ]
    done = subprocess.run(["git", "check-ignore", *paths], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode == 128:
        pytest.skip(f"not a git work tree: {done.stderr.strip()}")
    assert done.stdout.split() == paths
