"""Keys of instantiable config nodes that their target does not take, found before anything runs.

Hydra answers ``dataset.datamodule.num_trian=5`` with a hint to append the key
(``+dataset.datamodule.num_trian=5``), and that mistake used to surface only
when the datamodule was constructed, as Python's ``TypeError: unexpected
keyword argument``. :func:`check_target_keys` compares every ``_target_`` node
of a composed config with the signature of its target, so the error names the
config node, suggests the closest valid key (:func:`difflib.get_close_matches`)
and lists them all, before a dataset is read or a checkpoint written.

A target that takes ``**kwargs`` accepts any key and is not checked, except
``**options: Unpack[SomeTypedDict]`` (PEP 692), whose keys are the TypedDict's.
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys
from collections.abc import Iterator
from typing import Any, get_args, get_origin

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

try:
    from typing import Unpack
except ImportError:  # Python 3.10
    from typing_extensions import Unpack

#: keys Hydra's instantiate reads itself
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})
_UNPACK = re.compile(r"^(?:typing(?:_extensions)?\.)?Unpack\[\s*([\w.]+)\s*\]$")
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class UnknownConfigKeyError(ValueError):
    """A config node sets keys its ``_target_`` does not take."""


def check_target_keys(cfg: DictConfig) -> None:
    """Raise :class:`UnknownConfigKeyError` naming every unknown key of every ``_target_`` node.

    Interpolations are not resolved: only key names are compared.
    """
    container = OmegaConf.to_container(cfg, resolve=False)
    problems = [
        message
        for path, node in target_nodes(container, "")
        if (message := unknown_keys_message(path, node)) is not None
    ]
    if problems:
        raise UnknownConfigKeyError("\n".join(problems))


def target_nodes(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(dotted path, node)`` of every mapping with a ``_target_``, depth first."""
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            yield path, node
        for key, child in node.items():
            yield from target_nodes(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from target_nodes(child, f"{path}[{i}]")


def unknown_keys_message(path: str, node: dict[str, Any]) -> str | None:
    """What is wrong with ``node``'s keys, or None (all valid, or its target takes any key)."""
    try:
        target = get_object(node["_target_"])
    except Exception:  # an unimportable target: instantiate reports it with Hydra's message
        return None
    valid = accepted_keywords(target)
    if valid is None:
        return None
    unknown = [key for key in node if key not in valid and key not in HYDRA_KEYS]
    if not unknown:
        return None
    where = path or "<root>"
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f"; did you mean {where}.{close[0]}?" if close else ""
        hints.append(f"{where}.{key}: {node['_target_']} takes no parameter {key!r}{hint}")
    return "\n".join(hints) + f"\n  valid keys of {where}: {', '.join(sorted(valid))}"


def accepted_keywords(target: Any) -> list[str] | None:
    """Keyword names ``target`` accepts; None when it takes arbitrary ``**kwargs``."""
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return None
    names = [p.name for p in parameters if p.kind in _KEYWORD_KINDS]
    for p in parameters:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            typed = _typed_dict_keys(p.annotation, target)
            if typed is None:
                return None
            names += typed
    return names


def _typed_dict_keys(annotation: Any, target: Any) -> list[str] | None:
    """Keys of ``Unpack[TD]`` (an object, or a string under postponed annotations)."""
    typed_dict = None
    if get_origin(annotation) is Unpack:
        typed_dict = get_args(annotation)[0]
    elif isinstance(annotation, str) and (match := _UNPACK.match(annotation)):
        typed_dict = _lookup(match.group(1), target)
    keys = getattr(typed_dict, "__annotations__", None)
    return list(keys) if isinstance(keys, dict) else None


def _lookup(name: str, target: Any) -> Any:
    """``name`` in the module of ``target`` or of one of its base classes.

    The TypedDict of a ``**options`` annotation is often imported for type checking
    only; the class that defines the options (a base class) has it in its module.
    """
    owners = inspect.getmro(target) if inspect.isclass(target) else (target,)
    head, _, rest = name.partition(".")
    for owner in owners:
        module = sys.modules.get(getattr(owner, "__module__", ""))
        value = getattr(module, head, None)
        for part in filter(None, rest.split(".")):
            value = getattr(value, part, None)
        if value is not None:
            return value
    return None
