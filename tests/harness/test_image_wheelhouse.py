import zipfile
from pathlib import Path

import pytest

from harness.errors import HarnessError, ToolMissing
from harness.image.wheelhouse import (
    WheelhousePlan,
    build_requirements,
    check_interpreter,
    extra_requirements,
    incompatible_wheels,
    model_version,
    target_environments,
    unmet_requirements,
    wheel_metadata,
)

PYPROJECT = {
    "build-system": {"requires": ["setuptools>=68"], "build-backend": "setuptools.build_meta"},
    "project": {
        "name": "ocr-platform",
        "dependencies": ["numpy>=1.26"],
        "optional-dependencies": {
            "service": ["fastapi>=0.115", "Ocr_Platform[models]"],
            "models": ["rapidocr>=3.4", "numpy>=1.26"],
            "harness": ["pytest>=8"],
        },
    },
}
# A Linux x86_64 CPython 3.11.7 marker environment, as packaging.markers.default_environment() gives it.
HOST = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.7",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_release": "6.1.0",
    "platform_system": "Linux",
    "platform_version": "#1 SMP",
    "python_full_version": "3.11.7",
    "platform_python_implementation": "CPython",
    "python_version": "3.11",
    "sys_platform": "linux",
}


def test_extra_requirements_expand_the_projects_own_extras_once() -> None:
    assert extra_requirements(PYPROJECT, "service") == ["numpy>=1.26", "fastapi>=0.115", "rapidocr>=3.4"]


def test_extra_requirements_refuse_an_unknown_extra() -> None:
    with pytest.raises(HarnessError, match="no extra 'gpu'"):
        extra_requirements(PYPROJECT, "gpu")


def test_build_requirements_add_wheel_for_setuptools_only() -> None:
    assert build_requirements(PYPROJECT) == ["setuptools>=68", "wheel"]
    hatch = {"build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"}}
    assert build_requirements(hatch) == ["hatchling"]


def test_plan_key_changes_with_the_requirements() -> None:
    plan = WheelhousePlan.from_pyproject(PYPROJECT)
    assert plan.key() == WheelhousePlan.from_pyproject(PYPROJECT).key()
    assert plan.key() != WheelhousePlan((*plan.requirements, "redis>=5"), plan.build_requirements).key()
    argv = plan.pip_argv("/venv/bin/python", Path("/wh"))
    assert argv[:4] == ["/venv/bin/python", "-m", "pip", "wheel"]
    assert argv[argv.index("--wheel-dir") + 1] == "/wh"
    assert argv[-2:] == ["setuptools>=68", "wheel"]


def test_only_cpython_311_on_x86_64_collects_the_wheelhouse() -> None:
    check_interpreter((3, 11), "x86_64", "cpython")
    for version, machine, impl in [((3, 12), "x86_64", "cpython"), ((3, 11), "aarch64", "cpython"),
                                   ((3, 11), "x86_64", "pypy")]:  # fmt: skip
        with pytest.raises(ToolMissing):
            check_interpreter(version, machine, impl)


def test_incompatible_wheels() -> None:
    good = [
        "six-1.17.0-py2.py3-none-any.whl",
        "numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "opencv_python_headless-5.0.0.93-cp37-abi3-manylinux_2_28_x86_64.whl",
        "antlr4_python3_runtime-4.9.3-py3-none-any.whl",
        "thing-1.0-1-cp311-cp311-linux_x86_64.whl",
    ]
    bad = [
        "numpy-2.4.6-cp312-cp312-manylinux_2_28_x86_64.whl",
        "numpy-2.4.6-cp311-cp311-manylinux_2_28_aarch64.whl",
        "numpy-2.4.6-cp311-cp311-win_amd64.whl",
        "future-0.1-cp312-abi3-manylinux_2_28_x86_64.whl",
    ]
    assert incompatible_wheels(good + bad) == bad


def test_target_environments_span_the_311_series() -> None:
    envs = target_environments(HOST)
    assert [e["python_full_version"] for e in envs] == ["3.11.0", "3.11.99"]
    assert all(e["sys_platform"] == "linux" and e["python_version"] == "3.11" for e in envs)


def test_unmet_requirements_finds_what_an_older_311_needs() -> None:
    metadata = {
        "redis": ['async-timeout>=4.0.3; python_full_version < "3.11.3"', 'pyjwt>=2; extra == "jwt"'],
        "fastapi": ["starlette>=0.40", 'uvicorn[standard]>=0.12; extra == "standard"'],
        "starlette": [],
        "uvicorn": ['uvloop>=0.15; extra == "standard"', 'colorama; sys_platform == "win32"'],
    }
    top = ["redis>=5", "fastapi>=0.115", "uvicorn>=0.30"]
    assert unmet_requirements(metadata, top, target_environments(HOST)) == ["async-timeout>=4.0.3"]


def test_unmet_requirements_follow_requested_extras() -> None:
    metadata = {"fastapi": ['uvicorn[standard]>=0.12; extra == "standard"'], "uvicorn": ['uvloop; extra == "standard"']}
    unmet = unmet_requirements(metadata, ["fastapi[standard]"], target_environments(HOST))
    assert unmet == ["uvloop"]


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_wheel_metadata_reads_name_and_requires_dist(tmp_path: Path) -> None:
    meta = (
        b"Metadata-Version: 2.1\nName: Redis\nVersion: 8.1.0\n"
        b"Requires-Dist: async-timeout>=4.0.3; python_full_version < '3.11.3'\n\n"
    )
    wheel = _wheel(tmp_path / "redis-8.1.0-py3-none-any.whl", {"redis-8.1.0.dist-info/METADATA": meta})
    assert wheel_metadata(wheel) == ("redis", ["async-timeout>=4.0.3; python_full_version < '3.11.3'"])


def test_model_version_is_the_services_rule(tmp_path: Path) -> None:
    import hashlib

    files = {
        "rapidocr/models/PP-OCRv6_det_small.onnx": b"det",
        "rapidocr/models/PP-OCRv6_rec_small.onnx": b"rec",
        "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx": b"cls",
        "rapidocr/models/.gitkeep": b"",
    }
    _wheel(tmp_path / "rapidocr-3.10.0-py3-none-any.whl", files)
    assert model_version(tmp_path) == "3.10.0+" + hashlib.sha256(b"detreccls").hexdigest()[:12]


def test_model_version_needs_exactly_one_model_per_role(tmp_path: Path) -> None:
    _wheel(tmp_path / "rapidocr-3.10.0-py3-none-any.whl", {"rapidocr/models/x_det.onnx": b"d"})
    with pytest.raises(HarnessError, match="expected one det, rec and cls"):
        model_version(tmp_path)
    assert model_version(tmp_path / "nothing-here") is None
