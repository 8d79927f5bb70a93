from __future__ import annotations

import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import huggingface_hub.constants as hf_constants
import pytest
from faster_whisper.utils import available_models
from tqdm import tqdm

from hark.errors import ModelDownloadError, ModelNotInstalledError, UnknownModelError
from hark.pipeline import model_packages, model_store
from hark.pipeline.model_files import SOURCE_FILE, is_whisper_model_dir, read_source
from hark.pipeline.model_store import (
    QUALITY_ORDER,
    WHISPER_REPOS,
    InstalledModel,
    best_installed,
    installed_models,
    pull,
    remove,
    resolve_whisper_model,
)
from tests.support.fake_hub import (
    FakeHub,
    fake_whisper_files,
    on_this_machine,
    unreachable_endpoint,
)

EXTRAS = {"README.md": b"# not part of the model\n", "model.safetensors": b"\0" * 512}


@pytest.fixture(autouse=True)
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every Hugging Face location at tmp_path; the real ~/.cache stays untouched."""
    home = tmp_path / "hf-home"
    for var, value in {
        "HF_HOME": home,
        "HF_HUB_CACHE": home / "hub",
        "HF_TOKEN_PATH": home / "token",
    }.items():
        monkeypatch.setenv(var, str(value))
    for var in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # The library reads its environment once, at import, so its constants move too.
    monkeypatch.setattr(hf_constants, "HF_HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    return home


@pytest.fixture(autouse=True)
def stays_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from on_this_machine(monkeypatch)


@pytest.fixture(autouse=True)
def no_model_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model directory and the hub alone; model packages have their own tests."""
    monkeypatch.setattr(model_packages, "PACKAGES", ())
    monkeypatch.setattr(model_packages, "BY_MODEL", {})


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as running:
        for name in ("tiny", "large-v3"):
            running.add_repo(WHISPER_REPOS[name], {**fake_whisper_files(name), **EXTRAS})
        yield running


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


def fake_install(model_dir: Path, name: str, model_bytes: int = 100) -> Path:
    path = model_dir / name
    path.mkdir(parents=True)
    (path / "model.bin").write_bytes(b"m" * model_bytes)
    (path / "config.json").write_text("{}")
    (path / "tokenizer.json").write_text("{}")
    return path


def model_files_size(name: str) -> int:
    return sum(len(data) for data in fake_whisper_files(name).values())


# --- the tables ---------------------------------------------------------------------------


def test_repos_follow_faster_whisper_and_every_name_is_ranked() -> None:
    assert list(WHISPER_REPOS) == available_models()
    assert WHISPER_REPOS["small"] == "Systran/faster-whisper-small"
    assert set(QUALITY_ORDER) == set(WHISPER_REPOS)
    assert len(QUALITY_ORDER) == len(set(QUALITY_ORDER))


def test_quality_order_puts_bigger_and_multilingual_first() -> None:
    rank = QUALITY_ORDER.index
    assert rank("large-v3") < rank("large-v2") < rank("large-v3-turbo") < rank("medium")
    assert rank("medium") < rank("small") < rank("base") < rank("tiny")
    for size in ("medium", "small", "base", "tiny"):
        assert rank(size) < rank(f"{size}.en")


# --- recognising and listing installs ---------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (("model.bin", "config.json", "tokenizer.json"), True),
        (("model.bin", "config.json", "vocabulary.json"), True),
        (("model.bin", "config.json", "vocabulary.txt"), True),
        (("model.bin", "config.json"), False),
        (("config.json", "tokenizer.json", "vocabulary.txt"), False),
        (("model.bin", "tokenizer.json", "vocabulary.txt"), False),
    ],
)
def test_is_whisper_model_dir(tmp_path: Path, files: tuple[str, ...], expected: bool) -> None:
    for name in files:
        (tmp_path / name).write_bytes(b"x")
    assert is_whisper_model_dir(tmp_path) is expected


def test_is_whisper_model_dir_rejects_files_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"x")
    assert not is_whisper_model_dir(tmp_path / "model.bin")
    assert not is_whisper_model_dir(tmp_path / "absent")


