"""The plugin manager: collects every plugin's components into one name -> factory table."""
from __future__ import annotations

import functools
import importlib
import inspect
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from harp_plugin.registry import hookspecs
from harp_plugin.registry.errors import DuplicateComponentError, UnknownComponentError

ENTRY_POINT_GROUP = "harp_plugin"

BUILTIN_PLUGIN_MODULES: tuple[str, ...] = (
    "harp_plugin.data.plugin",
    "harp_plugin.models.plugin",
    "harp_plugin.robust.plugin",
    "harp_plugin.importance.plugin",
    "harp_plugin.certify.plugin",
    "harp_plugin.grouped.plugin",
)


@dataclass
class ComponentRegistry:
    """Components of every kind, each remembering which plugin contributed it."""

    manager: pluggy.PluginManager
    _tables: dict[str, dict[str, tuple[str, Callable[..., Any]]]] = field(default_factory=dict)

    def refresh(self) -> None:
        """Re-collect every kind from the registered plugins (after register/unregister)."""
        self._tables = {kind: self._collect(kind) for kind in hookspecs.KINDS}

    def _collect(self, kind: str) -> dict[str, tuple[str, Callable[..., Any]]]:
        hook = getattr(self.manager.hook, f"harp_{kind}")
        table: dict[str, tuple[str, Callable[..., Any]]] = {}
        for impl in hook.get_hookimpls():
            owner = self.manager.get_name(impl.plugin) or repr(impl.plugin)
            for name, factory in (impl.function() or {}).items():
                key = normalise_name(name)
                if key in table:
                    raise DuplicateComponentError(
                        f"{kind[:-1]} {name!r} is registered by two plugins: "
                        f"{table[key][0]!r} and {owner!r}; rename one of them"
                    )
                table[key] = (owner, factory)
        return table

    def names(self, kind: str) -> list[str]:
        """Sorted names available for ``kind``."""
        return sorted(self._table(kind))

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        """The factory registered as ``name``; an unknown name lists the valid ones."""
        table = self._table(kind)
        key = normalise_name(name)
        if key not in table:
            raise UnknownComponentError(
                f"unknown {kind[:-1]} {name!r}; available: {', '.join(sorted(table)) or '(none)'}"
            )
        return table[key][1]

    def create(self, kind: str, name: str, **kwargs: Any) -> Any:
        """Build the component registered as ``name`` with ``kwargs``."""
        return self.get(kind, name)(**kwargs)

    def description(self, kind: str, name: str) -> str:
        """One line saying what ``name`` is: its :func:`describe` text, else its docstring's first sentence."""
        return describe_factory(self.get(kind, name))

    def owner(self, kind: str, name: str) -> str:
        """Name of the plugin that registered ``name`` (useful in error reports)."""
        self.get(kind, name)
        return self._table(kind)[normalise_name(name)][0]

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register an extra plugin object or module at run time."""
        self.manager.register(plugin, name=name)
        try:
            self.refresh()
        except DuplicateComponentError:
            self.manager.unregister(plugin)
            self.refresh()
            raise

    def unregister(self, plugin: object) -> None:
        """Remove a plugin registered with :meth:`register`."""
        self.manager.unregister(plugin)
        self.refresh()

    def _table(self, kind: str) -> dict[str, tuple[str, Callable[..., Any]]]:
        if kind not in hookspecs.KINDS:
            raise UnknownComponentError(
                f"unknown component kind {kind!r}; available: {', '.join(hookspecs.KINDS)}"
            )
        return self._tables[kind]


def describe(factory: Callable[..., Any], text: str) -> Callable[..., Any]:
    """Give a registered factory its one-line description (shown by ``harp-prune list``).

    Anything but a plain function or ``partial`` (a class, a bound method) is wrapped in a
    ``partial`` so that no shared object is modified; map the name to the returned object.
    """
    plain = isinstance(factory, (functools.partial, types.FunctionType))
    wrapped = factory if plain else functools.partial(factory)
    wrapped.harp_description = text  # type: ignore[attr-defined]
    return wrapped


def describe_factory(factory: Callable[..., Any]) -> str:
    """The description given by :func:`describe`, else the docstring's first sentence, else ``""``."""
    given = getattr(factory, "harp_description", None)
    if given:
        return str(given)
    while isinstance(factory, functools.partial):
        factory = factory.func
    paragraph = " ".join((inspect.getdoc(factory) or "").strip().split("\n\n")[0].split())
    return paragraph.split(". ")[0].rstrip(".") + "." if paragraph else ""


def normalise_name(name: str) -> str:
    """Names are case-insensitive and treat '_' like '-' (``fashion_mnist`` == ``Fashion-MNIST``)."""
    return name.strip().lower().replace("_", "-")


def build_registry(load_entry_points: bool = True) -> ComponentRegistry:
    """A registry with the built-in plugins and, optionally, installed third-party ones."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGIN_MODULES:
        manager.register(importlib.import_module(module_name), name=module_name)
    if load_entry_points:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    registry = ComponentRegistry(manager)
    registry.refresh()
    return registry


_DEFAULT: ComponentRegistry | None = None


def get_registry() -> ComponentRegistry:
    """The process-wide registry, built on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = build_registry()
    return _DEFAULT
