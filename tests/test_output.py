"""The output folder: user files are never touched, reruns need --overwrite, mount points work, interruptions leave nothing."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from lightning_unlearn.pipeline import ConfigError, output
from lightning_unlearn.pipeline.output import MANIFEST, check_output_dir, publish, read_manifest


def report(content: str, *, figures=("avg_gap.png",)):
    """A ``write`` callback writing a results.json, a report.md and figures."""

    def write(folder: Path) -> None:
        (folder / "results.json").write_text(json.dumps({"run": content}))
        (folder / "report.md").write_text(f"# {content}\n")
        for f in figures:
            (folder / f).write_bytes(content.encode() + f.encode())

    return write


def user_files(folder: Path) -> dict[str, str]:
    """The user's own files: a notes.txt and a sub-folder with a file."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my notes")
    (folder / "sub" / "data.csv").write_text("1,2,3")
    return {"notes.txt": "my notes", "sub/data.csv": "1,2,3"}


def assert_user_files(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        assert (folder / name).read_text() == text, name


def leftovers(*folders: Path) -> list[str]:
    return [p.name for f in folders for p in f.iterdir() if p.name.startswith(".") and p.name != MANIFEST]


def test_a_new_folder_gets_the_files_and_a_manifest_of_them(tmp_path):
    out = tmp_path / "a" / "out"
    publish(out, report("one"))
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "results.json", "report.md", "avg_gap.png"])
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["files"] == {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in ("avg_gap.png", "report.md", "results.json")}
    assert not leftovers(tmp_path / "a", out)


def test_a_rerun_refuses_without_overwrite_and_replaces_only_its_own_files_with_it(tmp_path):
    out = tmp_path / "out"
    publish(out, report("one", figures=("avg_gap.png", "spectral_norms.png")))
    mine = user_files(out)
    with pytest.raises(ConfigError, match=r"holds the results of a previous run .*pass --overwrite"):
        check_output_dir(out)
    check_output_dir(out, overwrite=True)
    publish(out, report("two"), overwrite=True)
    assert json.loads((out / "results.json").read_text()) == {"run": "two"}
    assert not (out / "spectral_norms.png").exists()  # the library's own file the new run does not produce
    assert_user_files(out, mine)
    assert sorted(json.loads((out / MANIFEST).read_text())["files"]) == ["avg_gap.png", "report.md", "results.json"]
    assert "previous" not in json.loads((out / MANIFEST).read_text())
    assert not leftovers(tmp_path, out)


def test_a_file_the_user_changed_or_put_in_the_way_is_never_replaced(tmp_path):
    out = tmp_path / "out"
    publish(out, report("one"))
    (out / "report.md").write_text("edited by hand")
    with pytest.raises(ConfigError, match="holds 'report.md', not written by lightning-unlearn"):
        check_output_dir(out, overwrite=True)
    with pytest.raises(ConfigError, match="'report.md'"):
        publish(out, report("two"), overwrite=True)
    assert (out / "report.md").read_text() == "edited by hand"
    # a folder where a report file goes is in the way too
    other = tmp_path / "other"
    (other / "avg_gap.png").mkdir(parents=True)
    with pytest.raises(ConfigError, match="'avg_gap.png'"):
        check_output_dir(other)