def test_installed_models_of_missing_dir_is_empty(model_dir: Path) -> None:
    assert installed_models(model_dir) == []
    assert best_installed(model_dir) is None


def test_installed_models_sorted_by_quality_with_sizes(model_dir: Path) -> None:
    for name, size in [("tiny", 10), ("base.en", 20), ("base", 30), ("large-v2", 40),
                       ("medium.en", 50), ("my-finetune", 60)]:
        fake_install(model_dir, name, model_bytes=size)
    (model_dir / "notes").mkdir()  # not a model
    fake_install(model_dir, ".pull-small-abc")  # an unfinished download

    listed = installed_models(model_dir)

    assert [m.name for m in listed] == [
        "large-v2", "medium.en", "base", "base.en", "tiny", "my-finetune",
    ]
    assert listed[0] == InstalledModel("large-v2", model_dir / "large-v2", 40 + 2 + 2,
                                       source="local", english_only=False)
    assert (listed[1].english_only, listed[-1].english_only) == (True, None)
    best = best_installed(model_dir)
    assert best is not None and best.name == "large-v2"


def test_size_counts_nested_files(model_dir: Path) -> None:
    path = fake_install(model_dir, "small", model_bytes=1000)
    (path / "extra").mkdir()
    (path / "extra" / "notes.txt").write_bytes(b"y" * 24)
    assert installed_models(model_dir)[0].size_bytes == 1000 + 2 + 2 + 24


def test_best_installed_skips_names_it_cannot_rank(model_dir: Path) -> None:
    fake_install(model_dir, "my-finetune")
    assert [m.name for m in installed_models(model_dir)] == ["my-finetune"]
    assert best_installed(model_dir) is None
    fake_install(model_dir, "tiny.en")
    best = best_installed(model_dir)
    assert best is not None and best.name == "tiny.en"


# --- pull -----------------------------------------------------------------------------


def test_pull_downloads_only_the_model_files(
    hub: FakeHub, model_dir: Path, hf_home: Path
) -> None:
    model = pull("tiny", model_dir, endpoint=hub.url, progress=False)

    expected = fake_whisper_files("tiny")
    assert model == InstalledModel("tiny", model_dir / "tiny", model_files_size("tiny"),
                                   source="hub", english_only=False)
    # The model's files, and a note of where they came from.
    assert sorted(p.name for p in model.path.iterdir()) == sorted([*expected, SOURCE_FILE])
    assert read_source(model.path)["repo_id"] == WHISPER_REPOS["tiny"]
    for name, data in expected.items():
        assert (model.path / name).read_bytes() == data
    assert list(model_dir.iterdir()) == [model.path]  # no staging directory left
    assert not any(path.endswith(("README.md", "model.safetensors")) for path in hub.downloads())
    assert hub.unexpected == []
    assert not hf_home.exists()


def test_pulled_model_is_listed_and_resolved(hub: FakeHub, model_dir: Path) -> None:
    model = pull("tiny", model_dir, endpoint=hub.url, progress=False)

    assert installed_models(model_dir) == [model]
    assert best_installed(model_dir) == model
    assert resolve_whisper_model("tiny", model_dir, allow_downloads=False) == model.path


def test_pull_of_installed_model_makes_no_request(hub: FakeHub, model_dir: Path) -> None:
    first = pull("tiny", model_dir, endpoint=hub.url, progress=False)
    seen = len(hub.requests)
    again = pull("tiny", model_dir, endpoint=hub.url, progress=False)
    assert again == first
    assert len(hub.requests) == seen


def test_alias_installs_under_full_name(hub: FakeHub, model_dir: Path) -> None:
    model = pull("large", model_dir, endpoint=hub.url, progress=False)

    assert model.name == "large-v3"
    assert model.path == model_dir / "large-v3"
    assert resolve_whisper_model("large", model_dir, allow_downloads=False) == model.path
    assert remove("large", model_dir) == model.path
    assert not model.path.exists()


