"""Weights from a file: read as data (never code), found, matched to a module, loaded whole.

An encoder trained elsewhere arrives as a file: a plain `state_dict`, a checkpoint with
the weights under a key (`state_dict`, `model`, `backbone`...), a PyTorch Lightning
checkpoint (what lightly's and solo-learn's scripts save), or a cmp run's
`checkpoint.pt`. `load_weights(module, path)` finds the weights, strips a prefix
(`backbone.`, `module.`, `online.encoder.`), and loads them only if every key of the
module is there with its shape and nothing else is under the prefix: otherwise one
`CheckpointError` naming the file and the first keys that did not fit, never a module
half loaded.

A checkpoint is data: it is read with `torch.load(weights_only=True)`, which refuses a
pickle that asks for anything beyond tensors and plain containers, naming the class it
asked for. The non-tensor objects a Lightning checkpoint carries in its hyper-parameters
(an `argparse.Namespace`, a path, Lightning's `AttributeDict`, an omegaconf config) are
read as inert placeholders (`Inert`): an allow-list of names, none of their code runs.

`Weights` is the parameter type an encoder factory declares for its `weights:` file; the
validated value is a `WeightsFile`, the path with the sha256 of its contents, which a
cell's key includes (so new weights in the same file are a new cell).
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import AfterValidator
from torch import nn

from cmp.errors import CheckpointError

WEIGHTS_PARAMS = ("weights", "weights_key", "weights_prefix")
"""The encoder parameters that say where its weights come from (none of them change its architecture)."""

WEIGHT_KEYS = ("state_dict", "model", "learner", "model_state_dict", "backbone", "encoder", "net", "module")
"""Where a checkpoint may keep its weights, tried in this order when `weights_key` is not given
(`state_dict`: Lightning's; `learner`: a cmp run's `checkpoint.pt`)."""

PREFIXES = ("", "module.", "backbone.", "model.", "encoder.", "online.encoder.", "model.backbone.",
            "module.backbone.", "_orig_mod.")
"""Prefixes preferred, in this order, when `weights_prefix` is not given and several fit
(`online.encoder.` is where a cmp run's checkpoint keeps its encoder)."""

SHOWN_KEYS = 3
"""Keys named in an error before `(and N more)`."""

LIGHTNING_HPARAM_TYPES = (
    "argparse.Namespace", "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePosixPath",
    "pathlib.PureWindowsPath", "lightning_fabric.utilities.data.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict", "pytorch_lightning.utilities.parsing.AttributeDict",
    "omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig", "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata", "omegaconf.nodes.AnyNode", "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode", "omegaconf.nodes.FloatNode", "omegaconf.nodes.BooleanNode",
    "omegaconf.nodes.EnumNode", "omegaconf.nodes.PathNode", "typing.Any", "builtins.dict", "builtins.list",
    "builtins.object", "collections.defaultdict", "builtins.int", "builtins.float", "builtins.str", "builtins.bool",
)
"""Names a Lightning checkpoint's hyper-parameters use (argparse, paths, Lightning's dict,
omegaconf's config as solo-learn saves it), read as `Inert` placeholders."""


class Inert:
    """What an allow-listed non-tensor object of a checkpoint becomes: it takes any
    arguments and state and keeps none, so reading it runs no code of the class it
    stands for (the weights never need it)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class WeightsFile(str):
    """A weights file's path (as given) with the sha256 of its contents (`sha256`), read once;
    `pattern` is the recipe's `{seed}` form of the path when it named one file per seed."""

    sha256: str
    pattern: str | None

    def __new__(cls, path: str, sha256: str | None = None, pattern: str | None = None) -> WeightsFile:
        self = super().__new__(cls, path)
        self.sha256 = sha256 if sha256 is not None else file_sha256(Path(path))
        self.pattern = pattern
        return self

    def __reduce__(self) -> tuple[type, tuple[str, str, str | None]]:
        return (WeightsFile, (str(self), self.sha256, self.pattern))

    @property
    def label(self) -> str:
        """`r18.pth (sha256 1a2b3c4d5e6f)`: how reports name where an encoder's weights came from."""
        return f"{Path(self).name} (sha256 {self.sha256[:12]})"


_digests: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The sha256 of a file's contents, remembered per (path, size, modification time)."""
    stat = path.stat()
    cache_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if cache_key not in _digests:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _digests[cache_key] = digest.hexdigest()
    return _digests[cache_key]


def _weights_file(value: str) -> WeightsFile:
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError("no such weights file" if not path.exists() else "not a file")
    return WeightsFile(str(path))


Weights = Annotated[str, AfterValidator(_weights_file)]
"""An encoder parameter naming a local weights file; validated into a `WeightsFile`."""

SEED_PLACEHOLDER = "{seed}"
"""Written in a `weights:` path, replaced by each cell's `train.seed`: one file per seed
(`simclr-{seed}.ckpt`), so the cells of a seed sweep pair with the runs that made them."""


def with_seed(value: Any, seed: int) -> Any:
    """`value` with `{seed}` replaced by `seed` when it is a path that holds it; else as given."""
    return value.replace(SEED_PLACEHOLDER, str(seed)) if isinstance(value, str) else value


def remember_pattern(value: Any, pattern: Any) -> Any:
    """A validated `WeightsFile` that records the `{seed}` pattern it was made from."""
    if isinstance(value, WeightsFile) and isinstance(pattern, str) and SEED_PLACEHOLDER in pattern:
        return WeightsFile(str(value), value.sha256, pattern)
    return value


def without_weights(params: Mapping[str, Any]) -> dict[str, Any]:
    """An encoder's parameters less those of `WEIGHTS_PARAMS`: the same architecture, untrained."""
    return {k: v for k, v in params.items() if k not in WEIGHTS_PARAMS}


def read_checkpoint(path: Path) -> Any:
    """The file's contents, read as data; `CheckpointError` for a file that is no torch
    file or asks for code (a pickle needing a class beyond the allow-list, never run)."""
    allowed: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [(Inert, n) for n in LIGHTNING_HPARAM_TYPES]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError("weights file not found", where=str(path)) from None
    except pickle.UnpicklingError as exc:
        asked = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(exc))
        if asked:
            raise CheckpointError(
                f"refused: the file asks for '{asked.group(1)}', which is code, not weights (cmp reads tensors and "
                "plain values only, and ran none of it)", where=str(path)) from None
        raise CheckpointError(f"not a PyTorch checkpoint ({_reason(exc)})", where=str(path)) from None
    except Exception as exc:  # truncated, corrupt, or not a torch file at all
        raise CheckpointError(f"not a PyTorch checkpoint ({_reason(exc)})", where=str(path)) from None


