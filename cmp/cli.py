"""The `cmp` command: `cmp run RECIPE`, `cmp plugins`.

Exit codes: 0 success, 1 a run failed, 2 bad input (recipe, data, plugin, checkpoint).
Bad input is one line on stderr, `cmp: error: <where>: <what>`, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cmp import __version__
from cmp.errors import CmpError
from cmp.plugin_loader import Plugins, load_plugins
from cmp.registry import SLOTS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmp", description="Compare contrastive self-supervised methods.")
    parser.add_argument("--version", action="version", version=f"cmp {__version__}")
    parser.add_argument(
        "--plugins", metavar="NAMES",
        help="third-party plugins (entry-point or distribution names, comma separated) to load; "
        "'none' loads only cmp's own (default: all installed; env CMP_PLUGINS)",
    )
    parser.add_argument(
        "-p", "--plugin-module", action="append", default=[], metavar="MODULE",
        help="also load an importable module as a plugin (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train, evaluate and compare every method a recipe names")
    run.add_argument("recipe", type=Path, help="recipe YAML file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a recipe key, e.g. --set train.epochs=1 (repeatable)")
    run.add_argument("--out", type=Path, default=Path("runs"), help="runs directory (default: runs/)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="override train.device")

    plugins = sub.add_parser("plugins", help="list every component per slot with its parameters")
    plugins.add_argument("--slot", choices=sorted(SLOTS), help="only this slot")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        plugins = load_plugins(args.plugins, args.plugin_module)
        for warning in plugins.warnings:
            print(f"cmp: warning: {warning}", file=sys.stderr)
        if args.command == "plugins":
            return list_plugins(plugins, args.slot, args.json)
        return run_command(plugins, args)
    except CmpError as exc:
        print(f"cmp: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cmp: interrupted; finished cells are kept and the interrupted one resumes from its checkpoint", file=sys.stderr)
        return 130


def run_command(plugins: Plugins, args: argparse.Namespace) -> int:
    from cmp.baselines import baseline_specs, compute_baseline
    from cmp.cells import resolve
    from cmp.recipe import load_recipe
    from cmp.runner import Runner
    from cmp.summary import summary_table

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"train.device={args.device}")
    recipe = load_recipe(args.recipe, overrides)
    cells = resolve(recipe, plugins.registry)
    runner = Runner(plugins, args.out)
    for cell in cells:  # every data set is found and checked before any training starts
        runner.data_for(cell)
    print(f"cmp: {recipe.name}: {len(cells)} run(s) into {args.out / recipe.name}", file=sys.stderr)
    results = [runner.run_cell(cell) for cell in cells]
    baselines = [compute_baseline(runner, spec) for spec in baseline_specs(cells)]
    print()
    print(summary_table(results, baselines))
    print(f"\nrun directories: {args.out / recipe.name}")
    return 0 if all(r.get("status") == "ok" for r in results) else 1


def plugin_listing(plugins: Plugins, slot: str | None = None) -> dict[str, Any]:
    """Every component per slot, with parameters and provider, as plain data."""
    slots = [slot] if slot else list(SLOTS)
    listing: dict[str, Any] = {
        "plugins": [
            {"name": p.plugin, "distribution": p.distribution, "version": p.version}
            for p in plugins.providers.values()
        ],
        "warnings": list(plugins.warnings),
        "slots": {},
    }
    for name in slots:
        entries = []
        for component in plugins.registry.components(name):
            entry: dict[str, Any] = {
                "name": component.name,
                "description": component.description,
                "plugin": component.provider.plugin,
                "distribution": component.provider.distribution,
                "version": component.provider.version,
                "params": [p.describe() for p in component.schema.params] if component.schema else [],
            }
            if component.meta:
                entry["meta"] = component.meta
            if name == "methods":
                entry["parts"] = json.loads(json.dumps(dict(component.factory.parts), default=str))
            entries.append(entry)
        listing["slots"][name] = entries
    return listing


def list_plugins(plugins: Plugins, slot: str | None, as_json: bool) -> int:
    listing = plugin_listing(plugins, slot)
    if as_json:
        print(json.dumps(listing, indent=2))
        return 0
    for name, entries in listing["slots"].items():
        print(f"{name}  ({SLOTS[name].doc})")
        for e in entries:
            provider = f"{e['distribution'] or 'unpackaged'} {e['version'] or ''}".strip()
            print(f"  {e['name']:<16} {e['description']}  [{provider}]")
            for p in e["params"]:
                default = "required" if p["required"] else f"default {json.dumps(p['default'])}"
                print(f"      {p['name']}: {p['type']}  ({default})")
        print()
    return 0
