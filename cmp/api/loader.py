"""Loading plugins: cmp's own, then entry points of group `cmp`, then the registry.

cmp's built-in components are plugin modules listed in `BUILTIN_PLUGINS` and registered
through the same hooks as a third party's, so a source checkout has them without any
installation. Loading rules:

- a built-in that fails to import is an error (cmp is broken without it); a third-party
  plugin that fails to import is one warning naming it, and the others still load;
- a function named `cmp_*` that is no cmp hook (a misspelt hook) is an error naming
  the plugin and the closest hook name, whether or not it carries `@hookimpl`;
- `CMP_DISABLE_PLUGIN_AUTOLOAD=1` loads only cmp's own plugins; `CMP_PLUGINS` (or
  `cmp --plugins`) names the third-party plugins or distributions to load, comma
  separated (`none` for none); `extra_modules` (`cmp -p MODULE`) adds importable modules.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from cmp import __version__
from cmp.api.hookspecs import LifecycleSpecs, RegistrationSpecs, ReportSpecs
from cmp.api.registry import Provider, Registry
from cmp.api.slots import SLOTS, hook_name
from cmp.errors import CmpError, PluginError
from cmp.suggest import did_you_mean

GROUP = "cmp"
OWN_DISTRIBUTION = "cmp-compare"
BUILTINS_PACKAGE = "cmp_plugins"
BUILTIN_PLUGINS = (
    "augmentations", "encoders", "external_encoders", "heads", "targets", "momentum", "negatives", "queue", "losses",
    "regression_losses", "contrastive_losses", "redundancy_reduction", "clustering", "self_distillation",
    "optimizers", "schedules", "methods", "datasets", "streamed_datasets", "evaluators", "diagnostics", "baselines",
    "executors", "tensorboard", "progress",
)
"""cmp's own plugin modules (in `plugins/`, installed as `cmp_plugins`), registered first."""
ENV_DISABLE_AUTOLOAD = "CMP_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "CMP_PLUGINS"


class _PluginManager(pluggy.PluginManager):
    """Treats every `cmp_*` function as a hook implementation, marked or not.

    pluggy ignores unmarked functions, which would let a misspelt, unmarked hook pass
    silently; pytest takes the same approach for its `pytest_*` names.
    """

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("cmp_") and callable(getattr(plugin, name, None)):
            return {}
        return opts


@dataclass
class Plugins:
    """The plugin manager, the registry it filled, who provided what, and warnings."""

    manager: pluggy.PluginManager
    registry: Registry
    providers: dict[str, Provider] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def hook(self) -> Any:
        return self.manager.hook


def _selection(plugins: str | None) -> set[str] | None:
    """Third-party plugins to load: None means all of them."""
    chosen = plugins if plugins is not None else os.environ.get(ENV_PLUGINS)
    if chosen is None:
        if os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip() not in ("", "0"):
            return set()
        return None
    names = {n.strip() for n in chosen.split(",") if n.strip()}
    return set() if names <= {"none"} else names


def load_plugins(
    plugins: str | None = None,
    extra_modules: Sequence[str] = (),
    extra_objects: Iterable[tuple[str, Any]] = (),
) -> Plugins:
    """Load the selected plugins and build the registry; raises `PluginError`."""
    pm = _PluginManager("cmp")
    pm.add_hookspecs(RegistrationSpecs)
    pm.add_hookspecs(LifecycleSpecs)
    pm.add_hookspecs(ReportSpecs)
    loaded = Plugins(pm, Registry())
    chosen = _selection(plugins)
    seen_third_party: set[str] = set()

    for name in BUILTIN_PLUGINS:
        _register(loaded, _import_builtin(name), Provider(name, OWN_DISTRIBUTION, __version__))

    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda ep: ep.name):
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        seen_third_party.update(n for n in (ep.name, dist) if n)
        if chosen is not None and ep.name not in chosen and dist not in chosen:
            continue
        try:
            module = ep.load()
        except Exception as exc:  # any import failure must not take the others down
            loaded.warnings.append(
                f"plugin '{ep.name}' ({dist or 'unknown distribution'}) failed to import "
                f"and was skipped: {type(exc).__name__}: {_one_line(exc)}"
            )
            continue
        _register(loaded, module, Provider(ep.name, dist, version))

    for name in extra_modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise PluginError(f"cannot import plugin module: {type(exc).__name__}: {exc}", where=name) from None
        _register(loaded, module, Provider(name))
    for name, obj in extra_objects:
        _register(loaded, obj, Provider(name))

    if chosen:
        missing = chosen - seen_third_party - set(loaded.providers)
        for name in sorted(missing):
            loaded.warnings.append(f"plugin '{name}' was asked for but is not installed")

    _check_hook_names(pm)
    _fill_registry(loaded)
    return loaded