def _reason(exc: Exception) -> str:
    """The loader's own reason, without PyTorch's advice to retry with `weights_only=False`
    (which would run whatever code the file holds)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    text = " ".join(text.split("Check the documentation", 1)[0].split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def find_state_dict(contents: Any, key: str | None, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of the state dict in `contents`: under `key` (dotted for nesting:
    `teacher.backbone`), or itself when it is one, or under the first of `WEIGHT_KEYS`."""
    if key is not None:
        node = contents
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                found = ", ".join(map(str, list(node)[:8])) if isinstance(node, Mapping) else type(node).__name__
                raise CheckpointError(f"no key '{key}' in the file (it holds: {found})", where=str(path))
            node = node[part]
        return _tensors(node, f"'{key}'", path)
    if isinstance(contents, Mapping) and contents and all(isinstance(v, torch.Tensor) for v in contents.values()):
        return dict(contents)
    if isinstance(contents, Mapping):
        for candidate in WEIGHT_KEYS:
            if isinstance(contents.get(candidate), Mapping) and any(
                isinstance(v, torch.Tensor) for v in contents[candidate].values()
            ):
                return _tensors(contents[candidate], f"'{candidate}'", path)
        held = ", ".join(map(str, list(contents)[:8]))
        raise CheckpointError(f"no weights found: neither a state dict nor one under {', '.join(WEIGHT_KEYS)} "
                              f"(it holds: {held}); set weights_key", where=str(path))
    raise CheckpointError(f"not a checkpoint: it holds a {type(contents).__name__}, not a dict of weights", where=str(path))


