"""The rules' conda envs: each parses, pip accepts its pip lines, it pins pyproject's versions, and
it holds every third-party package that its rules' scripts import, directly or through packd."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.conftest import REPO

PACKAGE_ROOT = REPO / "src"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))

# Import names whose distribution (the PyPI name) is named otherwise.
DISTRIBUTION_OF_IMPORT = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "skimage": "scikit-image",
    "dateutil": "python-dateutil",
    "cv2": "opencv-python",
    "Bio": "biopython",
}
# PyPI names whose conda-forge package is named otherwise.
CONDA_PACKAGE_OF_DISTRIBUTION = {
    "torch": "pytorch",
    "opencv-python": "opencv",
}
# Methods that import an optional dependency only when called: pandas' to_markdown needs
# tabulate, its parquet I/O pyarrow.
IMPORT_OF_METHOD = {
    "to_markdown": "tabulate",
    "read_parquet": "pyarrow",
    "to_parquet": "pyarrow",
}
# Snakemake's script preamble appends its own search path, so a script finds it in any env.
PROVIDED_BY_SNAKEMAKE = {"snakemake"}

ALLOWED_CHANNELS = {"conda-forge", "nodefaults", "pytorch"}
# pip options allowed in a pip section besides -e (pip rejects most, e.g. --no-deps).
ALLOWED_PIP_OPTIONS: frozenset[str] = frozenset()
# conda runs pip in the folder of the env file it is given; Snakemake gives it a copy of the
# file in .snakemake/conda/ of its working directory, the repository root.
PIP_WORKING_DIRECTORY = REPO / ".snakemake" / "conda"
# The variables that pip expands (${NAME}), as pip sees them under Snakemake: its shell sets
# PWD to its working directory, and conda passes that on to pip.
PIP_ENVIRONMENT = {"PWD": str(REPO)}
PIP_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)\}")
# name, then optionally a version and a build: "pytorch ==2.13.0 cpu*", "python >=3.11,<3.12".
CONDA_SPEC = re.compile(
    r"^(?:[\w.-]+::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
    r"(?:\s+(?P<version>[0-9A-Za-z.*,<>=!|_+]+)(?:\s+(?P<build>\S+))?)?$"
)
RULE_HEADER = re.compile(r"^(?:rule|checkpoint)\s+(?P<name>\w+)\s*:")
RULE_DIRECTIVE = re.compile(r"^\s+(?P<key>conda|script)\s*:\s*(?P<value>.*)$")


@dataclass(frozen=True)
class Rule:
    """A rule of the workflow, with the env file and script it names (None when it has none)."""

    name: str
    conda_env: Path | None
    script: Path | None


@dataclass(frozen=True)
class CondaEnv:
    """An env file: its conda packages (canonical name -> version spec) and its pip lines."""

    path: Path
    conda_versions: dict[str, str]
    pip_lines: list[str]


def directive_path(rule_file: Path, lines: list[str], index: int, value: str) -> Path:
    """The path a conda: or script: directive names, relative to the file that holds the rule."""
    if not value:
        value = next(line for line in lines[index + 1 :] if line.strip())
    try:
        relative = ast.literal_eval(value.strip().rstrip(","))
    except (ValueError, SyntaxError) as error:
        raise ValueError(f"{rule_file}:{index + 1}: not a plain path: {value.strip()}") from error
    return (rule_file.parent / relative).resolve()


def parse_rules(rule_file: Path) -> list[Rule]:
    """The rules of a Snakefile or .smk file, each with its conda: and script: paths."""
    lines = rule_file.read_text().splitlines()
    rules, name, paths = [], None, {}
    for index, line in enumerate(lines):
        header = RULE_HEADER.match(line)
        if header or (line.strip() and not line[0].isspace() and not line.startswith("#")):
            if name is not None:
                rules.append(Rule(name, paths.get("conda"), paths.get("script")))
            name, paths = (header["name"] if header else None), {}
        elif name is not None and (directive := RULE_DIRECTIVE.match(line)):
            paths[directive["key"]] = directive_path(rule_file, lines, index, directive["value"])
    if name is not None:
        rules.append(Rule(name, paths.get("conda"), paths.get("script")))
    return rules


def workflow_rules() -> list[Rule]:
    """Every rule of the workflow, from the Snakefile and workflow/rules/*.smk."""
    return [rule for rule_file in RULE_FILES for rule in parse_rules(rule_file)]


def local_packages(package_root: Path) -> set[str]:
    """Names of the import packages whose source is under package_root."""
    return {path.parent.name for path in package_root.glob("*/__init__.py")}


