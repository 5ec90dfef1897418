"""Registry: entry points (the suite's own are its built-ins), world-provided scorers, plugins, helpful errors."""

import sys
from types import SimpleNamespace

import pytest

import bench.registry as registry_module
from bench.errors import BenchError
from bench.registry import DISTRIBUTION, METHODS, SCORERS, WORLDS, Registry


def test_unknown_names_list_known_and_closest():
    with pytest.raises(BenchError) as err:
        METHODS.get("dpko")
    assert "unknown method 'dpko'; known: " in str(err.value)
    assert "ddpo, dpok, kl-only, reward-only, sft" in str(err.value)
    assert str(err.value).endswith("did you mean 'dpok'?")
    with pytest.raises(BenchError, match="unknown scorer 'compressability'.*did you mean 'compressibility'"):
        SCORERS.get("compressability")


def _points(*rows):
    """Fake entry points: (name, target, distribution)."""
    return lambda group: [SimpleNamespace(name=n, value=v, dist=SimpleNamespace(name=d)) for n, v, d in rows]


def test_only_the_requested_entry_is_imported(monkeypatch):
    monkeypatch.setattr(
        registry_module,
        "entry_points",
        _points(("a", "bench_fake_a:A", "other"), ("b", "bench.evaluations.compressibility:Compressibility", "x")),
    )
    registry = Registry("scorer", "bench.test-none")
    assert registry.get("b").name == "compressibility"
    assert "bench_fake_a" not in sys.modules  # never imported: nobody asked for "a"
    with pytest.raises(BenchError, match="scorer 'bench_fake_a:A' failed to import: ModuleNotFoundError"):
        registry.get("a")  # the broken entry fails alone, with its own message
    assert registry.get("b").name == "compressibility"
    assert registry.source("a") == "entry-point/other"


def test_the_suites_own_entry_points_win_a_clash(monkeypatch):
    monkeypatch.setattr(
        registry_module,
        "entry_points",
        _points(("m", "thirdparty:M", "thirdparty"), ("m", "bench.methods.dpok:DPOK", DISTRIBUTION)),
    )
    registry = Registry("method", "bench.test-none")
    assert registry.source("m") == "built-in" and registry.get("m").name == "dpok"


def test_builtins_are_registered_through_entry_points_of_this_distribution():
    assert {"dpok", "reward-only", "kl-only", "sft", "ddpo"} <= set(METHODS.names())
    assert all(METHODS.source(n) == "built-in" for n in ("dpok", "sft"))
    assert {"shapes", "sd"} <= set(WORLDS.names())
    # a world's scorers are registered with it, named by the world
    assert SCORERS.source("shapes-oracle") == "built-in/shapes"
    assert SCORERS.get("shapes-oracle").gold is True


def test_plugin_cannot_take_a_builtin_name(tmp_path, monkeypatch):
    (tmp_path / "clash_plugin.py").write_text(
        "from bench.methods.dpok import DPOK\nclass Clash(DPOK):\n    name = 'dpok'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BenchError, match="uses the built-in method name 'dpok'; built-ins win"):
        METHODS.add_plugin("clash_plugin:Clash")
