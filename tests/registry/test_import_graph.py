"""The shape of ``registry/``: no import cycles, no forbidden layers, modules of a readable size.

The import graph is built by grimp (the library behind import-linter) from the source files, so
imports inside functions and under ``TYPE_CHECKING`` count too.
"""
from __future__ import annotations

from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 450
FORBIDDEN = ("torch", "gradio", "pipeline", "app")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # cache_dir=None: no .grimp_cache folder left in the checkout.
    return grimp.build_graph("registry", include_external_packages=True, cache_dir=None)


def _registry_modules(graph: grimp.ImportGraph) -> set[str]:
    return {m for m in graph.modules if m == "registry" or m.startswith("registry.")}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or with a self-import (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    mods = _registry_modules(graph)
    return {m: graph.find_modules_directly_imported_by(m) & mods for m in mods}


def test_cycle_finder_finds_a_cycle() -> None:
    """The finder itself: a planted facade -> doctor -> facade circle is reported."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_graph_holds_the_registry_modules(graph: grimp.ImportGraph) -> None:
    mods = _registry_modules(graph)
    for name in ("registry.facade", "registry.doctor", "registry.stats", "registry.sources",
                 "registry.categories", "registry.objects_write", "registry.queries", "registry.patches",
                 "registry.tracks", "registry.search", "registry.index_handle", "registry.datasets"):
        assert name in mods
    # The facade composes the pieces: the graph sees its imports.
    assert {"registry.sources", "registry.doctor", "registry.stats"} <= _edges(graph)["registry.facade"]


def test_no_import_cycles_in_registry(graph: grimp.ImportGraph) -> None:
    cycles = _cycles(_edges(graph))
    assert cycles == [], f"import cycles among registry modules: {cycles}; move the shared code down a layer"


def test_no_registry_module_imports_the_facade(graph: grimp.ImportGraph) -> None:
    """The facade is the top of the package: doctor, stats and the rest take what they need as
    arguments instead of importing their caller."""
    importers = graph.find_modules_that_directly_import("registry.facade") & _registry_modules(graph)
    assert importers == set(), f"{sorted(importers)} import registry.facade; pass a connection/handle instead"


@pytest.mark.parametrize("forbidden", FORBIDDEN)
def test_registry_does_not_import_forbidden_layers(graph: grimp.ImportGraph, forbidden: str) -> None:
    offenders = sorted(
        m for m in _registry_modules(graph)
        if any(t == forbidden or t.startswith(forbidden + ".") for t in graph.find_modules_directly_imported_by(m))
    )
    assert offenders == [], f"registry modules {offenders} import {forbidden!r}; registry/ never imports it"


def test_registry_modules_are_at_most_450_lines() -> None:
    files = sorted((REPO / "registry").rglob("*.py"))
    assert len(files) > 20  # the walk found the package
    too_long = {str(p.relative_to(REPO)): n for p in files
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert too_long == {}, f"modules over {MAX_LINES} lines: {too_long}; split them by responsibility"


def test_names_stay_importable_from_the_facade() -> None:
    from registry import categories, facade, queries, records, sources, validation

    assert facade.ObjectIn is records.ObjectIn
    assert facade.RegisterResult is records.RegisterResult
    assert facade.name_key is categories.name_key
    assert facade.check_category_name is categories.check_category_name
    assert facade.stable_color is categories.stable_color
    assert facade.MAX_CATEGORY_NAME == 200
    assert facade.STATUSES is validation.STATUSES == ("pending", "approved", "rejected")
    assert facade.ORDERS is queries.ORDERS
    assert (facade.DB_FILE, facade.MEDIA_DIR) == ("registry.db", sources.MEDIA_DIR) == ("registry.db", "media")
