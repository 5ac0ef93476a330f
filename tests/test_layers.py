"""The package's architecture, checked: no import circle, and each layer imports only from itself
and the layers below it (errors < root < engine < speculation < study < report < the chain)."""

from __future__ import annotations

import ast

from tts_utils.paths import PACKAGE_DIR

# The errors at the bottom (they import nothing); the shared ground (config, cli, paths, store, data,
# grading, ...) is layer 0; the chain on top.
BOTTOM = {"tts_utils.errors"}
LAYERS = {"engine": 1, "speculation": 2, "study": 3, "report": 4}
TOP = {"tts_utils.pipeline", "tts_utils.notebook", "tts_utils.__main__"}


def _modules() -> dict[str, ast.Module]:
    modules = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = ast.parse(path.read_text())
    return modules


def _imports(tree: ast.Module, known: set[str]) -> set[str]:
    """Kit modules imported anywhere in ``tree`` (function bodies and TYPE_CHECKING blocks too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tts_utils"):
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("tts_utils")}
    return found & known


def _layer(module: str) -> int:
    if module in BOTTOM:
        return -1
    if module in TOP:
        return 5
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 2 else 0


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(tree, set(modules)) - {name} for name, tree in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_cycles_are_found_by_the_check() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_circle() -> None:
    assert cycles(import_graph()) == []


def test_every_import_goes_to_the_same_layer_or_below() -> None:
    upward = [f"{name} -> {other}" for name, others in import_graph().items() for other in others
              if _layer(other) > _layer(name)]
    assert upward == []


def test_no_kit_module_is_imported_inside_a_function() -> None:
    """Kit modules are imported at the top, where the layers show; lazy imports are for heavy
    optional libraries (vllm, ray, papermill, ...), each with a reason."""
    lazy = []
    for name, tree in _modules().items():
        top_level = {id(node) for node in tree.body}
        type_checking = {id(sub) for node in tree.body if isinstance(node, ast.If)
                         and "TYPE_CHECKING" in ast.unparse(node.test) for sub in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tts_utils") \
                    and id(node) not in top_level and id(node) not in type_checking:
                lazy.append(f"{name}:{node.lineno} {node.module}")
    assert lazy == []


def test_the_errors_import_nothing() -> None:
    """Every layer raises them, vllm_compat and existing_env too, which run before the kit's
    dependencies are installed."""
    tree = _modules()["tts_utils.errors"]
    assert [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))] == []
