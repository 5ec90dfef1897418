"""Registry: lazy built-ins, entry points, plugins, and helpful errors."""

import sys

import pytest

from bench.errors import BenchError
from bench.registry import BUILTIN_METHODS, BUILTIN_SCORERS, METHODS, SCORERS, Registry


def test_unknown_names_list_known_and_closest():
    with pytest.raises(BenchError) as err:
        METHODS.get("dpko")
    assert "unknown method 'dpko'; known: " in str(err.value)
    assert "ddpo, dpok, kl-only, reward-only, sft" in str(err.value)
    assert str(err.value).endswith("did you mean 'dpok'?")
    with pytest.raises(BenchError, match="unknown scorer 'compressability'.*did you mean 'compressibility'"):
        SCORERS.get("compressability")


def test_only_the_requested_builtin_is_imported(monkeypatch):
    registry = Registry(
        "scorer", "bench.test-none", {"a": "bench_fake_a:A", "b": "bench.evaluations.compressibility:Compressibility"}
    )
    assert registry.get("b").name == "compressibility"
    assert "bench_fake_a" not in sys.modules  # never imported: nobody asked for "a"
    with pytest.raises(BenchError, match="scorer 'bench_fake_a:A' failed to import: ModuleNotFoundError"):
        registry.get("a")  # the broken entry fails alone, with its own message
    assert registry.get("b").name == "compressibility"


def test_builtins_are_lazy_strings():
    assert all(":" in target for target in {**BUILTIN_METHODS, **BUILTIN_SCORERS}.values())


def test_plugin_cannot_take_a_builtin_name(tmp_path, monkeypatch):
    (tmp_path / "clash_plugin.py").write_text(
        "from bench.methods.dpok import DPOK\nclass Clash(DPOK):\n    name = 'dpok'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("method", "bench.test-none", BUILTIN_METHODS)
    with pytest.raises(BenchError, match="uses the built-in method name 'dpok'; built-ins win"):
        registry.add_plugin("clash_plugin:Clash")
