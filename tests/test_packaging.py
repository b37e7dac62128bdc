"""The package as pip installs it: every subpackage is listed, so a non-editable install works."""

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_installed():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    mapped = {name: ROOT / where for name, where in setuptools.get("package-dir", {}).items()}
    on_disk = {".".join(init.parent.relative_to(ROOT).parts)
               for init in (ROOT / "framebus").rglob("__init__.py")}
    on_disk |= {name for name, where in mapped.items() if (where / "__init__.py").exists()}
    assert on_disk - listed == set(), "packages missing from [tool.setuptools] packages"
    assert listed - on_disk == set(), "packages listed that do not exist"
