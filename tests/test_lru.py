"""Tests for diffae_app.lru (the one LRU map) and its use by the app's model registry."""

from __future__ import annotations

import logging

import pytest

from diffae_app.lru import LRU
from diffae_app.ui.models import ModelRegistry


def test_oldest_goes_first_and_a_read_makes_an_entry_new() -> None:
    dropped = []
    cache = LRU(2, on_evict=lambda key, value: dropped.append((key, value)))
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the oldest
    cache.put("c", 3)
    assert dropped == [("b", 2)]
    assert cache.keys() == ["a", "c"] and cache.get("b") is None


def test_weight_bound_keeps_at_least_the_newest_entry() -> None:
    cache = LRU(10, max_weight=5, weigh=len)
    cache.put("a", "xxx")
    cache.put("b", "yyy")  # 6 > 5: "a" goes
    assert cache.keys() == ["b"]
    cache.put("c", "z" * 9)  # heavier than the bound alone: still kept, as the newest
    assert cache.keys() == ["c"]


def test_pop_and_clear_forget_entries_and_their_weights() -> None:
    cache = LRU(3, max_weight=4, weigh=len)
    cache.put("a", "xx")
    assert cache.pop("a") == "xx" and cache.pop("a") is None
    cache.put("b", "yy")
    cache.put("c", "zz")  # 4 <= 4: the popped entry's weight no longer counts
    assert cache.keys() == ["b", "c"]
    cache.clear()
    assert len(cache) == 0


def test_size_zero_keeps_nothing() -> None:
    cache = LRU(0)
    cache.put("a", 1)
    assert cache.get("a") is None and len(cache) == 0


def test_registry_unloads_the_least_recently_used_model(caplog: pytest.LogCaptureFixture) -> None:
    loads = []

    def loader(spec: str) -> object:
        loads.append(spec)
        return object()

    registry = ModelRegistry(loader, "default", choices=("one", "two"), max_loaded=2)
    first = registry.get("one")
    assert registry.get("one") is first and loads == ["default", "one"]
    with caplog.at_level(logging.INFO, logger="diffae_app.ui.models"):
        registry.get("two")
    assert "unloading model one" in caplog.text
    assert registry.loaded() == ["default", "two"]
    assert registry.get("one") is not first  # loaded again
    assert loads == ["default", "one", "two", "one"]
