"""CLI and serve() argument handling that needs no server."""

from __future__ import annotations

import sys

import pytest

from tophat import MissingExtra, serve
from tophat.__main__ import main
from tophat.runtime.serve import check_runtime


@pytest.mark.parametrize(
    ("runtime", "extra"), [("uvloop", "tophat[fast]"), ("trio", "tophat[trio]")]
)
def test_a_runtime_whose_extra_is_missing_names_the_extra(
    runtime: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, runtime, None)  # makes "import uvloop" fail
    with pytest.raises(MissingExtra, match=extra.replace("[", r"\[").replace("]", r"\]")):
        check_runtime(runtime)
    with pytest.raises(SystemExit, match="pip install"):
        main(["examples.hello:app", "--runtime", runtime])


def test_an_unknown_runtime_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown runtime"):
        serve(lambda req, w: None, runtime="tornado")  # type: ignore[arg-type,return-value]


def test_workers_must_be_positive() -> None:
    with pytest.raises(SystemExit, match="--workers"):
        main(["examples.hello:app", "--workers", "0"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("examples.hello", "MODULE:ATTR"),
        ("no_such_module_xyz:app", "cannot import"),
        ("examples.hello:nope", "no attribute"),
    ],
)
def test_a_bad_app_spec_says_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        main([spec])


def test_a_key_file_without_a_certificate_is_refused() -> None:
    with pytest.raises(SystemExit, match="--ssl-certfile"):
        main(["examples.hello:app", "--ssl-keyfile", "key.pem"])
