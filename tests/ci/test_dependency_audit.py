"""The dependency audit (gates.yml, job dependency-audit) covers every requirements file that pip
installs into something we ship: the images (read from the Dockerfile's COPY and `pip install`
instructions) and the Lambda layer (read from the `pip install -r` commands of the CDK bundling
code). A requirements file added to either and not to the audit fails here."""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path, PurePosixPath

import pytest
import yaml

from app import PROJECT_DIR

GATES = PROJECT_DIR / ".github" / "workflows" / "gates.yml"
DOCKERFILE = PROJECT_DIR / "Dockerfile"
BUNDLING_CODE = PROJECT_DIR / "stacks"
_REQUIREMENT_FLAG = re.compile(r"(?:^|\s)(?:-r|--requirement)[\s=]+(\S+)")
_OPERATORS = {"&&", "||", ";", "|"}


def audited_requirements(workflow: Path) -> set[str]:
    """The ``--requirement`` files of the pip-audit commands of the dependency-audit job."""
    steps = yaml.safe_load(workflow.read_text())["jobs"]["dependency-audit"]["steps"]
    commands = [line for step in steps for line in step.get("run", "").replace("\\\n", " ").splitlines()
                if "pip_audit" in line or line.lstrip().startswith("pip-audit ")]
    return {path for command in commands for path in _REQUIREMENT_FLAG.findall(command)}


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = (line.strip() for line in text.splitlines())
    return [(keyword.upper(), rest) for keyword, _, rest in
            (line.partition(" ") for line in lines if line and not line.startswith("#"))]


def _source_of(path: PurePosixPath, copied: dict[PurePosixPath, str]) -> str | None:
    """The repository path a COPY put at ``path`` (a file copied there, or inside a copied folder)."""
    for destination, source in copied.items():
        if path == destination:
            return source
        if path.is_relative_to(destination) and (PROJECT_DIR / source).is_dir():
            return str(PurePosixPath(source) / path.relative_to(destination))
    return None


def _commands(script: str) -> list[list[str]]:
    """A shell script's simple commands as words (``&&``, ``||``, ``;``, ``|`` separate them)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word in _OPERATORS:
            commands.append([])
        else:
            commands[-1].append(word)
    return [command for command in commands if command]


def _pip_requirements(command: list[str]) -> list[str]:
    """The ``-r``/``--requirement`` files of a ``pip install`` command (none for any other command)."""
    if "install" not in command or not any(word.rsplit("/", 1)[-1] in ("pip", "pip3") for word in command):
        return []
    found = []
    for word, following in zip(command, [*command[1:], ""]):
        if word in ("-r", "--requirement"):
            found.append(following)
        elif word.startswith(("--requirement=", "-r=")):
            found.append(word.split("=", 1)[1])
    return found


def image_requirements(dockerfile: Path) -> set[str]:
    """Repository files that a ``pip install -r`` of the Dockerfile reads: a file COPY'd from the build
    context, or one that the same RUN derives from copied files (``grep … copied > derived``)."""
    workdir, copied, found = PurePosixPath("/"), {}, set()
    for keyword, rest in _instructions(dockerfile):
        if keyword == "WORKDIR":
            workdir = workdir / rest
        elif keyword == "COPY" and "--from" not in rest:
            *sources, destination = [word for word in shlex.split(rest) if not word.startswith("--")]
            target = workdir / destination
            for source in sources:
                into_folder = destination.endswith("/") and not (PROJECT_DIR / source).is_dir()
                copied[target / PurePosixPath(source).name if into_folder else target] = source
        elif keyword == "RUN":
            commands = _commands(rest)
            for requirement in (path for command in commands for path in _pip_requirements(command)):
                source = _source_of(workdir / requirement, copied)
                if source is not None:
                    found.add(source)
                    continue
                writers = [command for command in commands
                           if any(a == ">" and b == requirement for a, b in zip(command, command[1:]))]
                assert writers, f"{dockerfile.name}: pip installs {requirement}, neither copied nor derived in its RUN"
                inputs = {_source_of(workdir / word, copied) for command in writers for word in command} - {None}
                assert inputs, f"{dockerfile.name}: {requirement} is derived from no copied file"
                found |= inputs
    return found


def _requirement_value(module, node: ast.expr) -> str:
    value = node.args[0] if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "str" else node
    if isinstance(value, ast.Constant):
        return str(value.value)
    assert isinstance(value, ast.Name), f"{module.__name__}: cannot read the -r argument {ast.unparse(node)}"
    return str(Path(getattr(module, value.id)).relative_to(PROJECT_DIR))


def lambda_requirements(code: Path) -> set[str]:
    """Every ``-r`` argument of a pip command list (``[..., "-r", str(REQUIREMENTS), ...]``) in the
    bundling code, resolved from the module's constants."""
    found = set()
    for path in sorted(code.rglob("*.py")):
        text = path.read_text()
        if '"pip"' not in text:
            continue
        module = importlib.import_module(".".join(path.relative_to(PROJECT_DIR).with_suffix("").parts))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.List):
                for flag, value in zip(node.elts, node.elts[1:]):
                    if isinstance(flag, ast.Constant) and flag.value in ("-r", "--requirement"):
                        found.add(_requirement_value(module, value))
    return found


