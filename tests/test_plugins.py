"""Plugins: the example third-party package, broken plugins, duplicate names, and the environment switches.

Most tests register plugin objects directly into a fresh plugin set (``using_plugins``), so they do not depend on
what is installed; one group installs plugins/example into a temporary directory and checks that the real
command line discovers it through its entry point.
"""

import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from visionkit import hookspecs, plugins, registry
from visionkit.cli import cli
from visionkit.hookspecs import hookimpl

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = ROOT / "plugins" / "example"


@pytest.fixture(scope="session")
def example_module():
    """The example plugin's module: the installed one, or imported from plugins/example."""
    try:
        import visionkit_example
    except ImportError:
        sys.path.insert(0, str(EXAMPLE_DIR))
        import visionkit_example
    return visionkit_example


def plugin(name, **hooks):
    """A plugin object with the given hook implementations (functions taking the hook's arguments)."""
    obj = types.SimpleNamespace(__name__=name)
    for hook, fn in hooks.items():
        setattr(obj, hook, hookimpl(fn))
    return obj


def arch_plugin(name, arch_name, builder=None):
    def register_architectures(register):
        register(arch_name, builder or (lambda **kw: None), input_shape=(1, 8, 8), num_classes=2)

    return plugin(name, register_architectures=register_architectures)


def run_cli(*args):
    return CliRunner().invoke(cli, list(args))


# ---- the contract --------------------------------------------------------------------------------------------
def test_every_hook_has_a_one_line_docstring():
    hooks = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("register_")]
    assert sorted(hooks) == ["register_architectures", "register_commands", "register_datasets",
                             "register_models", "register_tasks"]
    for name in hooks:
        doc = getattr(hookspecs, name).__doc__
        assert doc and "\n" not in doc.strip(), name


# ---- the example plugin, registered directly -----------------------------------------------------------------
def test_example_plugin_loads_and_lists_its_hooks(example_module):
    with plugins.using_plugins(("example", example_module)) as ps:
        info = ps.plugins["example"]
        assert info.hooks == ["register_architectures", "register_commands", "register_tasks"]
        assert info.version == "0.1.0"
        assert not ps.failures
        assert list(registry.architectures()) == ["example-tinynet"]
        assert list(registry.tasks()) == ["example-brightness"]


def test_example_architecture_builds_and_runs(example_module):
    with plugins.using_plugins(("example", example_module)):
        spec = registry.get_architecture("example-tinynet")
        assert (spec.task, spec.input_shape, spec.num_classes, spec.plugin) == ("classify", (3, 32, 32), 10, "example")
        model = registry.build("example-tinynet", seed=0)
        assert model.count_params() == 1562 == spec.count_params()[0]
        y = model(np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32))
        assert y.shape == (2, 10)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
        small = registry.build("example-tinynet", num_classes=4, in_channels=1, input_size=(16, 16), seed=0)
        assert small(np.zeros((1, 1, 16, 16), np.float32)).shape == (1, 4)


def test_example_task_runs(example_module):
    with plugins.using_plugins(("example", example_module)):
        task = registry.get_task("example-brightness")
        assert task.description
        images = [np.full((4, 5, 3), 10, np.uint8), np.dstack([np.full((2, 2), v, np.uint8) for v in (0, 30, 60)])]
        assert task.run(None, images) == {"task": "example-brightness", "brightness": [10.0, 30.0]}
        assert task.run(None, images[1:], per_channel=True)["brightness"] == [[0.0, 30.0, 60.0]]


def test_example_command_runs_its_task(example_module, tmp_path):
    import cv2

    image = tmp_path / "grey.png"
    cv2.imwrite(str(image), np.full((6, 6, 3), 200, np.uint8))
    with plugins.using_plugins(("example", example_module)):
        result = run_cli("example-hello", str(image))
    assert result.exit_code == 0, result.output
    assert "Hello from visionkit-example!" in result.output
    assert f"{image}: brightness 200.0" in result.output


