"""No function in cmp/ or plugins/ runs past `MAX_LINES` lines unless `LONG_FUNCTIONS` says why.

A long function usually holds several jobs; splitting it names them. One that reads best
whole (a procedure whose steps share state) stays, with its reason here. Lines counted:
from `def` to the last line, docstring included (the ast's line numbers).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60

LONG_FUNCTIONS: dict[str, str] = {
    "cmp/engine/cell_run.py::_train_and_evaluate":
        "one cell's work in order (data, parts, resume, fit, evaluation); to be split with the data "
        "protocol (issue 22, item 3)",
    "cmp/engine/grad_cache.py::cached_step":
        "gradient caching's two passes share the chunks' random states, cached embeddings and BatchNorm "
        "buffers; split, each half would take or return all of them",
}
"""`path::qualified name` -> why it stays whole (or where it is being split)."""


def lengths_in(source: str, path: str) -> dict[str, int]:
    """The functions and methods of one module's source by `path::qualified name`, with their lengths in lines."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                lengths[f"{path}::{name}"] = (child.end_lineno or child.lineno) - child.lineno + 1
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source, filename=path), "")
    return lengths


def function_lengths() -> dict[str, int]:
    """Every function and method under cmp/ and plugins/, with its length in lines."""
    lengths: dict[str, int] = {}
    for folder in ("cmp", "plugins"):
        for file in sorted((ROOT / folder).rglob("*.py")):
            lengths.update(lengths_in(file.read_text(), file.relative_to(ROOT).as_posix()))
    return lengths


def test_lengths_run_from_def_to_the_last_line_for_methods_and_nested_functions() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    source = f"class A:\n    @property\n    def b(self):\n        return 1\n\n\ndef f():\n    def g():\n        pass\n{body}\n"
    assert lengths_in(source, "m.py") == {"m.py::A.b": 2, "m.py::f": 62, "m.py::f.g": 2}
    assert function_lengths()["cmp/distributed.py::Processes.is_main"] == 2


def test_no_function_is_longer_than_the_limit_without_a_reason() -> None:
    long = {name: n for name, n in function_lengths().items() if n > MAX_LINES and name not in LONG_FUNCTIONS}
    assert not long, (
        f"functions over {MAX_LINES} lines: {long}; split each into functions that name its jobs, or add it to "
        "LONG_FUNCTIONS in tests/test_function_length.py with the reason it reads best whole"
    )


def test_every_allowed_long_function_is_still_long() -> None:
    lengths = function_lengths()
    stale = [name for name in LONG_FUNCTIONS if lengths.get(name, 0) <= MAX_LINES]
    assert not stale, f"split or gone, so no longer allowed to be long: remove {stale} from LONG_FUNCTIONS"


def test_every_reason_says_something() -> None:
    assert all(len(reason.split()) >= 5 for reason in LONG_FUNCTIONS.values())