def test_the_derivations_find_what_the_image_and_the_lambda_layer_install():
    """The readers are not vacuous: they find today's files (a rename of a pattern would return nothing)."""
    assert image_requirements(DOCKERFILE) == {"requirements.txt", "services/requirements.txt",
                                              "docker/otel-requirements.txt"}
    assert lambda_requirements(BUNDLING_CODE) == {"lambdas/requirements.txt"}


def test_every_requirements_file_of_an_image_or_a_lambda_is_audited():
    shipped = image_requirements(DOCKERFILE) | lambda_requirements(BUNDLING_CODE)
    audited = audited_requirements(GATES)
    assert shipped - audited == set(), f"add --requirement for these to gates.yml's pip-audit: {shipped - audited}"
    assert all((PROJECT_DIR / path).is_file() for path in audited), audited


def test_a_requirements_file_added_to_the_image_but_not_to_the_audit_is_found(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE.read_text().replace(
        "COPY docker/otel-requirements.txt ./otel-requirements.txt\n",
        "COPY docker/otel-requirements.txt ./otel-requirements.txt\nCOPY requirements-dev.txt ./dev.txt\n").replace(
        "-r otel-requirements.txt", "-r otel-requirements.txt -r dev.txt"))
    workflow = tmp_path / "gates.yml"
    workflow.write_text(GATES.read_text().replace(" --requirement services/requirements.txt", ""))
    missing = image_requirements(dockerfile) - audited_requirements(workflow)
    assert missing == {"requirements-dev.txt", "services/requirements.txt"}


def test_requirements_read_from_a_copied_folder_or_derived_in_the_run_are_found(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python AS build\nWORKDIR /build\nCOPY requirements.txt ./all.txt\n"
                          "COPY services/ /app/services/\n"
                          "RUN grep -v cdk all.txt > runtime.txt \\\n && pip install -r runtime.txt "
                          "-r /app/services/requirements.txt\n")
    assert image_requirements(dockerfile) == {"requirements.txt", "services/requirements.txt"}


def test_a_pip_install_of_a_file_from_nowhere_is_an_error_not_a_silent_pass(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python\nRUN pip install -r unknown.txt\n")
    with pytest.raises(AssertionError, match="neither copied nor derived"):
        image_requirements(dockerfile)


def test_a_second_pip_requirements_file_in_the_bundling_code_is_found(tmp_path, monkeypatch):
    package = tmp_path / "bundling_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "layer.py").write_text(
        "from pathlib import Path\nEXTRA = Path(%r) / 'requirements-dev.txt'\n"
        "CMD = ['python', '-m', \"pip\", 'install', '-r', str(EXTRA), '--requirement', 'docker/x.txt']\n"
        % str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(f"{__name__}.PROJECT_DIR", tmp_path)
    assert lambda_requirements(package) == {"requirements-dev.txt", "docker/x.txt"}


def test_the_audit_resolves_with_the_python_the_images_and_the_lambdas_run():
    """pip-audit resolves version markers with its own interpreter: auditing on another Python than
    the shipped one can miss (or invent) a dependency that only one version installs."""
    from stacks.constructs.python_function import RUNTIME

    steps = yaml.safe_load(GATES.read_text())["jobs"]["dependency-audit"]["steps"]
    (audit_python,) = [str(step["with"]["python-version"]) for step in steps if "setup-python" in step.get("uses", "")]
    (image_python,) = {match for keyword, rest in _instructions(DOCKERFILE) if keyword == "FROM"
                       for match in re.findall(r"python:(\d+\.\d+)", rest)}
    assert audit_python == image_python == RUNTIME.name.removeprefix("python")
