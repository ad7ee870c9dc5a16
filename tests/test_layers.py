"""The layering rule that import-linter cannot see: no function-local import of a project module.

import-linter (``make lint``) checks that imports point down the layers; an import hidden inside
a function would still work around a cycle and hide what depends on what, so every import of a
project package must sit at module level. (Lazy imports of heavy third-party packages are fine.)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("mrigan", "datasets_builders", "detectors")
#: The exceptions, each the boundary of an optional extra (not a cycle): the module that may
#: import it inside a function, after checking the extra is installed, and what it imports.
OPTIONAL_EXTRA_IMPORTS = {"mrigan/app/commands/serve.py": {"mrigan.app.serve.app"}}


def _local_project_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["."]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            allowed = OPTIONAL_EXTRA_IMPORTS.get(str(path.relative_to(ROOT)), set())
            if any(n == "." or (n.split(".")[0] in PROJECT and n not in allowed)
                   for n in names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} in {fn.name}()")
    return found


def test_no_function_local_imports_of_project_modules():
    files = [p for pkg in PROJECT for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50
    found = [hit for p in files for hit in _local_project_imports(p)]
    assert not found, "function-local project imports:\n" + "\n".join(found)


def test_config_dataclass_names_are_unique():
    """One name per config class (issue 10): no two dataclasses called ``*Config`` share a name
    across mrigan, datasets_builders and detectors, and no module-level alias gives one class a
    second ``*Config`` name."""
    import dataclasses
    import importlib
    import pkgutil

    owners: dict[str, set[str]] = {}
    names_of: dict[int, set[str]] = {}
    for package in ("mrigan", "datasets_builders", "detectors"):
        pkg = importlib.import_module(package)
        mods = [pkg] + [importlib.import_module(m.name)
                        for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}.")
                        if not m.name.endswith("__main__")]  # __main__ runs the CLI
        for mod in mods:
            for name, obj in vars(mod).items():
                if (isinstance(obj, type) and dataclasses.is_dataclass(obj) and name.endswith("Config")
                        and obj.__module__.split(".")[0] in ("mrigan", "datasets_builders", "detectors")):
                    owners.setdefault(obj.__name__, set()).add(f"{obj.__module__}.{obj.__qualname__}")
                    names_of.setdefault(id(obj), set()).add(name)
    assert len(owners) >= 30, sorted(owners)
    duplicates = {name: sorted(where) for name, where in owners.items() if len(where) > 1}
    assert not duplicates, duplicates
    aliases = sorted(names for names in names_of.values() if len(names) > 1)
    assert not aliases, aliases
