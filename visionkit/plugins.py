"""The plugin manager: every plugin, built-in or third-party, arrives through the ``visionkit`` entry-point group.

visionkit's own architectures, tasks and models are declared in its pyproject under
``[project.entry-points.visionkit]`` and load exactly like a third party's. Loading is controlled by two
environment variables, read when the plugin set is first built:

    VISIONKIT_PLUGINS          comma-separated allow-list of plugin (entry-point) names; set but empty: load none
    VISIONKIT_DISABLE_PLUGINS  comma-separated names never to load

A plugin that fails (on import, on registration with pluggy, or inside a hook) is recorded as a ``PluginFailure``
(plugin name, stage, hook, error type and message) and skipped; the rest keep working. ``visionkit plugins`` shows
both lists.

For tests and embedding, ``load_plugins(extra=[...], entry_points=False)`` builds a fresh set from objects given
directly, and ``using_plugins(...)`` does the same for the length of a ``with`` block.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import asdict, dataclass, field

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "visionkit"
ENV_ALLOW = "VISIONKIT_PLUGINS"
ENV_DISABLE = "VISIONKIT_DISABLE_PLUGINS"


@dataclass
class PluginInfo:
    """A plugin that loaded: its name (the entry-point name), version and distribution (when installed), and
    where it came from ("entry point" or "direct")."""

    name: str
    version: str | None = None
    dist: str | None = None
    source: str = "entry point"
    module: str | None = None
    hooks: list = field(default_factory=list)

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that failed. ``stage``: "lookup" (named in VISIONKIT_PLUGINS but not installed), "import",
    "register" (pluggy refused it, or it implements an unknown hook) or "hook" (a hook raised; ``hook`` names it)."""

    name: str
    stage: str
    error_type: str
    message: str
    hook: str | None = None

    @classmethod
    def from_exception(cls, name, stage, exc, hook=None):
        return cls(name, stage, type(exc).__name__, str(exc), hook)

    def describe(self):
        where = f"in hook {self.hook}" if self.hook else f"on {self.stage}"
        return f"{self.name} ({where}): {self.error_type}: {self.message}"

    def to_dict(self):
        return asdict(self)


def _names(value):
    return {n.strip() for n in value.split(",") if n.strip()}


class PluginSet:
    """One pluggy ``PluginManager`` with the record of what loaded, what failed and what was skipped.

    Whatever is derived from the plugins (the registry, the plugin CLI commands) is cached in ``cache`` so that a
    new plugin set starts from scratch.
    """

    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins = {}  # name -> PluginInfo, in load order
        self.failures = []  # PluginFailure, in the order they happened
        self.skipped = []  # (name, reason)
        self.cache = {}
        self._allow = _names(env[ENV_ALLOW]) if ENV_ALLOW in env else None
        self._disable = _names(env.get(ENV_DISABLE, ""))
        self._seen = set()

    # ---- loading ---------------------------------------------------------------------------------------------
    def skip_reason(self, name):
        if self._allow is not None and name not in self._allow:
            return f"not in {ENV_ALLOW}"
        if name in self._disable:
            return f"disabled by {ENV_DISABLE}"
        return None

    def fail(self, failure):
        if failure not in self.failures:  # hooks may run again after a registry reset: record each failure once
            self.failures.append(failure)

    def add(self, name, obj, *, version=None, dist=None, source="direct"):
        """Register ``obj`` (a module or any object with @hookimpl functions) as plugin ``name``. Returns True if
        it loaded; a refusal is recorded as a failure."""
        self._seen.add(name)
        reason = self.skip_reason(name)
        if reason:
            self.skipped.append((name, reason))
            return False
        if name in self.plugins:
            other = self.plugins[name]
            self.fail(PluginFailure(name, "register", "ValueError",
                                    f"a plugin named {name!r} is already loaded (from {other.dist or other.source})"))
            return False
        try:
            self.pm.register(obj, name=name)
        except Exception as e:
            self.fail(PluginFailure.from_exception(name, "register", e))
            return False
        hooks = sorted(hc.name for hc in self.pm.get_hookcallers(obj) or [])
        unknown = [h for h in hooks if getattr(self.pm.hook, h).spec is None]
        if unknown:
            self.pm.unregister(obj)
            known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("register_")))
            self.fail(PluginFailure(name, "register", "ValueError",
                                    f"implements unknown hook(s) {', '.join(unknown)} (the hooks are: {known})"))
            return False
        if version is None:
            version = getattr(obj, "__version__", None)
        self.plugins[name] = PluginInfo(name, version, dist, source, getattr(obj, "__name__", None), hooks)
        return True

    def load_entry_points(self):
        from importlib.metadata import entry_points

        seen_values = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if seen_values.get(ep.name) == ep.value:
                continue  # the same distribution found twice on sys.path (an editable install and its source tree)
            seen_values.setdefault(ep.name, ep.value)
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            version = dist.version if dist is not None else None
            reason = self.skip_reason(ep.name)
            if reason:
                self._seen.add(ep.name)
                self.skipped.append((ep.name, reason))
                continue
            try:
                obj = ep.load()
            except (Exception, SystemExit) as e:
                self._seen.add(ep.name)
                self.fail(PluginFailure.from_exception(ep.name, "import", e))
                continue
            self.add(ep.name, obj, version=version, dist=dist_name, source="entry point")

    def report_missing(self):
        for name in sorted((self._allow or set()) - self._seen):
            self.fail(PluginFailure(name, "lookup", "LookupError",
                                    f"named in {ENV_ALLOW} but no plugin of that name is installed"))

    # ---- calling hooks one plugin at a time ------------------------------------------------------------------
    def hook_impls(self, hook_name):
        """(plugin name, HookImpl) pairs for ``hook_name``, in load order (wrappers are not called)."""
        caller = getattr(self.pm.hook, hook_name)
        by_plugin = {id(impl.plugin): impl for impl in caller.get_hookimpls()
                     if not (getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False))}
        out = []
        for name in self.plugins:
            impl = by_plugin.get(id(self.pm.get_plugin(name)))
            if impl is not None:
                out.append((name, impl))
        return out

    def call(self, plugin_name, hook_name, impl, **kwargs):
        """Call one plugin's implementation of a hook; an exception is recorded as that plugin's failure.
        Returns True when the hook returned normally."""
        try:
            impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        except Exception as e:
            self.fail(PluginFailure.from_exception(plugin_name, "hook", e, hook=hook_name))
            return False
        return True

    # ---- reports ---------------------------------------------------------------------------------------------
    def failed_names(self):
        return {f.name for f in self.failures}

    def to_dict(self):
        return {
            "plugins": [p.to_dict() | {"ok": p.name not in self.failed_names()} for p in self.plugins.values()],
            "failed": [f.to_dict() for f in self.failures],
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
        }


