"""The layers of gdbext/pyref/ are what the tree says (docs/architecture.md): reader/ and
rules/ (and errors.py) import neither gdb nor, through any chain of imports, a module that
does; inferior/ never imports commands/; nothing imports upward. Read from the sources
with `ast`, every import statement counted (function-local ones too)."""
import ast
import os

import pytest

import pyreftest

PKG = os.path.join(pyreftest.GDBEXT, "pyref")
LAYER = {"errors": 0, "reader": 0, "rules": 1, "inferior": 2, "commands": 3}


def modules():
    """{dotted name: path} of every module of the pyref package."""
    out = {}
    for d, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), pyreftest.GDBEXT)[:-3]
                name = rel.replace(os.sep, ".")
                out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = \
                    os.path.join(d, f)
    return out


MODULES = modules()


def imports(name):
    """The pyref modules and 'gdb' that module `name` imports."""
    with open(MODULES[name]) as f:
        tree = ast.parse(f.read())
    pkg = name if MODULES[name].endswith("__init__.py") else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[:len(pkg.split(".")) - node.level + 1] +
                                ([base] if base else []))
            names = [base] + ["%s.%s" % (base, a.name) for a in node.names]
        else:
            continue
        for n in names:
            if n == "gdb" or n.startswith("gdb."):
                out.add("gdb")
            elif n in MODULES and n not in (name, "pyref"):
                out.add(n)  # the package itself: its register() is the loader's, not theirs
    return out


def closure(name):
    seen, todo = set(), [name]
    while todo:
        for n in imports(todo.pop()):
            if n not in seen:
                seen.add(n)
                if n != "gdb":
                    todo.append(n)
    return seen


def layer(name):
    parts = name.split(".")
    return LAYER.get(parts[1]) if len(parts) > 1 else None


def test_the_tree_has_its_layers():
    assert {layer(n) for n in MODULES if n != "pyref"} == {0, 1, 2, 3}, sorted(MODULES)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer(n) in (0, 1)))
def test_reader_and_rules_never_reach_gdb(name):
    assert "gdb" not in closure(name), (name, sorted(closure(name)))


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer(n) is not None))
def test_no_import_goes_up(name):
    up = sorted(n for n in imports(name) if n != "gdb" and layer(n) is not None and
                layer(n) > layer(name))
    assert up == [], "%s (layer %d) imports %s" % (name, layer(name), up)


def test_the_package_imports_nothing_at_import():
    """gdbext/pyref/__init__.py imports its layers only inside register()."""
    with open(MODULES["pyref"]) as f:
        tree = ast.parse(f.read())
    assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_the_gdb_free_modules_import_without_gdb():
    """What the ast says, checked by importing them in this gdb-less interpreter."""
    import importlib
    for name in sorted(n for n in MODULES if layer(n) in (0, 1)):
        importlib.import_module(name)