# ---- broken plugins ------------------------------------------------------------------------------------------
def test_plugin_raising_in_a_hook_is_reported_and_skipped(example_module):
    def register_architectures(register):
        register("half-registered", lambda **kw: None, input_shape=(1, 8, 8), num_classes=2)
        raise RuntimeError("my hook is broken")

    broken = plugin("broken", register_architectures=register_architectures)
    with plugins.using_plugins(("example", example_module), ("broken", broken)) as ps:
        assert list(registry.architectures()) == ["example-tinynet"]  # nothing of the broken hook is kept
        [failure] = ps.failures
        assert (failure.name, failure.stage, failure.hook) == ("broken", "hook", "register_architectures")
        assert (failure.error_type, failure.message) == ("RuntimeError", "my hook is broken")
        registry.reset()
        registry.architectures()
        assert len(ps.failures) == 1  # running the hooks again does not repeat the report

        doc = json.loads(run_cli("plugins", "--json").stdout)
        assert {p["name"]: p["ok"] for p in doc["plugins"]} == {"example": True, "broken": False}
        assert doc["failed"] == [{"name": "broken", "stage": "hook", "error_type": "RuntimeError",
                                  "message": "my hook is broken", "hook": "register_architectures"}]
        text = run_cli("plugins")
        assert text.exit_code == 0
        assert "broken (in hook register_architectures): RuntimeError: my hook is broken" in text.output
        models = run_cli("models", "--json")
        assert models.exit_code == 0
        assert [r["name"] for r in json.loads(models.stdout)] == ["example-tinynet"]
        assert run_cli("summary", "example-tinynet").exit_code == 0


def test_plugin_with_bad_registration_arguments_is_reported():
    def register_architectures(register):
        register("bad-shape", lambda **kw: None, input_shape=(8, 8), num_classes=2)

    def register_tasks(register):
        register("not-a-task", object())

    with plugins.using_plugins(("bad", plugin("bad", register_architectures=register_architectures,
                                              register_tasks=register_tasks))) as ps:
        assert registry.architectures() == {} and registry.tasks() == {}
        messages = {f.hook: f.message for f in ps.failures}
        assert "input_shape must be (C, H, W)" in messages["register_architectures"]
        assert "run(model, images" in messages["register_tasks"]


def test_plugin_command_hook_failure_leaves_the_cli_working(example_module):
    def register_commands(cli):
        raise ValueError("no commands today")

    with plugins.using_plugins(("example", example_module),
                               ("grumpy", plugin("grumpy", register_commands=register_commands))) as ps:
        result = run_cli("--help")
        assert result.exit_code == 0 and "example-hello" in result.output
        assert [(f.name, f.hook, f.message) for f in ps.failures] == [("grumpy", "register_commands",
                                                                     "no commands today")]


def test_plugin_command_may_not_replace_a_builtin_command():
    def register_commands(cli):
        @cli.command(name="models")
        def impostor():
            """Not the real one."""

    with plugins.using_plugins(("impostor", plugin("impostor", register_commands=register_commands))) as ps:
        result = run_cli("models", "--json")
        assert result.exit_code == 0 and json.loads(result.stdout) == []
        run_cli("plugins")
        assert any("'models' is already defined by visionkit itself" in f.message for f in ps.failures)


def test_unknown_hook_name_is_reported():
    typo = plugin("typo", register_architecture=lambda register: None)
    with plugins.using_plugins(("typo", typo)) as ps:
        assert "typo" not in ps.plugins
        [failure] = ps.failures
        assert failure.stage == "register" and "register_architecture" in failure.message


