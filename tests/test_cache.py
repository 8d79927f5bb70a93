import threading
import time

import pytest

from hark.pipeline.engines.cache import ModelCache
from tests.support.common import wait_for


class FakeModel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_loads_once_and_reuses() -> None:
    cache: ModelCache[FakeModel] = ModelCache(max_entries=2, idle_seconds=60)
    with cache.use("a", lambda: FakeModel("a")) as first:
        pass
    with cache.use("a", lambda: FakeModel("other")) as second:
        pass
    assert first is second
    assert cache.loads == 1


def test_least_recently_used_is_evicted_and_closed() -> None:
    cache: ModelCache[FakeModel] = ModelCache(max_entries=2, idle_seconds=60)
    models = {}
    for key in ("a", "b"):
        with cache.use(key, lambda k=key: FakeModel(k)) as m:  # type: ignore[misc]
            models[key] = m
    with cache.use("a", lambda: FakeModel("a2")):
        pass
    with cache.use("c", lambda: FakeModel("c")):
        pass
    assert cache.keys() == ["a", "c"]
    assert models["b"].closed and not models["a"].closed


def test_model_in_use_is_not_evicted() -> None:
    cache: ModelCache[FakeModel] = ModelCache(max_entries=1, idle_seconds=60)
    with cache.use("a", lambda: FakeModel("a")) as a:
        with cache.use("b", lambda: FakeModel("b")) as b:
            assert not a.closed and not b.closed
            assert set(cache.keys()) == {"a", "b"}
        assert not a.closed
    # Once both are released the cache shrinks back to its bound.
    assert len(cache.keys()) == 1
    assert a.closed != b.closed


def test_idle_models_are_unloaded_by_the_sweeper(monkeypatch: pytest.MonkeyPatch) -> None:
    cache: ModelCache[FakeModel] = ModelCache(max_entries=4, idle_seconds=0.2)
    sweeps: list[float] = []
    sweep = cache.sweep

    def recorded_sweep() -> int:
        sweeps.append(time.monotonic())
        return sweep()

    monkeypatch.setattr(cache, "sweep", recorded_sweep)
    with cache.use("a", lambda: FakeModel("a")) as a:
        held = time.monotonic()
        # A sweep once the model had sat longer than idle_seconds would unload it, were
        # it not in use.
        wait_for(lambda: any(at - held > cache.idle_seconds for at in sweeps),
                 message="the sweeper did not run")
        assert not a.closed, "a model in use must not be unloaded"
    wait_for(lambda: a.closed, message="an idle model stayed loaded")
    assert cache.keys() == []


def test_concurrent_first_use_loads_one_copy() -> None:
    cache: ModelCache[FakeModel] = ModelCache(max_entries=2, idle_seconds=60)
    seen: list[FakeModel] = []

    def slow_load() -> FakeModel:
        time.sleep(0.2)
        return FakeModel("slow")

    def borrow() -> None:
        with cache.use("k", slow_load) as m:
            seen.append(m)

    threads = [threading.Thread(target=borrow) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.loads == 1
    assert len({id(m) for m in seen}) == 1


def test_one_large_model_at_a_time() -> None:
    from hark.pipeline.engines.sizes import LARGE, size_class

    cache: ModelCache[FakeModel] = ModelCache(
        max_entries=4, idle_seconds=60, exclusive=lambda key: size_class(key) == LARGE)
    loaded = {}
    for key in ("large-v3", "small", "large-v2"):
        with cache.use(key, lambda k=key: FakeModel(k)) as m:  # type: ignore[misc]
            loaded[key] = m
    assert cache.keys() == ["small", "large-v2"]
    assert loaded["large-v3"].closed and not loaded["small"].closed


def test_size_classes() -> None:
    from hark.pipeline.engines.sizes import size_class

    assert [size_class(m) for m in ("pocketsphinx", "tiny.en", "faster-whisper/small",
                                    "distil-small.en")] == ["small"] * 4
    assert [size_class(m) for m in ("medium", "distil-medium.en")] == ["medium"] * 2
    assert [size_class(m) for m in ("large-v3", "turbo", "distil-large-v3",
                                    "faster-whisper/large-v2")] == ["large"] * 4
