"""Structural guard: the package has one place that imports code by name, and it is behind trust_code."""

import ast
from pathlib import Path

import lepton

PACKAGE = Path(lepton.__file__).parent
BUILTINS = {"eval", "exec", "compile", "__import__"}  # as bare names: model.eval() and re.compile are fine
ALLOWED = {
    ("models/registry.py", "import_module"),  # resolve_factory, only after trust_code is checked
    ("utils/lazy.py", "import_module"),
}  # lazy re-exports: modules hard-coded in lepton's own __init__s
UNSAFE_MODULES = {"pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib", "runpy"}


def calls_and_imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            if isinstance(fn, ast.Name) and (fn.id in BUILTINS or fn.id == "import_module"):
                yield "call", fn.id
            elif isinstance(fn, ast.Attribute) and fn.attr == "import_module":
                yield "call", fn.attr
            elif isinstance(fn, ast.Attribute) and fn.attr == "load" and getattr(fn.value, "id", None) == "torch":
                yield "call", "torch.load"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for n in names:
                if n.split(".")[0] in UNSAFE_MODULES:
                    yield "import", n


def test_no_dynamic_imports_eval_or_pickle_outside_the_trusted_factory_path():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for kind, name in calls_and_imports(path):
            if (rel, name) not in ALLOWED:
                found.append(f"{rel}: {kind} {name}")
    assert not found, "code that could run what a file names: " + "; ".join(found)


def test_the_one_import_by_name_is_guarded_by_trust_code():
    source = (PACKAGE / "models" / "registry.py").read_text()
    guard, call = source.index("if not trust_code:"), source.index("importlib.import_module(")
    assert guard < call
