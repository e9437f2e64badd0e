"""The published package's metadata, and install lines in the docs that name it."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DIST = PROJECT["name"]


def test_distribution_name_is_not_the_unrelated_pypi_fastrl():
    # `pip install fastrl` installs another project; the import name stays `fastrl`.
    assert DIST != "fastrl"
    assert (ROOT / "fastrl" / "__init__.py").is_file()


def test_metadata_a_published_package_carries():
    assert PROJECT["license"] == "MIT"  # an SPDX expression (PEP 639), not a table
    for name in PROJECT["license-files"]:
        assert "Permission is hereby granted" in (ROOT / name).read_text()
    assert PROJECT["requires-python"].startswith(">=3.")
    assert any(c.startswith("Programming Language :: Python :: 3") for c in PROJECT["classifiers"])


def _install_lines():
    for path in [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("bench/*.md")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "pip install" in line:
                yield f"{path.relative_to(ROOT)}:{number}", line


def test_docs_never_install_the_wrong_distribution():
    wrong = re.compile(r"pip install[^`]*?(?<![\w./-])fastrl(\[|\s|`|$)")
    bad = [where for where, line in _install_lines() if wrong.search(line)]
    assert not bad, f"`pip install fastrl…` installs an unrelated PyPI project; use {DIST}: {bad}"
