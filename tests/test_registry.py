"""One registry for extension points: names or dotted paths, imported on first use, entry points on a miss, one
wording for unknown names and missing extras."""
from __future__ import annotations

import sys
import textwrap

import pytest

from distributary import flow, task
from distributary._registry import Registry
from distributary.errors import MissingDependencyError, UnknownNameError
from distributary.runners import get_runner, load_runner_class, runner_names


def _install_throwaway_package(site, name: str) -> None:
    """A minimal installed distribution in `site` (a dist-info folder and a module) declaring a runner."""
    (site / f"{name}.py").write_text(textwrap.dedent('''
        from distributary.runners.thread import ThreadPoolTaskRunner

        class ThirdPartyRunner(ThreadPoolTaskRunner):
            """A runner from another package."""
    '''))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[distributary.task_runners]\nthird-party = {name}:ThirdPartyRunner\n")


def test_a_runner_from_an_installed_package_is_found_by_name(tmp_path, monkeypatch, request):
    _install_throwaway_package(tmp_path, "dy_thirdparty_runner")
    monkeypatch.syspath_prepend(str(tmp_path))
    from distributary.runners import _runners

    request.addfinalizer(lambda: _runners.unregister("third-party"))
    assert "dy_thirdparty_runner" not in sys.modules  # imported on first use, not before
    cls = load_runner_class("third-party")
    assert cls.__name__ == "ThirdPartyRunner" and cls.__module__ == "dy_thirdparty_runner"
    assert "third-party" in runner_names()

    @task
    def double(x: int) -> int:
        return 2 * x

    @flow(task_runner="third-party")
    def uses_it() -> list[int]:
        return double.map([1, 2, 3]).result()

    assert uses_it() == [2, 4, 6]
    assert isinstance(get_runner("third-party"), cls)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError) as err:
        load_runner_class("threds")
    msg = str(err.value)
    assert "Unknown task runner 'threds'" in msg and "threads" in msg and "processes" in msg


def test_dotted_paths_are_imported_on_first_use_and_missing_extras_name_the_install():
    reg: Registry[object] = Registry("widget")
    reg.register("json-dumps", "json:dumps")
    reg.register("absent", "dy_no_such_module_here:Thing", extra="fancy")
    import json

    assert reg.get("json-dumps") is json.dumps
    with pytest.raises(MissingDependencyError) as err:
        reg.get("absent")
    assert 'pip install "distributary[fancy]"' in str(err.value)
    with pytest.raises(ValueError, match="already registered"):  # a ConfigurationError
        reg.register("json-dumps", "json:loads")
    with pytest.raises(UnknownNameError, match="valid names are: absent, json-dumps"):
        reg.get("nope")


def test_storage_protocols_use_the_registry():
    from distributary.integrations import storage

    assert storage.canonical_protocol("s3a") == "s3" and storage.install_hint("gcs") == ("gcs", "gcsfs")
    assert storage.canonical_protocol("webdav") == "webdav"  # other fsspec protocols pass through
    storage.register_protocol("dy-test-proto", "s3", "s3", "s3fs")
    try:
        assert storage.canonical_protocol("dy-test-proto") == "s3"
    finally:
        storage._protocols.unregister("dy-test-proto")