def test_pull_replaces_a_damaged_install(hub: FakeHub, model_dir: Path) -> None:
    broken = model_dir / "tiny"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{}")

    model = pull("tiny", model_dir, endpoint=hub.url, progress=False)

    assert model.path == broken
    assert is_whisper_model_dir(broken)
    assert (broken / "model.bin").read_bytes() == fake_whisper_files("tiny")["model.bin"]
    assert list(model_dir.iterdir()) == [broken]


class RecordingTqdm(tqdm):
    bars: ClassVar[list[RecordingTqdm]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = False
        super().__init__(*args, **kwargs)
        self.closed = False
        RecordingTqdm.bars.append(self)

    def close(self) -> None:
        self.closed = True
        super().close()


def test_pull_reports_progress_through_given_tqdm_class(hub: FakeHub, model_dir: Path) -> None:
    RecordingTqdm.bars = []
    pull("tiny", model_dir, endpoint=hub.url, tqdm_class=RecordingTqdm)

    byte_counts = [bar.n for bar in RecordingTqdm.bars if bar.unit == "B"]
    assert model_files_size("tiny") in byte_counts
    assert all(bar.closed for bar in RecordingTqdm.bars)  # none left drawing


def test_pull_without_progress_ignores_tqdm_class(hub: FakeHub, model_dir: Path) -> None:
    RecordingTqdm.bars = []
    pull("tiny", model_dir, endpoint=hub.url, progress=False, tqdm_class=RecordingTqdm)
    assert RecordingTqdm.bars == []
    assert is_whisper_model_dir(model_dir / "tiny")


def test_pull_with_the_library_default_bars(hub: FakeHub, model_dir: Path) -> None:
    model = pull("tiny", model_dir, endpoint=hub.url)
    assert model.size_bytes == model_files_size("tiny")


def test_pull_works_with_rich_progress_bars(hub: FakeHub, model_dir: Path) -> None:
    from tqdm.rich import tqdm as rich_tqdm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm.rich announces itself as experimental
        model = pull("tiny", model_dir, endpoint=hub.url, tqdm_class=rich_tqdm)
    assert is_whisper_model_dir(model.path)


def test_pull_unknown_name(model_dir: Path) -> None:
    with pytest.raises(UnknownModelError) as caught:
        pull("huge-v9", model_dir, endpoint=unreachable_endpoint())
    assert "large-v3" in caught.value.message and "tiny.en" in caught.value.message
    assert not model_dir.exists()


def test_pull_from_unreachable_hub_fails_fast_and_leaves_nothing(
        model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = unreachable_endpoint()
    port = int(endpoint.rsplit(":", 1)[1])
    attempts: list[Any] = []
    connect = socket.socket.connect

    def recording(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[1] == port:
            attempts.append(address)
        connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", recording)

    with pytest.raises(ModelDownloadError) as caught:
        pull("tiny", model_dir, endpoint=endpoint, progress=False)

    # Fast: the refused connection ends the pull; it is not retried (with backoff).
    assert len(attempts) == 1, attempts
    message = caught.value.message
    assert endpoint in message and "could not be reached" in message
    assert "\n" not in message
    assert caught.value.code == "MODEL_DOWNLOAD_FAILED"
    assert list(model_dir.iterdir()) == []


def test_failure_mid_download_leaves_nothing_and_can_be_retried(
    hub: FakeHub, model_dir: Path
) -> None:
    hub.fail_download(WHISPER_REPOS["tiny"], "model.bin", 500)

    with pytest.raises(ModelDownloadError) as caught:
        pull("tiny", model_dir, endpoint=hub.url, progress=False)

    assert "HTTP 500" in caught.value.message and hub.url in caught.value.message
    assert any(path.endswith("/config.json") for path in hub.downloads())  # got under way
    assert list(model_dir.iterdir()) == []
    assert installed_models(model_dir) == []

    hub.failures.clear()
    model = pull("tiny", model_dir, endpoint=hub.url, progress=False)
    assert model.size_bytes == model_files_size("tiny")
    assert list(model_dir.iterdir()) == [model.path]


def test_pull_of_repo_missing_on_hub(hub: FakeHub, model_dir: Path) -> None:
    with pytest.raises(ModelDownloadError, match="no such repository"):
        pull("base", model_dir, endpoint=hub.url, progress=False)
    assert list(model_dir.iterdir()) == []


def test_pull_of_repo_without_model_files(hub: FakeHub, model_dir: Path) -> None:
    hub.add_repo(WHISPER_REPOS["small"], EXTRAS)
    with pytest.raises(ModelDownloadError, match="no CTranslate2 Whisper model"):
        pull("small", model_dir, endpoint=hub.url, progress=False)
    assert list(model_dir.iterdir()) == []


def test_offline_mode_is_named(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelDownloadError, match="HF_HUB_OFFLINE"):
        pull("tiny", model_dir, endpoint=unreachable_endpoint(), progress=False)
    assert list(model_dir.iterdir()) == []


# --- remove ---------------------------------------------------------------------------


def test_remove(model_dir: Path) -> None:
    path = fake_install(model_dir, "small")
    fake_install(model_dir, "my-finetune")

    assert remove("small", model_dir) == path
    assert not path.exists()
    assert [m.name for m in installed_models(model_dir)] == ["my-finetune"]
    assert remove("my-finetune", model_dir) == model_dir / "my-finetune"
    with pytest.raises(ModelNotInstalledError):
        remove("small", model_dir)


def test_remove_stays_inside_model_dir(tmp_path: Path, model_dir: Path) -> None:
    outside = fake_install(tmp_path, "victim")
    model_dir.mkdir()
    for name in ("../victim", str(outside), "..", ""):
        with pytest.raises(ModelNotInstalledError):
            remove(name, model_dir)
    assert is_whisper_model_dir(outside)


# --- resolve --------------------------------------------------------------------------


def test_resolve_local_directory(tmp_path: Path, model_dir: Path) -> None:
    local = fake_install(tmp_path, "somewhere")
    assert resolve_whisper_model(str(local), model_dir, allow_downloads=False) == local


def test_resolve_directory_that_is_not_a_model(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnknownModelError, match="not a CTranslate2 Whisper model"):
        resolve_whisper_model(str(tmp_path / "empty"), model_dir, allow_downloads=True)
    with pytest.raises(UnknownModelError, match="No model directory"):
        resolve_whisper_model(str(tmp_path / "nowhere"), model_dir, allow_downloads=True)


def test_resolve_installed_names_without_network(model_dir: Path) -> None:
    small = fake_install(model_dir, "small")
    custom = fake_install(model_dir, "my-finetune")
    offline = unreachable_endpoint()
    resolved = resolve_whisper_model("small", model_dir, allow_downloads=True, endpoint=offline)
    assert resolved == small
    assert resolve_whisper_model("my-finetune", model_dir, allow_downloads=False) == custom


def test_resolve_not_installed_without_downloads(hub: FakeHub, model_dir: Path) -> None:
    with pytest.raises(ModelNotInstalledError) as caught:
        resolve_whisper_model("tiny", model_dir, allow_downloads=False, endpoint=hub.url)
    assert "hark models pull tiny" in caught.value.message
    assert caught.value.code == "MODEL_NOT_INSTALLED"
    assert hub.requests == []
    assert not (model_dir / "tiny").exists()


def test_resolve_not_installed_with_downloads(hub: FakeHub, model_dir: Path) -> None:
    path = resolve_whisper_model("tiny", model_dir, allow_downloads=True, endpoint=hub.url)
    assert path == model_dir / "tiny"
    assert (path / "model.bin").read_bytes() == fake_whisper_files("tiny")["model.bin"]
    assert hub.downloads()


def test_resolve_unknown_name_lists_known_ones(model_dir: Path) -> None:
    with pytest.raises(UnknownModelError) as caught:
        resolve_whisper_model("gigantic", model_dir, allow_downloads=True)
    assert caught.value.code == "UNKNOWN_MODEL"
    for name in ("large-v3", "distil-large-v3", "tiny.en"):
        assert name in caught.value.message


def test_module_stays_out_of_app_layers() -> None:
    source = Path(model_store.__file__).read_text()
    for forbidden in ("hark.config", "hark.web", "hark.api", "hark.db", "hark.queue"):
        assert forbidden not in source
