#!/usr/bin/env python3
"""The layering of switchyard's code, checked from its #include lines.

Layers depend only downward (docs/architecture in README.md): a file in src/<dir>/ may include
headers of the directories LAYERS allows for <dir>, and include/switchyard/ (the public routing
API) only itself and the standard library. Tests (*_test.cc) and cross-checks (*_xcheck.cc) may
reach further up, as TEST_EXTRA says. Also fails on any cycle among the headers.

Usage: layering_test.py [ROOT]   (ROOT defaults to the repository this file is in)
"""
import pathlib
import re
import sys

# What each directory of src/ may include, besides itself. This table is the layering.
LAYERS = {
    "core": set(),
    "kernels": {"core"},
    "io": {"core"},
    "dist": {"core", "switchyard"},
    "routing": {"core", "switchyard"},
    "moe": {"core", "kernels", "routing", "switchyard"},
    "model": {"core", "kernels", "moe", "routing", "switchyard"},
    # The run config aggregates the model's own config struct and validates router names
    # against the registry; it sees nothing else of the model.
    "config": {"core", "model/model_config.h", "switchyard"},
    "data": {"core", "io", "config"},
    "train": {"core", "kernels", "io", "dist", "routing", "moe", "model", "config", "data",
              "switchyard"},
}
# Tests may build the layers above the one they test (e.g. dist's test trains a model).
TEST_EXTRA = {
    "dist": {"model", "routing", "switchyard", "moe", "kernels"},
    "data": {"train"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def allowed(layer, header, is_test):
    target = header.split("/")[0]
    if target == layer:
        return True
    ok = LAYERS[layer] | (TEST_EXTRA.get(layer, set()) if is_test else set())
    return target in ok or header in ok


def main():
    root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).parents[1]
    errors = []
    graph = {}
    for d in sorted((root / "src").iterdir()):
        if not d.is_dir():
            continue
        if d.name not in LAYERS:
            errors.append(f"src/{d.name}/: a directory the layering does not know; add it to "
                          f"LAYERS in tests/layering_test.py")
            continue
        # Subdirectories (routing/avx512/) belong to their directory's layer.
        for f in sorted(d.rglob("*")):
            if f.suffix not in (".h", ".cc"):
                continue
            rel = f.relative_to(root / "src").as_posix()
            is_test = f.stem.endswith(("_test", "_xcheck")) or "test_util" in f.stem
            for inc in INCLUDE.findall(f.read_text()):
                if f.suffix == ".h":
                    graph.setdefault(rel, set()).add(inc)
                if not allowed(d.name, inc, is_test):
                    errors.append(f"src/{rel}: includes \"{inc}\", but {d.name}/ may "
                                  f"include only {sorted(LAYERS[d.name]) or 'nothing'} (besides "
                                  f"itself)")
    for f in sorted((root / "include" / "switchyard").glob("*.h")):
        for inc in INCLUDE.findall(f.read_text()):
            graph.setdefault(f"switchyard/{f.name}", set()).add(inc)
            if not inc.startswith("switchyard/"):
                errors.append(f"include/switchyard/{f.name}: includes \"{inc}\"; the public API "
                              f"may include only switchyard/ headers and the standard library")

    # Cycles among headers (depth-first search with colours).
    state = {}

    def visit(h, path):
        state[h] = 1
        for n in sorted(graph.get(h, ())):
            if state.get(n) == 1:
                errors.append("include cycle: " + " -> ".join(path[path.index(n):] + [n]))
            elif n in graph and state.get(n) is None:
                visit(n, path + [n])
        state[h] = 2

    for h in sorted(graph):
        if state.get(h) is None:
            visit(h, [h])

    for e in errors:
        print(e)
    n_files = sum(1 for _ in (root / "src").glob("*/**/*.[hc]*"))
    print(f"layering: {n_files} files, {len(errors)} violations")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