def module_name(source: Path, package_root: Path) -> str | None:
    """The dotted module name of a file under package_root, None for a file outside it."""
    if not source.is_relative_to(package_root):
        return None
    parts = source.relative_to(package_root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(module: str, package_root: Path) -> Path | None:
    """The source file of a module under package_root, None for any other module."""
    relative = Path(*module.split("."))
    for candidate in (package_root / f"{relative}.py", package_root / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(source: Path, package_root: Path) -> tuple[set[str], set[str]]:
    """Every module name imported anywhere in source (function bodies too), and the methods of
    IMPORT_OF_METHOD it uses."""
    tree = ast.parse(source.read_text(), filename=str(source))
    own_module = module_name(source, package_root)
    modules, methods = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if own_module is None:
                    raise ValueError(f"{source}:{node.lineno}: relative import outside a package")
                parts = own_module.split(".")
                package = parts if source.name == "__init__.py" else parts[:-1]
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            modules.add(base)
            # `from packd import tracing` imports the module packd.tracing.
            modules.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Attribute) and node.attr in IMPORT_OF_METHOD:
            methods.add(node.attr)
    return modules, methods


def env_imports(script: Path, package_root: Path = PACKAGE_ROOT) -> dict[str, str]:
    """Top-level modules that running script needs from its env (stdlib left out), imported by
    it or by the packages under package_root (named too), each with a file that imports it."""
    own_packages = local_packages(package_root)
    found: dict[str, str] = {}
    visited, to_visit = {script}, [script]
    while to_visit:
        source = to_visit.pop()
        where = str(source.relative_to(REPO)) if source.is_relative_to(REPO) else str(source)
        modules, methods = imported_modules(source, package_root)
        for module in sorted(modules):
            top = module.split(".")[0]
            if top in own_packages:
                found.setdefault(top, where)
                # Importing a.b.c runs a/__init__.py and a/b/__init__.py as well.
                parts = module.split(".")
                for depth in range(1, len(parts) + 1):
                    imported = module_file(".".join(parts[:depth]), package_root)
                    if imported is not None and imported not in visited:
                        visited.add(imported)
                        to_visit.append(imported)
            elif top and top not in sys.stdlib_module_names and top not in PROVIDED_BY_SNAKEMAKE:
                found.setdefault(top, where)
        for method in sorted(methods):
            found.setdefault(IMPORT_OF_METHOD[method], f"{where}, by .{method}()")
    return found


def expand_pip_variables(line: str) -> str:
    """The line as pip reads it, with ${NAME} replaced from PIP_ENVIRONMENT."""

    def value(match: re.Match) -> str:
        name = match["name"]
        assert name in PIP_ENVIRONMENT, f"pip line {line!r}: ${{{name}}} has no known value"
        return PIP_ENVIRONMENT[name]

    return PIP_VARIABLE.sub(value, line)


def local_project_name(target: str) -> str:
    """The project name of a local folder that pip installs, found as pip would find it."""
    folder = (PIP_WORKING_DIRECTORY / expand_pip_variables(target)).resolve()
    pyproject = folder / "pyproject.toml"
    assert pyproject.is_file(), (
        f"pip line {target!r}: no pyproject.toml in {folder} (pip runs in {PIP_WORKING_DIRECTORY})"
    )
    return tomllib.loads(pyproject.read_text())["project"]["name"]


def pip_line_distribution(line: str) -> str:
    """The canonical distribution name that a pip line installs; fails on a line pip rejects."""
    line = line.strip()
    if line.startswith("-e ") or line.startswith("-e\t"):
        return canonicalize_name(local_project_name(line[2:].strip()))
    option = line.split()[0]
    assert not line.startswith("-") or option in ALLOWED_PIP_OPTIONS, (
        f"pip line {line!r}: {option} is not a requirement (pip rejects most options there)"
    )
    try:
        return canonicalize_name(Requirement(line).name)
    except InvalidRequirement:
        return canonicalize_name(local_project_name(line))


def read_env(path: Path) -> CondaEnv:
    """An env file's conda packages and pip lines; fails on an entry conda cannot read."""
    content = yaml.safe_load(path.read_text())
    conda_versions: dict[str, str] = {}
    pip_lines: list[str] = []
    for entry in content["dependencies"]:
        if isinstance(entry, dict):
            assert list(entry) == ["pip"], f"{path.name}: unknown section {list(entry)}"
            pip_lines += [str(line) for line in entry["pip"]]
            continue
        spec = CONDA_SPEC.match(str(entry))
        assert spec, f"{path.name}: {entry!r} is not 'name [version [build]]'"
        conda_versions[canonicalize_name(spec["name"])] = spec["version"] or ""
    return CondaEnv(path, conda_versions, pip_lines)


def conda_package(distribution: str) -> str:
    """The conda-forge name of a PyPI distribution."""
    canonical = canonicalize_name(distribution)
    return CONDA_PACKAGE_OF_DISTRIBUTION.get(canonical, canonical)


def provided_distributions(env: CondaEnv) -> set[str]:
    """Canonical PyPI names of what the env installs, through conda or pip."""
    conda_names = {
        conda: distribution for distribution, conda in CONDA_PACKAGE_OF_DISTRIBUTION.items()
    }
    from_conda = {conda_names.get(name, name) for name in env.conda_versions}
    return from_conda | {pip_line_distribution(line) for line in env.pip_lines}


def distribution_of_import(top_level: str) -> str:
    """The canonical PyPI name behind a top-level import name."""
    if top_level in local_packages(PACKAGE_ROOT):
        return canonicalize_name(PYPROJECT["name"])
    return canonicalize_name(DISTRIBUTION_OF_IMPORT.get(top_level, top_level))


RULES = workflow_rules()
RULES_WITH_ENV_AND_SCRIPT = [rule for rule in RULES if rule.conda_env and rule.script]


def test_rules_are_found_for_every_script() -> None:
    """Guards the .smk parser: every script of workflow/scripts is some rule's script."""
    scripts_of_rules = {rule.script for rule in RULES}
    assert [script for script in SCRIPTS if script not in scripts_of_rules] == []


def test_every_rule_with_a_script_has_an_env() -> None:
    missing = [rule.name for rule in RULES if rule.script and not rule.conda_env]
    assert missing == [], f"rules with a script: but no conda: env: {missing}"


@pytest.mark.parametrize("rule", RULES_WITH_ENV_AND_SCRIPT, ids=lambda rule: rule.name)
def test_env_holds_every_package_the_script_imports(rule: Rule) -> None:
    assert rule.conda_env.is_file(), f"rule {rule.name}: no env file {rule.conda_env}"
    env = read_env(rule.conda_env)
    provided = provided_distributions(env)
    missing = [
        f"{conda_package(distribution_of_import(module))} (imported as {module} in {where})"
        for module, where in env_imports(rule.script).items()
        if distribution_of_import(module) not in provided
    ]
    assert missing == [], (
        f"rule {rule.name}: env {rule.conda_env.relative_to(REPO)} lacks " + "; ".join(missing)
    )


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_env_file_has_name_channels_and_dependencies(env_file: Path) -> None:
    content = yaml.safe_load(env_file.read_text())
    assert isinstance(content.get("name"), str), f"{env_file.name}: no name"
    channels = content.get("channels")
    assert channels and channels[0] == "conda-forge", f"{env_file.name}: channels {channels}"
    assert set(channels) <= ALLOWED_CHANNELS, f"{env_file.name}: channels {channels}"
    assert content.get("dependencies"), f"{env_file.name}: no dependencies"
    env = read_env(env_file)
    if env.pip_lines:
        assert "pip" in env.conda_versions, f"{env_file.name}: a pip section without pip itself"


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_pip_lines_are_accepted_by_pip(env_file: Path) -> None:
    for line in read_env(env_file).pip_lines:
        assert pip_line_distribution(line), f"{env_file.name}: pip line {line!r}"


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_env_that_installs_the_project_pins_its_dependencies(env_file: Path) -> None:
    """pip must find the project's dependencies already installed by conda, at pyproject's
    versions, rather than fetch them from PyPI (whose torch is a CUDA build)."""
    env = read_env(env_file)
    project = canonicalize_name(PYPROJECT["name"])
    if project not in {pip_line_distribution(line) for line in env.pip_lines}:
        pytest.skip(f"{env_file.name} does not install {project}")
    expected = {"python": PYPROJECT["requires-python"]} | {
        conda_package(Requirement(line).name): str(Requirement(line).specifier)
        for line in PYPROJECT["dependencies"]
    }
    wrong = [
        f"{name} {env.conda_versions.get(name, '(absent)')} (pyproject: {specifier})"
        for name, specifier in expected.items()
        if name not in env.conda_versions
        or SpecifierSet(env.conda_versions[name]) != SpecifierSet(specifier)
    ]
    assert wrong == [], f"{env_file.name}: " + "; ".join(wrong)


def test_imports_are_found_in_function_bodies_and_through_methods(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        "import json\n"
        "import numpy.linalg\n"
        "def main(frame):\n"
        "    import yaml\n"
        "    from sklearn.cluster import KMeans\n"
        "    return frame.to_markdown()\n"
    )
    assert set(env_imports(script)) == {"numpy", "yaml", "sklearn", "tabulate"}


def test_imports_are_followed_into_the_package_and_its_function_bodies(tmp_path: Path) -> None:
    sources = {
        "pkg/__init__.py": "",
        "pkg/stages/__init__.py": "from pkg.stages.data import run\n",
        "pkg/stages/data.py": "def run():\n    from pkg import fitting\n",
        "pkg/fitting.py": "import sklearn.cluster\nfrom . import helpers\n",
        "pkg/helpers.py": "from scipy import stats\n",
        "pkg/unused.py": "import networkx\n",
    }
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    script = tmp_path / "script.py"
    script.write_text("from pkg.stages import run\n")
    found = env_imports(script, package_root=tmp_path)
    assert set(found) == {"pkg", "sklearn", "scipy"}
    assert found["scipy"] == str(tmp_path / "pkg" / "helpers.py")


def test_rules_are_parsed_with_their_env_and_script(tmp_path: Path) -> None:
    rule_file = tmp_path / "rules" / "stage.smk"
    rule_file.parent.mkdir()
    rule_file.write_text(
        "rule first:\n"
        "    output:\n"
        '        script="not/a/directive.txt",\n'
        '    conda: "../envs/a.yaml"\n'
        "    script:\n"
        '        "../scripts/first.py"\n'
        "\n"
        "\n"
        "def helper():\n"
        "    pass\n"
        "\n"
        "\n"
        "rule second:\n"
        "    input:\n"
        "        helper(),\n"
    )
    assert parse_rules(rule_file) == [
        Rule("first", tmp_path / "envs" / "a.yaml", tmp_path / "scripts" / "first.py"),
        Rule("second", None, None),
    ]