_lock = threading.RLock()
_current = None


def load_plugins(extra=(), *, entry_points=True, env=None):
    """Build a new plugin set and make it the process's current one: the installed entry points (unless
    ``entry_points=False``), then ``extra``: modules or objects, or ``(name, obj)`` pairs. ``env`` (default
    ``os.environ``) supplies VISIONKIT_PLUGINS / VISIONKIT_DISABLE_PLUGINS."""
    global _current
    ps = PluginSet(env)
    if entry_points:
        ps.load_entry_points()
    for item in extra:
        name, obj = item if isinstance(item, tuple) else (_default_name(item), item)
        ps.add(name, obj)
    ps.report_missing()
    with _lock:
        _current = ps
    return ps


def _default_name(obj):
    return getattr(obj, "__name__", None) or type(obj).__name__


def plugin_set():
    """The process's current plugin set, built on first use."""
    with _lock:
        if _current is None:
            load_plugins()
        return _current


def get_plugin_manager():
    """The process's pluggy PluginManager (one per process; built on first use)."""
    return plugin_set().pm


@contextlib.contextmanager
def using_plugins(*extra, entry_points=False, env=None):
    """``with using_plugins(module, ("name", obj)):`` a fresh plugin set (by default without the installed entry
    points) for the length of the block; the previous one is restored afterwards."""
    global _current
    with _lock:
        previous = _current
    try:
        yield load_plugins(extra, entry_points=entry_points, env=env)
    finally:
        with _lock:
            _current = previous


def plugin_commands(reserved=()):
    """{name: click.Command} that plugins add through ``register_commands(cli)``, collected once per plugin set.
    A command whose name is in ``reserved`` (the built-in commands) or already taken by another plugin is refused
    and recorded as that plugin's failure."""
    ps = plugin_set()
    key = ("commands", tuple(sorted(reserved)))
    if key in ps.cache:
        return ps.cache[key]
    import click

    commands, owner = {}, {}
    for name, impl in ps.hook_impls("register_commands"):
        scratch = click.Group(name=f"visionkit-plugin-{name}")
        if not ps.call(name, "register_commands", impl, cli=scratch):
            continue
        for cmd_name, cmd in scratch.commands.items():
            if cmd_name in reserved or cmd_name in commands:
                by = "visionkit itself" if cmd_name in reserved else f"plugin {owner[cmd_name]!r}"
                ps.fail(PluginFailure(name, "hook", "ValueError",
                                      f"command {cmd_name!r} is already defined by {by}", "register_commands"))
                continue
            commands[cmd_name], owner[cmd_name] = cmd, name
    ps.cache[key] = commands
    return commands
