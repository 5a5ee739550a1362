"""The package's shape, as the style asks: small modules, short functions (issue 12)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "digestd"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    # Applied migrations are never edited, so they keep the shape they were written in.
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts]


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_60_lines() -> None:
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"] = lines
    assert long == {}


_CONTAINERS = {"dict", "list", "set", "OrderedDict", "defaultdict", "deque", "Counter"}


def _is_container(value: ast.expr) -> bool:
    if isinstance(value, ast.Dict | ast.List | ast.Set | ast.DictComp | ast.ListComp | ast.SetComp):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        return name in _CONTAINERS
    return False


def test_no_module_keeps_state_of_its_own() -> None:
    """A container at module level is a constant table (an UPPER_CASE name, never assigned to
    in a function); state that outlives a call belongs to the Runtime (digestd/runtime.py)."""
    found = []
    for path in modules():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                constant = all(n == "__all__" or n.strip("_").isupper() for n in names)
                if _is_container(node.value) and not constant:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {names}")
        found += [
            f"{path.relative_to(PACKAGE)}:{node.lineno} global {', '.join(node.names)}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Global)
        ]
        found += _mutated_tables(path, tree)
    assert found == []


_MUTATORS = {"append", "add", "clear", "pop", "popitem", "update", "setdefault", "extend"}
_MUTATORS |= {"insert", "remove", "discard", "move_to_end", "__setitem__"}


def _mutated_tables(path: Path, tree: ast.Module) -> list[str]:
    """Where a function changes a module-level container: a cache or registry in disguise."""
    tables = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        and node.value is not None
        and _is_container(node.value)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner, verb = node.func.value, node.func.attr
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            subscripts = [t for t in targets if isinstance(t, ast.Subscript)]
            if not subscripts:
                continue
            owner, verb = subscripts[0].value, "[...] ="
        else:
            continue
        if (
            isinstance(owner, ast.Name)
            and owner.id in tables
            and (verb in _MUTATORS or verb == "[...] =")
        ):
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {owner.id}.{verb}")
    return found
