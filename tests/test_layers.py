"""The package graph of docs/architecture.md, checked on the source: every import (also those inside functions) of
every module of `rlhfv` and `data_tools`, parsed with `ast`.

    data_tools  ->  rlhfv core  ->  {generation, eval, feedback, reward, rl}  ->  entry points

- a layer imports only from the layers left of it (and within itself);
- among the middle packages only the edges in MIDDLE_EDGES exist (no cycle between packages);
- no module cycle at all, counting imports inside functions;
- no `rlhfv` or `data_tools` module imports the research package `experiments` (it reaches it by import path
  through `rlhfv.extensions`; tests and bench may import it);
- no module imports, or reads an attribute, that is another package's `_private` name.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("rlhfv", "data_tools")
MIDDLE = ("rlhfv.generation", "rlhfv.eval", "rlhfv.feedback", "rlhfv.reward", "rlhfv.rl")
# the commands that put the packages together: above every package
ENTRY_POINTS = (
    "rlhfv.cli",
    "rlhfv.train",
    "rlhfv.iterate",
    "rlhfv.iterate_config",
    "rlhfv.iterate_evaluation",
    "rlhfv.iterate_report",
)
# the middle packages' allowed imports of each other (a DAG: generation <- eval <- feedback; reward <- rl)
MIDDLE_EDGES = {
    "rlhfv.generation": set(),
    "rlhfv.eval": {"rlhfv.generation"},
    "rlhfv.feedback": {"rlhfv.generation", "rlhfv.eval"},
    "rlhfv.reward": set(),
    "rlhfv.rl": {"rlhfv.reward"},
}
# Modules that sit in a package folder but belong to the core layer. rlhfv.eval.io reads the prompt and answer rows
# that generation, eval and feedback all read; it stays in rlhfv/eval/ while the reader changes in flight land.
CORE_OVERRIDES = {"rlhfv.eval.io"}
# `_compat` is private to the product but is the one home of library internals: every product module may use it (the
# package and its modules, `rlhfv._compat.*`).
SHARED_PRIVATE_MODULES = {"rlhfv._compat"}


def is_shared_private(module: str) -> bool:
    return any(module == shared or module.startswith(shared + ".") for shared in SHARED_PRIVATE_MODULES)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@cache
def product_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PRODUCT for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) of every import in the file, including those inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            found += [(module, alias.name, node.lineno) for alias in node.names]
    return found


@cache
def edges() -> dict[str, set[tuple[str, int]]]:
    """module -> {(imported product module, line)}; `from package import module` counts as the module."""
    modules = product_modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for module, imported, line in imports_of(name, path):
            if module.split(".")[0] not in (*PRODUCT, "experiments"):
                continue
            target = f"{module}.{imported}" if imported and f"{module}.{imported}" in modules else module
            targets.add((target, line))
        graph[name] = targets
    return graph


def layer(module: str) -> tuple[int, str]:
    """(layer index, unit): 0 data_tools, 1 core, 2 a middle package, 3 an entry point."""
    if module.split(".")[0] == "data_tools":
        return 0, "data_tools"
    if module in CORE_OVERRIDES:
        return 1, "rlhfv"
    if module in ENTRY_POINTS:
        return 3, module
    for package in MIDDLE:
        if module == package or module.startswith(package + "."):
            return 2, package
    return 1, "rlhfv"


def where(module: str, line: int) -> str:
    return f"{product_modules()[module].relative_to(ROOT)}:{line}"


def test_no_product_module_imports_the_research_package():
    bad = [
        f"{where(m, line)} imports {t}"
        for m, ts in edges().items()
        for t, line in ts
        if t.split(".")[0] == "experiments"
    ]
    assert not bad, "the product reaches experiments/ only by import path (rlhfv.extensions):\n" + "\n".join(bad)


# The product modules that name research code by import path (rlhfv.extensions resolves it), each for a research-only
# mode: iterate's `synthetic:` block and evaluator, `labeler: truth`, the `tiny:` reward models' vocabulary.
RESEARCH_HOOKS = {
    "rlhfv.extensions",
    "rlhfv.iterate",
    "rlhfv.iterate_evaluation",
    "rlhfv.feedback.labeling",
    "rlhfv.reward.loading",
}


def test_only_the_listed_hooks_name_research_code_by_import_path():
    bad = []
    for module, path in product_modules().items():
        if module in RESEARCH_HOOKS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.startswith("experiments.") and " " not in node.value:
                    bad.append(f"{where(module, node.lineno)} names {node.value}")
    assert not bad, "research code named outside RESEARCH_HOOKS:\n" + "\n".join(bad)


def test_every_import_goes_down_the_layers():
    bad = []
    for module, targets in edges().items():
        (level, unit) = layer(module)
        for target, line in targets:
            if target.split(".")[0] == "experiments" or target == module:
                continue
            target_level, target_unit = layer(target)
            if target_level > level:
                bad.append(f"{where(module, line)}: {unit} (layer {level}) imports {target} (layer {target_level})")
            elif level == target_level == 2 and unit != target_unit and target_unit not in MIDDLE_EDGES[unit]:
                bad.append(
                    f"{where(module, line)}: {unit} imports {target_unit}; allowed: {sorted(MIDDLE_EDGES[unit])}"
                )
    assert not bad, "\n".join(bad)


def test_the_middle_packages_form_no_cycle():
    # the allowed edges themselves must be acyclic (a DAG), so that the package graph is one
    seen, done = set(), set()

    def visit(package, path):
        assert package not in seen - done, f"cycle: {' -> '.join(path + [package])}"
        if package in done:
            return
        seen.add(package)
        for target in MIDDLE_EDGES[package]:
            visit(target, path + [package])
        done.add(package)

    for package in MIDDLE_EDGES:
        visit(package, [])


def test_no_module_cycle_counting_imports_inside_functions():
    graph = {m: {t for t, _ in ts if t in product_modules() and t != m} for m, ts in edges().items()}
    # Tarjan's strongly connected components
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    assert not cycles, f"modules that import each other: {cycles}"


def package_of(module: str) -> str:
    path = product_modules()[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_takes_another_packages_private_name():
    modules, bad = product_modules(), []
    for module, path in modules.items():
        own = package_of(module)
        bound = {}  # local name -> product module it is bound to
        for target, imported, line in imports_of(module, path):
            if target.split(".")[0] not in PRODUCT:
                continue
            full = f"{target}.{imported}" if imported else target
            if is_shared_private(full) or is_shared_private(target):
                continue
            parts = full.split(".")
            private = [i for i, part in enumerate(parts) if is_private(part)]
            if private:
                first = private[0]
                if first == len(parts) - 1 and full not in modules:
                    holder = package_of(target) if target in modules else target  # a `_name` inside a module
                else:
                    holder = ".".join(parts[:first])  # a `_module` inside a package
                if holder != own:
                    bad.append(f"{module} ({path.relative_to(ROOT)}:{line}) imports {full}")
            if imported and full in modules:
                bound[imported] = full
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
                target = bound[node.value.id]
                if is_private(node.attr) and package_of(target) != own:
                    bad.append(f"{module} ({path.relative_to(ROOT)}:{node.lineno}) reads {target}.{node.attr}")
    assert not bad, "make these public in their package, or move the caller:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from data_tools.formats._fields import image_fields\n", "imports data_tools.formats._fields.image_fields"),
        ("from data_tools.formats import llava_rlhf\nllava_rlhf._conversation({})\n", "reads"),
        ("def f():\n    from experiments.proof import evaluate\n", "experiments"),
    ],
)
def test_the_checks_catch_a_violation(tmp_path, monkeypatch, source, expected):
    # a module planted in rlhfv.feedback (another package than data_tools.formats) must fail the checks
    planted = ROOT / "rlhfv" / "feedback" / "_layers_probe.py"
    planted.write_text(source, encoding="utf-8")
    try:
        for cached in (product_modules, edges):
            cached.cache_clear()
        with pytest.raises(AssertionError, match=expected):
            test_no_module_takes_another_packages_private_name()
            test_no_product_module_imports_the_research_package()
    finally:
        planted.unlink()
        for cached in (product_modules, edges):
            cached.cache_clear()


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_data_tools_source_never_imports_rlhfv():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "data_tools").rglob("*.py"))
        for line, module in _imported_modules(path)
        if module == "rlhfv" or module.startswith("rlhfv.")
    ]
    assert offenders == [], "data_tools must not import rlhfv:\n" + "\n".join(offenders)


def test_importing_every_data_tools_module_loads_no_rlhfv_module():
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "data_tools").rglob("*.py")
        if path.name != "__main__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'rlhfv' or m.startswith('rlhfv.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
