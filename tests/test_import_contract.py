"""The house's import rules, checked by parsing every module (arrows point down, never up):

- `server/` reaches the engine only through `saywell.engine.api`, `.types` and `.options`;
- `engine/` imports neither the server, the client, the generated contract nor grpc: it knows nothing of gRPC;
- `client/` imports neither the server nor the engine at module level (`pip install saywell` has no torch);
- inside `engine/`, a layer imports only layers below it, and no profile imports another.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Engine layers, lowest first: a module may import its own layer and the ones before it.
ENGINE_LAYERS = (
    ("types", "options"),
    ("weights", "language"),
    ("stages",),
    ("features",),
    ("scorers",),
    ("backends",),
    ("profiles",),
    ("registry",),
    ("api",),
    ("offline",),
)
SERVER_MAY_IMPORT = {"saywell.engine.api", "saywell.engine.types", "saywell.engine.options"}


def imports(path: pathlib.Path, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every import in the file (`top_level_only`: module-level statements only)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                         if node.module in ("saywell", "saywell.engine"))
    return found


def modules(folder: str) -> list[pathlib.Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def layer_of(module: str) -> tuple[int, str] | None:
    """(rank, layer name) of an engine module name, e.g. saywell.engine.stages.asr -> (2, "stages")."""
    parts = module.split(".")
    if parts[:2] != ["saywell", "engine"] or len(parts) < 3:
        return None
    for rank, names in enumerate(ENGINE_LAYERS):
        if parts[2] in names:
            return rank, parts[2]
    raise AssertionError(f"{module} belongs to no engine layer: add it to ENGINE_LAYERS")


def engine_module_name(path: pathlib.Path) -> str:
    relative = path.relative_to(ROOT / "engine").with_suffix("")
    parts = [p for p in relative.parts if p != "__init__"]
    return ".".join(["saywell", "engine", *parts])


def test_the_server_reaches_the_engine_only_through_its_api_types_and_options():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in modules("server") for line, name in imports(p)
           if name.startswith("saywell.engine") and name not in SERVER_MAY_IMPORT
           and not any(name.startswith(allowed + ".") for allowed in SERVER_MAY_IMPORT)]
    assert not bad, "\n".join(bad)


def test_the_engine_knows_nothing_of_grpc_the_server_or_the_client():
    forbidden = ("saywell.server", "saywell.client", "saywell.v1", "grpc", "grpc_health", "grpc_reflection")
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in modules("engine") for line, name in imports(p)
           if any(name == f or name.startswith(f + ".") for f in forbidden)]
    assert not bad, "\n".join(bad)


def test_the_client_imports_neither_server_nor_engine_at_module_level():
    forbidden = ("saywell.server", "saywell.engine", "torch", "transformers", "faster_whisper")
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in modules("client")
           for line, name in imports(p, top_level_only=True)
           if any(name == f or name.startswith(f + ".") for f in forbidden)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", modules("engine"), ids=lambda p: str(p.relative_to(ROOT / "engine")))
def test_engine_layers_import_only_downwards(path):
    own = layer_of(engine_module_name(path)) if path.name != "__init__.py" or path.parent != ROOT / "engine" \
        else None
    if own is None:
        return
    own_parts = engine_module_name(path).split(".")
    bad = []
    for line, name in imports(path):
        target = layer_of(name)
        if target is None:
            continue
        if target[0] > own[0]:
            bad.append(f"line {line}: {own[1]} imports {name} ({target[1]} is above it)")
        parts = name.split(".")
        if own[1] == target[1] == "profiles" and len(parts) > 3 and len(own_parts) > 3 and parts[3] != own_parts[3]:
            bad.append(f"line {line}: profile {own_parts[3]} imports profile {parts[3]}")
    assert not bad, "\n".join(bad)


def test_the_contract_test_sees_a_violation():
    """The checks above would catch an upward import (guards against a parser that finds nothing)."""
    assert layer_of("saywell.engine.profiles.cpu.engine") == (6, "profiles")
    found = imports(ROOT / "server" / "session.py")
    assert any(name == "saywell.engine.api" for _, name in found)
