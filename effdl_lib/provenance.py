"""What a chapter's record depends on, as hashes that ignore comments and docstrings.

A record stores two tables of hashes:

``inputs``
    the chapter's notebook source (its code cells), its own module, the toolkit modules
    and Cython sources (``.pyx``, ``.pxd`` and the C headers they include) it imports,
    the data files it read (their registry checksums) and its parameters. A change to
    any of them makes the record stale: ``make check`` fails and names the input.
``core``
    the core modules (statistics, training loop, records, ...) it imports. A change
    there is reported as a warning; ``make book`` re-runs the affected chapters.

Python is hashed through its AST without docstrings, so a comment or docstring edit
changes nothing; Cython and C through their text without comments and blank lines.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from .data import REPO_ROOT

PACKAGE = "effdl_lib"
LIB = REPO_ROOT / PACKAGE
CYTHON = REPO_ROOT / "cython_ext"
NOTEBOOKS = REPO_ROOT / "notebooks"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or ([] if isinstance(node, ast.Module) else [ast.Pass()])
    return tree


def python_code_hash(source: str) -> str:
    """Hash of Python code ignoring comments, docstrings and layout."""
    try:
        tree = _strip_docstrings(ast.parse(source))
    except SyntaxError:  # IPython syntax in a cell: fall back to the text without comments
        return text_code_hash(source, "#")
    return _digest(ast.dump(tree, annotate_fields=False, include_attributes=False))


def text_code_hash(source: str, line_comment: str, block: tuple[str, str] | None = None) -> str:
    """Hash of C or Cython text without comments, blank lines and trailing spaces."""
    if block:
        source = re.sub(re.escape(block[0]) + r".*?" + re.escape(block[1]), "", source, flags=re.S)
    lines = []
    for line in source.splitlines():
        line = re.sub(r"\s*" + re.escape(line_comment) + r".*$", "", line).rstrip()
        if line.strip():
            lines.append(line)
    return _digest("\n".join(lines))


def file_hash(path: Path) -> str:
    text = path.read_text()
    if path.suffix == ".py":
        return python_code_hash(text)
    if path.suffix in (".pyx", ".pxd", ".pxi"):
        return text_code_hash(text, "#")
    if path.suffix in (".h", ".c"):
        return text_code_hash(text, "//", ("/*", "*/"))
    raise ValueError(f"no code hash for {path}")


def notebook_code(src: Path) -> list[str]:
    """The code cells of a jupytext notebook source."""
    import jupytext
    return [c.source for c in jupytext.read(src).cells if c.cell_type == "code"]


def notebook_hash(src: Path) -> str:
    return _digest(json.dumps([python_code_hash(c) for c in notebook_code(src)]))


#: Execution settings, not inputs: the pipeline caps threads when chapters run side by
#: side, and the record's environment says how many threads a run really used.
EXECUTION_SETTINGS = ("threads",)


def parameters_hash(parameters: dict[str, Any]) -> str:
    kept = {k: v for k, v in parameters.items() if k not in EXECUTION_SETTINGS}
    return _digest(json.dumps(kept, sort_keys=True, default=str))


# ---------------------------------------------------------------- dependency discovery

def _imported_modules(source: str, package: str) -> set[str]:
    """Dotted names of ``effdl_lib`` modules (or names that may be modules) imported by
    ``source``; ``package`` resolves relative imports."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != PACKAGE:
                continue
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import module`
    return found


def _module_file(dotted: str) -> Path | None:
    parts = dotted.split(".")[1:]
    if not parts:
        return None
    candidate = LIB.joinpath(*parts)
    if candidate.with_suffix(".py").exists():
        return candidate.with_suffix(".py")
    if (candidate / "__init__.py").exists():
        return candidate / "__init__.py"
    return None


def _pxd(name: str) -> list[Path]:
    """A module's declarations: ``cython_ext/NAME.pxd`` or, for a cdef class other
    modules cimport, ``effdl_lib/_NAME.pxd`` beside the compiled extension."""
    return [p for p in (CYTHON / f"{name}.pxd", LIB / f"{name}.pxd", LIB / f"_{name}.pxd")
            if p.exists()]


def _cython_sources(extension: str) -> list[Path]:
    """``cython_ext/NAME.pyx``, its ``.pxd`` and every header or ``.pxd`` they name."""
    todo = [p for p in (CYTHON / f"{extension}.pyx",) if p.exists()] + _pxd(extension)
    seen: list[Path] = []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        text = path.read_text()
        for name in re.findall(r'"([\w./-]+\.(?:h|pxi))"', text):
            if (CYTHON / name).exists():
                todo.append(CYTHON / name)
        for name in re.findall(r"^\s*(?:from\s+([\w.]+)\s+cimport|cimport\s+([\w.]+))", text,
                               flags=re.M):
            todo += _pxd(next(n for n in name if n).split(".")[-1])
        if path.suffix == ".h":  # a header's own includes
            for name in re.findall(r'#include\s+"([\w./-]+)"', text):
                if (CYTHON / name).exists():
                    todo.append(CYTHON / name)
    return sorted(seen)


def layer(path: Path) -> str:
    """'chapter', 'toolkit', 'cython' or 'core' for a file the chapter depends on."""
    rel = path.resolve().relative_to(REPO_ROOT).parts
    if rel[0] == "cython_ext" or path.suffix in (".pyx", ".pxd", ".h"):
        return "cython"
    if rel[:2] == (PACKAGE, "chapters"):
        return "chapter"
    if rel[:2] == (PACKAGE, "toolkits"):
        return "toolkit"
    return "core"


#: Core modules that only present results (the book's pages, the build pipeline): they
#: never change a measured number, so editing them does not make records stale.
PRESENTATION = ("book.py", "pipeline.py")


def dependencies(notebook_src: Path) -> list[Path]:
    """Every library file and Cython source a chapter's notebook reaches by imports
    (presentation-only core modules left out)."""
    files: list[Path] = []
    todo = [(m, PACKAGE) for m in _imported_modules("\n".join(notebook_code(notebook_src)), PACKAGE)]
    seen_mods: set[str] = set()
    while todo:
        dotted, _ = todo.pop()
        if dotted in seen_mods:
            continue
        seen_mods.add(dotted)
        last = dotted.split(".")[-1]
        if last.startswith("_") and not last.startswith("__"):  # a compiled extension
            for p in _cython_sources(last[1:]):
                if p not in files:
                    files.append(p)
            continue
        path = _module_file(dotted)
        if path is None or path in files or (path.parent == LIB and path.name in PRESENTATION):
            continue
        files.append(path)
        pkg = dotted if path.name == "__init__.py" else dotted.rsplit(".", 1)[0]
        todo += [(m, pkg) for m in _imported_modules(path.read_text(), pkg)]
    return sorted(files)


def _rel(path: Path) -> str:
    """A path as the record names it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def chapter_inputs(notebook_src: Path, parameters: dict[str, Any] | None,
                   data_files: dict[str, str] | None) -> dict[str, dict[str, str]]:
    """``{"inputs": {...}, "core": {...}}``: the hashes a record stores and a check compares."""
    inputs = {_rel(notebook_src): notebook_hash(notebook_src)}
    core = {}
    for path in dependencies(notebook_src):
        if path.name == "__init__.py" and python_code_hash(path.read_text()) == python_code_hash(""):
            continue  # a package marker with only a docstring
        key = _rel(path)
        (core if layer(path) == "core" else inputs)[key] = file_hash(path)
    if parameters is not None:
        inputs["parameters"] = parameters_hash(parameters)
    for name, sha in (data_files or {}).items():
        inputs[f"data:{name}"] = sha[:16]
    return {"inputs": dict(sorted(inputs.items())), "core": dict(sorted(core.items()))}


def compare(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """The keys whose hash changed, appeared or disappeared, sorted."""
    keys = set(recorded) | set(current)
    return sorted(k for k in keys if recorded.get(k) != current.get(k))
