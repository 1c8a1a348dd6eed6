"""The package's shape: core/ by concern and in the layer order core/__init__.py states, no
import loops (annotations included), no core module that knows a plugin, and the
plan/check/registry side runs without TensorFlow."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PACKAGE = "detplug"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def _modules() -> dict[str, Path]:
    roots = [ROOT / "core", ROOT / "plugins", ROOT / "testing"]
    files = [path for root in roots for path in root.rglob("*.py")]
    files += [ROOT / name for name in ("__init__.py", "registry.py", "hookspecs.py", "run.py")]
    return {_module_name(path): path for path in files}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every detplug module ``name`` imports: at module level, inside functions, and for
    annotations only (``TYPE_CHECKING``), since a loop through annotations is still two
    modules that cannot be understood, or moved, one without the other."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known and target != name}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def test_no_core_module_imports_a_plugin():
    offenders = sorted(f"{name} imports {target}" for name, targets in _graph().items()
                       if name.startswith("detplug.core") for target in targets
                       if target.startswith("detplug.plugins"))
    assert offenders == []


def import_loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import loops of ``graph``: its strongly connected components of more than one
    module (Tarjan's algorithm), each sorted."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops = []

    def visit(name: str) -> None:
        order[name] = low[name] = len(order)
        stack.append(name)
        for target in sorted(graph[name]):
            if target not in order:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], order[target])
        if low[name] == order[name]:
            component = []
            while not component or component[-1] != name:
                component.append(stack.pop())
            if len(component) > 1:
                loops.append(sorted(component))

    for name in sorted(graph):
        if name not in order:
            visit(name)
    return loops


def test_import_loops_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_loops(graph) == [["a", "b", "c"]]


def test_there_are_no_import_loops_not_even_through_annotations():
    assert [" <-> ".join(loop) for loop in import_loops(_graph())] == []


def _core_layers() -> list[str]:
    """The layers core/__init__.py lists, bottom first: ``errors``, ``plan``, ..."""
    docstring = ast.get_docstring(ast.parse((ROOT / "core" / "__init__.py").read_text(encoding="utf-8")))
    assert docstring
    return re.findall(r"^    (\w+)(?:/|\.py) ", docstring, flags=re.MULTILINE)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "core" else None


def test_core_imports_follow_the_layer_order_core_states():
    layers = _core_layers()
    assert layers[:2] == ["errors", "disk"] and layers[-1] == "cli", layers
    unlisted = sorted({_layer(name) for name in _graph()} - {None, *layers})
    assert unlisted == [], f"core/__init__.py does not place {unlisted} among its layers"
    # build.py constructs the components of every layer and checks what their factories return
    # against those layers' types (core/__init__.py says so): the one module allowed upwards.
    against = sorted(f"{name} imports {target}" for name, targets in _graph().items() for target in targets
                     if _layer(name) and _layer(target) and name != "detplug.core.build"
                     and layers.index(_layer(target)) > layers.index(_layer(name)))
    assert against == []


def test_the_plugin_contract_needs_nothing_of_training():
    """What a plugin imports to declare components and implement hooks reaches the plan and
    the run's context types only, even through annotations."""
    graph, reached, todo = _graph(), set(), [f"{PACKAGE}.hookspecs", f"{PACKAGE}.registry"]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += graph[name]
    allowed = ("core.errors", "core.disk", "core.plan.", "core.train.context", "core.train.run_folder",
               "hookspecs", "registry")
    assert sorted(name for name in reached if not name.removeprefix(f"{PACKAGE}.").startswith(allowed)) == []


def test_core_is_split_by_concern():
    core = ROOT / "core"
    packages = sorted(path.name for path in core.iterdir() if (path / "__init__.py").is_file())
    assert len(packages) >= 4 and {"plan", "model", "train", "data", "evaluate", "cli"} <= set(packages)
    assert len(list(core.glob("*.py"))) <= 12
    for name in packages:  # each says what it owns and what it may import
        docstring = ast.get_docstring(ast.parse((core / name / "__init__.py").read_text()))
        assert docstring and "import" in docstring.lower(), name


def test_plan_check_list_and_kitti_eval_run_without_tensorflow(tmp_path: Path):
    labels, results = tmp_path / "labels", tmp_path / "results"
    labels.mkdir(), results.mkdir()
    (labels / "000000.txt").write_text("Car 0.00 0 -10 10 10 50 50 -1 -1 -1 -1000 -1000 -1000 -10\n")
    (results / "000000.txt").write_text("Car -1 -1 -10 10 10 50 50 -1 -1 -1 -1000 -1000 -1000 -10 0.9\n")
    script = (
        "import sys, pkgutil, importlib, detplug.core.plan, detplug.registry\n"
        "for module in pkgutil.walk_packages(detplug.core.plan.__path__, 'detplug.core.plan.'):\n"
        "    importlib.import_module(module.name)\n"
        "import detplug.core.build, detplug.core.data.kitti_format, detplug.core.evaluate.kitti_files\n"
        "from detplug.run import main\n"
        "assert main(['--list']) == 0\n"
        "assert main(['list', 'backbone']) == 0\n"
        "assert main(['check', '--plan', 'kitti_simple', '--static']) == 0\n"
        f"assert main(['--kitti-eval', {str(labels)!r}, {str(results)!r}]) == 0\n"
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('loaded:', loaded[:5])\n"
        "assert not loaded, loaded[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "loaded: []" in result.stdout


#: A training run is one object with a small method per stage (issue 26): no function under
#: core/train/ grows past this many lines, docstring included.
MAX_TRAINING_FUNCTION_LINES = 60


def test_no_function_under_core_train_is_longer_than_60_lines():
    too_long = sorted(
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
        for path in (ROOT / "core" / "train").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > MAX_TRAINING_FUNCTION_LINES
    )
    assert too_long == []