def _import_builtin(name: str) -> Any:
    """Import `cmp_plugins.<name>`; from the source tree's `plugins/` when not installed."""
    if BUILTINS_PACKAGE not in sys.modules:
        try:
            importlib.import_module(BUILTINS_PACKAGE)
        except ModuleNotFoundError as exc:
            if exc.name != BUILTINS_PACKAGE:
                raise
            folder = Path(__file__).resolve().parents[2] / "plugins"
            spec = importlib.util.spec_from_file_location(
                BUILTINS_PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)]
            )
            if spec is None or spec.loader is None or not folder.is_dir():
                raise PluginError("cmp's built-in plugins are missing", where=str(folder)) from None
            module = importlib.util.module_from_spec(spec)
            sys.modules[BUILTINS_PACKAGE] = module
            spec.loader.exec_module(module)
    try:
        return importlib.import_module(f"{BUILTINS_PACKAGE}.{name}")
    except Exception as exc:
        raise PluginError(
            f"cmp's built-in plugin failed to import: {type(exc).__name__}: {_one_line(exc)}",
            where=f"plugin '{name}'",
        ) from None


def _register(loaded: Plugins, plugin: Any, provider: Provider) -> None:
    if provider.plugin in loaded.providers:
        raise PluginError(
            f"two plugins are named '{provider.plugin}': {loaded.providers[provider.plugin]} "
            f"and {provider}"
        )
    already = loaded.manager.get_name(plugin)
    if already is not None:  # pluggy would raise a bare ValueError (e.g. `-p` of an installed plugin)
        raise PluginError(
            f"already loaded as {loaded.providers[already]}; an installed plugin needs no -p",
            where=f"plugin '{provider.plugin}'",
        )
    try:
        loaded.manager.register(plugin, name=provider.plugin)
    except pluggy.PluginValidationError as exc:
        message = _argument_problem(loaded.manager, plugin) or _one_line(exc)
        raise PluginError(message, where=f"plugin '{provider.plugin}'") from None
    loaded.providers[provider.plugin] = provider


def _argument_problem(pm: pluggy.PluginManager, plugin: Any) -> str | None:
    """What pluggy refused in a hook implementation, in cmp's words: the hook, the
    arguments it does not pass (with the closest it does), and the ones it passes."""
    for name in dir(plugin):
        caller = getattr(pm.hook, name, None) if name.startswith("cmp_") else None
        spec = caller.spec if caller is not None else None
        function = getattr(plugin, name, None)
        if spec is None or not callable(function):
            continue
        try:
            declared = [
                p.name for p in inspect.signature(function).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            ]
        except (TypeError, ValueError):
            continue
        unknown = [a for a in declared if a not in spec.argnames]
        if unknown:
            hints = "".join(did_you_mean(a, spec.argnames) for a in unknown[:1])
            return (
                f"{name}() takes {', '.join(repr(a) for a in unknown)}, which the hook does not pass{hints}; "
                f"it passes {', '.join(spec.argnames)} (an implementation takes any of them, by name)"
            )
    return None


def _check_hook_names(pm: pluggy.PluginManager) -> None:
    """A `cmp_*` function that matches no hook spec is a misspelt hook: fail clearly."""
    known = [name for name in vars(pm.hook) if not name.startswith("_")]
    specified = [n for n in known if getattr(pm.hook, n).spec is not None]
    for name in known:
        caller = getattr(pm.hook, name)
        if caller.spec is None:
            for impl in caller.get_hookimpls():
                raise PluginError(
                    f"'{name}' is not a cmp hook{did_you_mean(name, specified)}",
                    where=f"plugin '{impl.plugin_name}'",
                )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(_one_line(exc)) from None


def _one_line(exc: Exception) -> str:
    """pluggy's multi-line validation message as one line (the CLI prints errors as one)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _fill_registry(loaded: Plugins) -> None:
    """Call each plugin's registration hooks one plugin at a time, to know who gave what."""
    for slot in SLOTS:
        caller = getattr(loaded.manager.hook, hook_name(slot))
        for impl in caller.get_hookimpls():  # registration order: built-ins first
            provider = loaded.providers[impl.plugin_name]
            register = loaded.registry.registrar(slot, provider)
            try:
                impl.function(**{a: register for a in impl.argnames})
            except CmpError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"registering {slot} failed: {type(exc).__name__}: {_one_line(exc)}",
                    where=f"plugin '{impl.plugin_name}'",
                ) from None