def test_a_file_put_in_the_way_during_the_run_keeps_both_it_and_the_results(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    check_output_dir(out)

    def write(folder: Path) -> None:
        report("one")(folder)
        (out / "report.md").write_text("written by the user meanwhile")

    with pytest.raises(output.OutputInTheWayError, match="results are kept in") as err:
        publish(out, write)
    assert (out / "report.md").read_text() == "written by the user meanwhile"
    assert (err.value.kept / "results.json").is_file()


def test_a_non_empty_folder_of_user_files_receives_the_report_inside(tmp_path):
    out = tmp_path / "mine"
    mine = user_files(out)
    check_output_dir(out)
    publish(out, report("one"))
    assert_user_files(out, mine)
    assert (out / "results.json").is_file() and not leftovers(tmp_path, out)
    assert sorted(read_manifest(out)) == ["avg_gap.png", "report.md", "results.json"]


def _rename_of_folders_fails(monkeypatch):
    """Like a mount point: a folder cannot be renamed (EBUSY); files inside it can."""
    real = os.replace

    def replace(src, dst, *a, **k):
        if Path(src).is_dir() or Path(dst).is_dir():
            raise OSError(errno.EBUSY, "Device or resource busy", str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(output.os, "replace", replace)


@pytest.mark.parametrize("holds", ["nothing", "user files", "a previous run"])
def test_a_mount_point_works_as_out(tmp_path, monkeypatch, holds):
    out = tmp_path / "mnt"
    out.mkdir()
    mine = user_files(out) if holds == "user files" else {}
    if holds == "a previous run":
        publish(out, report("zero"))
    _rename_of_folders_fails(monkeypatch)
    check_output_dir(out, overwrite=True)
    publish(out, report("one"), overwrite=True)
    assert json.loads((out / "results.json").read_text()) == {"run": "one"}
    assert_user_files(out, mine)
    assert not leftovers(tmp_path, out)


def test_a_new_folder_that_cannot_be_renamed_into_place_is_filled_file_by_file(tmp_path, monkeypatch):
    _rename_of_folders_fails(monkeypatch)
    out = tmp_path / "out"
    publish(out, report("one"))
    assert json.loads((out / "results.json").read_text()) == {"run": "one"}
    assert sorted(read_manifest(out)) == ["avg_gap.png", "report.md", "results.json"]
    assert not leftovers(tmp_path, out)


@pytest.mark.parametrize("existing", [False, True])
def test_an_interruption_while_writing_leaves_the_folder_as_it_was(tmp_path, existing):
    out = tmp_path / "out"
    if existing:
        publish(out, report("one"))
    before = {p.name: p.read_bytes() for p in out.iterdir()} if existing else None

    def interrupted(folder: Path) -> None:
        report("two")(folder)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish(out, interrupted, overwrite=True)
    if existing:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    else:
        assert not out.exists()
    assert not leftovers(tmp_path, *([out] if existing else []))


def test_a_replacement_cut_short_leaves_every_library_file_listed(tmp_path, monkeypatch):
    """A crash between two file moves: the manifest lists old and new files, and the next rerun cleans up."""
    out = tmp_path / "out"
    publish(out, report("one", figures=("avg_gap.png", "spectral_norms.png")))
    mine = user_files(out)
    real, moved = output._place, []

    def place_then_crash(src, dst):
        if moved:
            raise OSError(errno.EIO, "simulated crash")
        moved.append(dst)
        real(src, dst)

    monkeypatch.setattr(output, "_place", place_then_crash)
    with pytest.raises(OSError, match="simulated crash"):
        publish(out, report("two"), overwrite=True)
    monkeypatch.setattr(output, "_place", real)
    owned = read_manifest(out)
    assert all(output._owned(out, n, owned) for n in ("results.json", "report.md", "avg_gap.png", "spectral_norms.png"))
    check_output_dir(out, overwrite=True)  # nothing of the library's looks foreign
    publish(out, report("three"), overwrite=True)
    assert json.loads((out / "results.json").read_text()) == {"run": "three"} and not (out / "spectral_norms.png").exists()
    assert_user_files(out, mine)


def test_results_of_an_earlier_version_without_a_manifest_count_as_a_previous_run(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "results.json").write_text("{}")
    (out / "report.md").write_text("# old")
    mine = user_files(out)
    with pytest.raises(ConfigError, match="--overwrite"):
        check_output_dir(out)
    publish(out, report("new"), overwrite=True)
    assert (out / "report.md").read_text() == "# new\n"
    assert_user_files(out, mine)


def test_an_unreadable_manifest_is_named(tmp_path):
    out = tmp_path / "out"
    publish(out, report("one"))
    (out / MANIFEST).write_text("{not json")
    with pytest.raises(ConfigError, match=r"manifest .*\.lightning-unlearn-manifest\.json.* cannot be read"):
        check_output_dir(out, overwrite=True)

