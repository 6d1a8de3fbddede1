"""Every public name of ``solvers`` and ``deqslots`` documents itself, and every docstring example runs.

The API reference (docs/api/) renders these docstrings; this test is what keeps them complete: a public
function lists each parameter under ``Args:`` and what it gives back under ``Returns:`` (or ``Yields:``), a
public class documents its constructor's arguments or its fields, every public class and module-level
function shows an ``Examples:`` section, and the examples run as doctests.
"""

from __future__ import annotations

import doctest
import functools
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe", reason="griffe comes with the docs extra (mkdocstrings-python)")

PACKAGES = ("solvers", "deqslots")
OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# entry points that are programs, not APIs: their documentation is the generated command-line page
PROGRAMS = {"deqslots.__main__", "deqslots.cli", "deqslots.demo", "deqslots.solver_demo"}
VARIADIC = {"var positional", "var keyword"}
ROOT = Path(__file__).resolve().parents[1]


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=package + "."):
            if not any(part.startswith("_") for part in info.name.split(".")) and info.name not in PROGRAMS:
                names.append(info.name)
    return names


def _loaded(package: str):
    return griffe.load(package, search_paths=[str(ROOT)], docstring_parser="google", resolve_aliases=False)


@functools.cache
def _public_objects() -> tuple[tuple[object, object | None], ...]:
    """(object, owning class or None) for each public class, function and method defined in the packages.

    Loaded once for both checks below (griffe reads every module of both packages).
    """
    return tuple(_walk_packages())


def _walk_packages() -> Iterator[tuple[object, object | None]]:

    def walk(module):
        if module.path in PROGRAMS:
            return
        exported = {str(name) for name in module.exports} if module.exports is not None else None
        for name, member in module.members.items():
            if name.startswith("_") or member.is_alias:
                continue
            if member.is_module:
                yield from walk(member)
                continue
            if exported is not None and name not in exported:  # a helper the module keeps to itself
                continue
            if member.is_function:
                yield member, None
            elif member.is_class:
                yield member, None
                for method_name, method in member.members.items():
                    if not method_name.startswith("_") and not method.is_alias and method.is_function:
                        yield method, member

    for package in PACKAGES:
        yield from walk(_loaded(package))


def _sections(obj) -> dict[str, object]:
    return {section.kind.value: section for section in obj.docstring.parsed} if obj.docstring else {}


def _documented_names(sections: dict[str, object], *kinds: str) -> set[str]:
    names = set()
    for kind in kinds:
        if kind in sections:
            names |= {item.name.lstrip("*") for item in sections[kind].value}
    return names


def _overrides_documented_method(method, owner) -> bool:
    try:
        bases = owner.mro()
    except Exception:  # a base outside the packages: nothing to inherit the documentation from
        return False
    return any(method.name in base.members and base.members[method.name].docstring for base in bases)


def _problems(obj, owner) -> list[str]:
    if owner is not None and not obj.docstring and _overrides_documented_method(obj, owner):
        return []
    if not obj.docstring:
        return ["no docstring"]
    sections = _sections(obj)
    problems = []
    if obj.is_function:
        wanted = [p.name for p in obj.parameters if p.name not in ("self", "cls") and p.kind.value not in VARIADIC]
        documented = _documented_names(sections, "parameters", "other parameters")
        missing = [name for name in wanted if name not in documented]
        if missing:
            problems.append(f"Args: missing {missing}")
        is_property = "property" in obj.labels
        returns = str(obj.returns) if obj.returns is not None else "None"
        if returns not in ("None", "NoReturn") and not is_property and not {"returns", "yields"} & sections.keys():
            problems.append(f"no Returns: section (returns {returns})")
    if owner is None and "examples" not in sections and not (obj.is_function and "property" in obj.labels):
        problems.append("no Examples: section")
    return problems


def test_every_public_name_documents_arguments_returns_and_examples():
    problems = [f"{obj.path}: {problem}" for obj, owner in _public_objects() for problem in _problems(obj, owner)]
    assert not problems, "docstrings to complete (Google style):\n" + "\n".join(problems)


def _field_problems(obj) -> list[str]:
    """A public class's constructor arguments (or a dataclass's fields) each documented somewhere."""
    sections = _sections(obj)
    documented = _documented_names(sections, "parameters", "attributes", "other parameters")
    init = obj.members.get("__init__")
    if init is not None and not init.is_alias and init.is_function:
        wanted = [p.name for p in init.parameters if p.name != "self" and p.kind.value not in VARIADIC]
        documented |= _documented_names(_sections(init), "parameters", "other parameters")
    else:  # a dataclass: its annotated public fields are its arguments; a field may carry its own docstring
        wanted = [name for name, member in obj.members.items()
                  if member.is_attribute and not name.startswith("_") and member.annotation is not None
                  and "class-attribute" not in member.labels and not member.docstring]
    missing = [name for name in wanted if name not in documented]
    return [f"undocumented fields or arguments {missing}"] if missing else []


def test_public_classes_document_their_fields():
    problems = [f"{obj.path}: {problem}" for obj, _ in _public_objects() if obj.is_class and obj.docstring
                for problem in _field_problems(obj)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    # the namespace is kept: clearing it after the run breaks guards torch.compile installed on it
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    for test in doctest.DocTestFinder().find(module, name):
        if test.examples:
            runner.run(test, clear_globs=False)
    assert runner.failures == 0
