"""The embedded examples: which task, which policy and which file each site of an example uses.

An example is data, not code: a small manifest (``policies/examples/<name>.yaml``) naming a task
file, a consortium policy file and, for each site, its data file or folder. Paths are relative
to the directory that holds the ``policies`` package (the repository root, or site-packages),
so the manifest can point at the task and policy files here and at the example data shipped
with the site node (``site_node/data/examples/``). ``consortium run --example NAME`` and
``consortium compare --example NAME`` read it; the sites are the manifest's.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from policies.documents import read_document
from policies.errors import PolicyError
from policies.identity import check_site_id
from policies.loader import validate

DEFAULT_EXAMPLE = "heart-disease"
RelativePath = StrictStr


class ExampleManifest(BaseModel):
    """An example: a task, a consortium policy and one data file (or folder) per site."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    name: StrictStr = Field(min_length=1, max_length=63)
    description: StrictStr = Field("", max_length=2000)
    task: RelativePath = Field(description="The task file.")
    policy: RelativePath = Field(description="The consortium policy file.")
    data: dict[StrictStr, RelativePath] = Field(
        min_length=2, description="Site id -> the site's data file or folder.")

    @field_validator("data")
    @classmethod
    def _site_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for site in value:
            check_site_id(site, what=f"data: site {site!r}")
        return value


@dataclass(frozen=True)
class Example:
    """A loaded example with absolute paths (each checked to exist)."""

    name: str
    description: str
    task: Path
    policy: Path
    data: dict[str, Path]

    @property
    def sites(self) -> tuple[str, ...]:
        """The example's sites, in manifest order."""
        return tuple(self.data)


def packages_root() -> Path:
    """The directory that holds the project's packages (what manifest paths are relative to)."""
    return Path(str(resources.files("policies"))).parent


def examples_dir() -> Path:
    """The embedded example manifests (``policies/examples/``)."""
    return Path(str(resources.files("policies") / "examples"))


def example_names() -> tuple[str, ...]:
    """Names of the embedded examples."""
    return tuple(sorted(p.stem for p in examples_dir().glob("*.yaml")))


def _resolve(manifest: Path, field: str, relative: str, *, must_exist: bool = True) -> Path:
    path = (packages_root() / relative).resolve()
    if must_exist and not path.exists():
        raise PolicyError(f"{manifest}: {field}: {relative} does not exist (looked at {path})")
    return path


def load_example(name: str) -> Example:
    """Read an embedded example by name.

    The task and policy files must exist; the data files are checked where they are read (a
    Flower app bundle holds the manifests, tasks and policies but not the examples' data).

    Raises
    ------
    PolicyError
        If there is no such example, its manifest is invalid, or its task or policy is missing.
    """
    file = examples_dir() / f"{name}.yaml"
    if not file.is_file():
        raise PolicyError(f"unknown example {name!r}; the examples are: "
                          f"{', '.join(example_names())}")
    data: Any = read_document(file)
    manifest = validate(ExampleManifest, data, str(file))
    if manifest.name != name:
        raise PolicyError(f"{file}: name: {manifest.name!r} is not the file's name {name!r}")
    return Example(
        name=name, description=manifest.description,
        task=_resolve(file, "task", manifest.task),
        policy=_resolve(file, "policy", manifest.policy),
        data={site: _resolve(file, f"data.{site}", rel, must_exist=False)
              for site, rel in manifest.data.items()},
    )