def _fake_distribution(root, dist, modules, entry_points):
    """A distribution on sys.path (dist-info with entry points) without installing anything."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[visionkit]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items()))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    """Two entry points in the 'visionkit' group: one that raises on import, one that works."""
    _fake_distribution(tmp_path, "vk-fake-plugins", {
        "vk_fake_broken": "raise RuntimeError('cannot import me')\n",
        "vk_fake_good": """
            from visionkit.hookspecs import hookimpl

            @hookimpl
            def register_datasets(register):
                register("fake-data", lambda: [1, 2, 3], description="three numbers")
        """,
    }, {"fakebroken": "vk_fake_broken", "fakegood": "vk_fake_good"})
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_plugin_failing_on_import_is_reported(fake_plugins):
    env = {"VISIONKIT_PLUGINS": "fakebroken,fakegood"}
    ps = plugins.PluginSet(env)
    ps.load_entry_points()
    assert list(ps.plugins) == ["fakegood"]
    assert ps.plugins["fakegood"].version == "1.0" and ps.plugins["fakegood"].dist == "vk-fake-plugins"
    [failure] = ps.failures
    assert (failure.name, failure.stage, failure.error_type, failure.message) == (
        "fakebroken", "import", "RuntimeError", "cannot import me")


def test_cli_still_works_with_a_plugin_that_fails_on_import(fake_plugins):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake_plugins), str(ROOT)]),
               VISIONKIT_PLUGINS="fakebroken,fakegood")
    out = subprocess.run([sys.executable, "-m", "visionkit", "plugins", "--json"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [p["name"] for p in doc["plugins"]] == ["fakegood"]
    assert [(f["name"], f["stage"], f["message"]) for f in doc["failed"]] == [
        ("fakebroken", "import", "cannot import me")]
    for args in (["--help"], ["models"]):
        out = subprocess.run([sys.executable, "-m", "visionkit", *args], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr


# ---- duplicate names -----------------------------------------------------------------------------------------
def test_two_plugins_registering_one_name_is_an_error_naming_both():
    with plugins.using_plugins(("first", arch_plugin("first", "twin")), ("second", arch_plugin("second", "twin"))):
        with pytest.raises(ValueError, match=r"architecture 'twin' is registered by two plugins, 'first' and 'second'"):
            registry.architectures()
        with pytest.raises(registry.DuplicateNameError):
            registry.build("twin")
        assert [c.to_dict() for c in registry.conflicts()] == [
            {"kind": "architecture", "name": "twin", "plugins": ["first", "second"]}]
        doc = json.loads(run_cli("plugins", "--json").stdout)
        assert doc["conflicts"] == [{"kind": "architecture", "name": "twin", "plugins": ["first", "second"]}]
        result = run_cli("models")
        assert result.exit_code == 1
        assert "'first' and 'second'" in result.output


def test_duplicate_task_names_are_an_error_too():
    def tasks(register):
        register("same", registry.Task())

    with plugins.using_plugins(("a", plugin("a", register_tasks=tasks)), ("b", plugin("b", register_tasks=tasks))):
        with pytest.raises(ValueError, match=r"task 'same' is registered by two plugins, 'a' and 'b'"):
            registry.tasks()


def test_two_plugins_may_use_different_names():
    with plugins.using_plugins(("first", arch_plugin("first", "one")), ("second", arch_plugin("second", "two"))):
        assert list(registry.architectures()) == ["one", "two"]
        assert registry.conflicts() == []


# ---- which plugins load --------------------------------------------------------------------------------------
def test_visionkit_plugins_allow_list():
    a, b = arch_plugin("a", "net-a"), arch_plugin("b", "net-b")
    with plugins.using_plugins(("a", a), ("b", b), env={"VISIONKIT_PLUGINS": "b, missing"}) as ps:
        assert list(ps.plugins) == ["b"]
        assert ps.skipped == [("a", "not in VISIONKIT_PLUGINS")]
        assert [(f.name, f.stage) for f in ps.failures] == [("missing", "lookup")]
        assert list(registry.architectures()) == ["net-b"]
    with plugins.using_plugins(("a", a), ("b", b), env={"VISIONKIT_PLUGINS": ""}) as ps:
        assert ps.plugins == {} and registry.architectures() == {}


def test_visionkit_disable_plugins():
    a, b = arch_plugin("a", "net-a"), arch_plugin("b", "net-b")
    with plugins.using_plugins(("a", a), ("b", b), env={"VISIONKIT_DISABLE_PLUGINS": "a"}) as ps:
        assert list(ps.plugins) == ["b"]
        assert ps.skipped == [("a", "disabled by VISIONKIT_DISABLE_PLUGINS")]


def test_environment_is_read_from_os_environ(monkeypatch):
    monkeypatch.setenv("VISIONKIT_DISABLE_PLUGINS", "a")
    with plugins.using_plugins(("a", arch_plugin("a", "net-a"))) as ps:
        assert ps.plugins == {}


def test_using_plugins_restores_the_previous_set():
    with plugins.using_plugins(("outer", arch_plugin("outer", "outer-net"))) as outer:
        with plugins.using_plugins(("inner", arch_plugin("inner", "inner-net"))):
            assert list(registry.architectures()) == ["inner-net"]
        assert plugins.plugin_set() is outer
        assert plugins.get_plugin_manager() is outer.pm
        assert list(registry.architectures()) == ["outer-net"]


def test_unknown_architecture_lists_close_matches(example_module):
    with plugins.using_plugins(("example", example_module)):
        with pytest.raises(ValueError, match=r"unknown architecture 'example-tinynte'; did you mean example-tinynet\?"):
            registry.get_architecture("example-tinynte")
        with pytest.raises(ValueError, match="known: example-tinynet"):
            registry.build("zzz")


def test_builder_must_return_a_model():
    with plugins.using_plugins(("p", arch_plugin("p", "not-a-model", builder=lambda **kw: "nope"))):
        with pytest.raises(TypeError, match="returned str, not a visionkit Model"):
            registry.build("not-a-model")


# ---- discovery of the installed example package through its entry point --------------------------------------
@pytest.fixture(scope="session")
def installed_example(tmp_path_factory):
    """PYTHONPATH entries under which `visionkit-example` is installed: the environment's own if it is installed
    there already, else a temporary target directory that `pip install --no-deps` fills from a copy of
    plugins/example (neither the environment nor the source tree is touched)."""
    probe = "import importlib.metadata as m; m.distribution('visionkit-example')"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60).returncode == 0:
        return []
    source = tmp_path_factory.mktemp("src") / "example"
    shutil.copytree(EXAMPLE_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
           "--disable-pip-version-check", "--target", str(target), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PIP_NO_INDEX="1"))
    if done.returncode != 0:
        pytest.fail(f"installing plugins/example failed:\n{done.stdout}\n{done.stderr}")
    return [str(target)]


def visionkit_cmd(pythonpath, *args, **env):
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([*pythonpath, str(ROOT)]), **env)
    return subprocess.run([sys.executable, "-m", "visionkit", *args], env=full_env, capture_output=True, text=True,
                          timeout=120)


def test_installed_example_is_discovered_through_its_entry_point(installed_example, tmp_path):
    out = visionkit_cmd(installed_example, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    example = {p["name"]: p for p in doc["plugins"]}["example"]
    assert example["dist"] == "visionkit-example" and example["version"] == "0.1.0"
    assert example["hooks"] == ["register_architectures", "register_commands", "register_tasks"]
    assert example["source"] == "entry point" and example["ok"]

    out = visionkit_cmd(installed_example, "models", "example-*", "--json")
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)
    assert (row["name"], row["params"], row["plugin"]) == ("example-tinynet", 1562, "example")

    import cv2

    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.full((3, 3), 50, np.uint8))
    out = visionkit_cmd(installed_example, "example-hello", str(image))
    assert out.returncode == 0, out.stderr
    assert f"{image}: brightness 50.0" in out.stdout


def test_environment_switches_on_the_real_command_line(installed_example):
    only = json.loads(visionkit_cmd(installed_example, "plugins", "--json", VISIONKIT_PLUGINS="example").stdout)
    assert [p["name"] for p in only["plugins"]] == ["example"]
    disabled = json.loads(visionkit_cmd(installed_example, "plugins", "--json",
                                        VISIONKIT_DISABLE_PLUGINS="example").stdout)
    assert "example" not in [p["name"] for p in disabled["plugins"]]
    assert {"name": "example", "reason": "disabled by VISIONKIT_DISABLE_PLUGINS"} in disabled["skipped"]
    out = visionkit_cmd(installed_example, "example-hello", VISIONKIT_DISABLE_PLUGINS="example")
    assert out.returncode == 2 and "No such command 'example-hello'" in out.stderr
    none = json.loads(visionkit_cmd(installed_example, "plugins", "--json", VISIONKIT_PLUGINS="").stdout)
    assert none["plugins"] == [] and none["failed"] == []


def test_locate_model_is_the_one_lookup_every_command_shares(tmp_path):
    from visionkit import registry

    ref = registry.locate_model("lenet5")
    assert (ref.kind, ref.label, ref.path) == ("architecture", "lenet5", None)
    ref = registry.locate_model("digits")
    assert ref.kind == "pretrained" and ref.path.endswith("digits.vk")
    f = tmp_path / "m.vk"
    f.write_bytes(b"x")
    ref = registry.locate_model(str(f))
    assert (ref.kind, ref.label, ref.path) == ("file", "m", str(f))
    with pytest.raises(registry.ModelNotFound, match="is a directory"):
        registry.locate_model(str(tmp_path))
    with pytest.raises(registry.ModelNotFound, match=r"^--model 'lenett5' is neither a model file nor a pretrained "
                                                      r"model; did you mean lenet5"):
        registry.locate_model("lenett5", kinds=("file", "pretrained"), what="--model")
    with pytest.raises(registry.ModelNotFound, match="nor an architecture"):
        registry.locate_model("no-such-thing-at-all")