def _tensors(node: Any, what: str, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(node, Mapping):
        raise CheckpointError(f"{what} holds a {type(node).__name__}, not a dict of weights", where=str(path))
    tensors = {str(k): v for k, v in node.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{what} holds no tensors", where=str(path))
    return tensors


def select_prefix(
    state: Mapping[str, torch.Tensor], expected: Iterable[str], prefix: str | None, path: Path
) -> dict[str, torch.Tensor]:
    """The entries under `prefix`, stripped of it; with `prefix` None the prefix under which
    the file holds every expected key (the first of `PREFIXES` when several do)."""
    if prefix is not None:
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    wanted = set(expected)
    if not wanted:
        return dict(state)
    candidates = _candidate_prefixes(state, wanted)
    fitting = [p for p in candidates if wanted <= {k[len(p):] for k in state if k.startswith(p)}]
    ranked = sorted(fitting, key=_preference)
    if len(ranked) == 1 or (ranked and _preference(ranked[0]) < _preference(ranked[1])):
        chosen = ranked[0]
        return {k[len(chosen):]: v for k, v in state.items() if k.startswith(chosen)}
    if ranked:
        raise CheckpointError(f"the weights sit under several prefixes ({', '.join(ranked)}); "
                              "set weights_prefix to one", where=str(path))
    best = max(candidates, key=lambda p: len(wanted & {k[len(p):] for k in state if k.startswith(p)}), default="")
    return {k[len(best):]: v for k, v in state.items() if k.startswith(best)}


def _preference(prefix: str) -> tuple[int, int]:
    """How a fitting prefix ranks: one of `PREFIXES` by its place, then one inside a known
    prefix (`online.encoder.net.` of a cmp run's ResNet), then any other; the rest is a tie."""
    if prefix in PREFIXES:
        return (0, PREFIXES.index(prefix))
    inside = [i for i, known in enumerate(PREFIXES) if known and prefix.startswith(known)]
    return (1, inside[0]) if inside else (2, 0)


def _candidate_prefixes(state: Mapping[str, torch.Tensor], wanted: set[str]) -> list[str]:
    """Every prefix p such that p + some expected key is a key of the file, shortest first."""
    found = {""}
    for key in state:
        for name in wanted:
            if key.endswith(name) and (len(key) == len(name) or key[-len(name) - 1] == "."):
                found.add(key[: len(key) - len(name)])
    return sorted(found, key=lambda p: (len(p), p))


def check_fit(module: nn.Module, weights: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    """`CheckpointError` naming the first keys that are missing, unexpected or of another shape."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in weights and weights[k].shape != v.shape]
    problems = [f"{label} {_first(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shapes differ (file vs encoder):", shapes))
                if keys]
    if problems:
        raise CheckpointError(f"does not fit {what}: {'; '.join(problems)}", where=str(path))


def _first(keys: list[str]) -> str:
    more = f" (and {len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def load_weights(
    module: nn.Module, path: str | Path, key: str | None = None, prefix: str | None = None,
    ignore: Iterable[str] = (), what: str = "the encoder",
) -> None:
    """Load the weights of the file at `path` into `module`, all of them or none.

    `key` says where in the file the state dict sits (else found: `find_state_dict`),
    `prefix` what to strip from its keys (else found: `select_prefix`); keys under a
    prefix in `ignore` (a classifier the encoder has removed, such as `fc.`) are dropped.
    `CheckpointError` naming the file and the first keys that do not fit, before any
    weight changes.
    """
    path = Path(path)
    state = find_state_dict(read_checkpoint(path), key, path)
    ignored = tuple(ignore)
    expected = list(module.state_dict())
    weights = select_prefix(state, expected, prefix, path)
    weights = {k: v for k, v in weights.items() if not k.startswith(ignored)}
    check_fit(module, weights, path, what)
    module.load_state_dict(weights, strict=True)
