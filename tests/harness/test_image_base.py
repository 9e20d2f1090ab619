from pathlib import Path

from harness.provisioning.image.base import BASE_TAG, KEY_LABEL, BasePlan, mounts_under, prune


def test_debootstrap_argv_is_minbase_bookworm_with_python() -> None:
    argv = BasePlan().debootstrap_argv(Path("/cache/rootfs"))
    assert argv == [
        "debootstrap",
        "--variant=minbase",
        "--include=python3,python3-venv,ca-certificates",
        "bookworm",
        "/cache/rootfs",
        "http://deb.debian.org/debian",
    ]


def test_key_follows_the_contents_not_the_mirror() -> None:
    plan = BasePlan()
    assert plan.key() == BasePlan(mirror="http://mirror.example/debian").key()
    assert plan.key() != BasePlan(include=("python3", "python3-venv")).key()
    assert plan.key() == BasePlan(include=("ca-certificates", "python3-venv", "python3")).key()


def test_tarball_is_named_by_key_under_the_cache(tmp_path: Path) -> None:
    plan = BasePlan()
    assert plan.tarball(tmp_path) == tmp_path / "base" / f"debian-bookworm-minbase-{plan.key()}.tar"


def test_import_labels_the_image_with_its_key() -> None:
    plan = BasePlan()
    argv = plan.import_argv(Path("/c/b.tar"))
    assert argv[-2:] == ["/c/b.tar", BASE_TAG]
    assert f"LABEL {KEY_LABEL}={plan.key()}" in argv


def test_tar_keeps_numeric_owners() -> None:
    argv = BasePlan().tar_argv(Path("/r"), Path("/c/b.tar"))
    assert "--numeric-owner" in argv and argv[-3:] == ["--directory", "/r", "."]


def test_prune_empties_the_listed_directories_only(tmp_path: Path) -> None:
    for rel in ("usr/share/doc/python3", "var/lib/apt/lists", "usr/lib/python3.11", "dev"):
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / "usr/share/doc/python3/copyright").write_text("x")
    (tmp_path / "var/lib/apt/lists/deb.debian.org_Packages").write_text("x")
    (tmp_path / "usr/lib/python3.11/os.py").write_text("x")
    (tmp_path / "dev/null").write_text("not a device here")
    prune(tmp_path)
    assert list((tmp_path / "usr/share/doc").iterdir()) == []
    assert list((tmp_path / "var/lib/apt/lists").iterdir()) == []
    assert list((tmp_path / "dev").iterdir()) == []
    assert (tmp_path / "usr/lib/python3.11/os.py").is_file()


def test_mounts_under_finds_nested_mounts_deepest_first(tmp_path: Path) -> None:
    root = tmp_path / "boot strap"
    table = "\n".join(
        [
            "proc /proc proc rw 0 0",
            f"proc {tmp_path}/boot\\040strap/rootfs/proc proc rw 0 0",
            f"devpts {tmp_path}/boot\\040strap/rootfs/dev/pts devpts rw 0 0",
            f"tmpfs {tmp_path}/boot\\040strapx tmpfs rw 0 0",
        ]
    )
    assert mounts_under(root, table) == [root / "rootfs/dev/pts", root / "rootfs/proc"]
