"""The operator docs name only things that exist, spelled as the code spells them.

The README's shell commands run as written from a fresh clone after `make`: every command is a
make target, a shell builtin, an installed tool, or a program the project installs into `.venv/bin`.

Across the README, every runbook, docs/release.md and docs/configuration.md (`OPERATOR_DOCS`), in
code blocks and `code spans`: every `tenant-provisioner …` / `python -m tenant_provisioner …`
subcommand and flag is one the CLI has; every `make <target> VAR=…` is a target of the Makefile and
VAR a variable it reads; every `python -m <module> --flag` is a runnable module whose `--help` lists
the flag; every repository path exists; every config key (`observability.alarm_emails`) is a field
of `EnvConfig`; every GitHub variable is one the workflows read, and every variable the workflows
read is in the README's table. Stack names, stack outputs and SSM parameter names are checked
against the synthesized templates in tests/stacks/test_operator_docs.py, with the same extraction.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import typer

from stacks.config import load_config
from tenant_provisioner.cli.main import app

PROJECT_DIR = Path(__file__).resolve().parents[1]
README = PROJECT_DIR / "README.md"
VENV_BIN = Path(sys.executable).parent
# Programs the README expects from the machine (PostgreSQL's client, the AWS CLI) or the shell.
EXTERNAL = {"make", "export", "source", "createdb", "aws"}
# Paths under these directories are made by a build or live elsewhere, not in the repository.
GENERATED = ("cdk.out", "build/", ".venv", "node_modules")
REPOSITORY_DIRS = tuple(f"{d}/" for d in (".github", "stacks", "tools", "docs", "k8s", "lambdas", "config", "bench",
                                          "drills", "tests", "services", "tenant_provisioner", "security", "docker"))


def operator_docs(root: Path = PROJECT_DIR) -> list[Path]:
    """README, every runbook, docs/release.md and docs/configuration.md under ``root``."""
    return [root / "README.md", *sorted((root / "docs" / "runbooks").glob("*.md")),
            root / "docs" / "release.md", root / "docs" / "configuration.md"]


@dataclass(frozen=True)
class Snippet:
    """One line of a code block or one code span of a doc."""

    doc: str
    text: str

    def __str__(self) -> str:
        return f"{self.doc}: {self.text!r}"


def snippets(docs: list[Path]) -> list[Snippet]:
    found = []
    for doc in docs:
        text = doc.read_text()
        name = str(doc.relative_to(doc.parents[1] if doc.parent.name == "runbooks" else doc.parent))
        for block in re.findall(r"^ *```[^\n]*\n(.*?)^ *```", text, flags=re.S | re.M):
            found += [Snippet(name, line.strip()) for line in block.splitlines() if line.strip()]
        prose = re.sub(r"^ *```[^\n]*\n.*?^ *```", "", text, flags=re.S | re.M)
        found += [Snippet(name, " ".join(span.split())) for span in re.findall(r"`([^`]+)`", prose)
                  if "\n\n" not in span]   # a span may wrap onto the next line
    return found


def _words(command: str) -> list[str]:
    """The words of one command, up to a comment, pipe, redirection or the next command."""
    command = re.split(r"\s#|\s\|\s|\s;|\s&&|\s\d?>", f" {command} ")[0]
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return [w.strip("[]") for w in words if w.strip("[]")]


# --- tenant-provisioner --------------------------------------------------------------------------------
CLI_CALL = re.compile(r"(?:^|[\s(=])(?:\.venv/bin/)?(?:tenant-provisioner|python3? -m tenant_provisioner)\s+(.*)")


def _options(command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {"--help"}


def _is_group(command) -> bool:
    return hasattr(command, "commands")   # typer's click group (typer may bring its own click)


def cli_errors(words: list[str]) -> list[str]:
    """What in ``words`` (after the program name) the CLI does not have."""
    command = typer.main.get_command(app)
    path = ["tenant-provisioner"]
    for word in words:
        if word.startswith("-"):
            if word.split("=")[0] not in _options(command):
                return [f"{' '.join(path)} has no option {word.split('=')[0]}"]
        elif _is_group(command):
            if word not in command.commands:
                return [f"{' '.join(path)} has no subcommand {word!r} (it has {', '.join(sorted(command.commands))})"]
            command = command.commands[word]
            path.append(word)
    if _is_group(command):
        return [f"{' '.join(path)} needs a subcommand ({', '.join(sorted(command.commands))})"]
    return []


def cli_calls(found: list[Snippet]) -> list[tuple[Snippet, list[str]]]:
    """Each CLI invocation; ``list | show ID | suspend ID`` in one span is three invocations."""
    top = typer.main.get_command(app)
    calls = []
    for snippet in found:
        for match in CLI_CALL.finditer(snippet.text):
            rest = match.group(1).split("#")[0]
            calls.append((snippet, _words(rest)))
            for alternative in rest.split(" | ")[1:]:
                words = _words(alternative)
                if words and words[0] in top.commands:
                    calls.append((snippet, words))
    return calls


# --- make ----------------------------------------------------------------------------------------------
MAKE_CALL = re.compile(r"(?:^|[\s;(])make ([a-z][\w./-]*)((?:\s+[A-Z_]+=\S*)*)")


def make_calls(found: list[Snippet]) -> list[tuple[Snippet, str, list[str]]]:
    return [(s, m.group(1), re.findall(r"([A-Z_]+)=", m.group(2))) for s in found for m in MAKE_CALL.finditer(s.text)]


@functools.cache
def make_target_exists(makefile_dir: Path, target: str) -> bool:
    """`make -n <target>` knows the target (nothing runs: -n only prints the recipes)."""
    run = subprocess.run(["make", "-n", "-C", str(makefile_dir), target], capture_output=True, text=True,
                         timeout=60)
    return "No rule to make target" not in run.stderr


# Targets that act on the real account of the credentials: without ACCOUNT and REGION they would use the
# Makefile's offline placeholders (account 111111111111, us-east-1) and fail or look in the wrong region.
REAL_ACCOUNT_TARGETS = {"preflight": {"ENV", "ACCOUNT", "REGION"}, "images": {"ENV", "ACCOUNT", "REGION"}}


def makefile_variables(makefile: Path) -> set[str]:
    return set(re.findall(r"\$\((\w+)\)", makefile.read_text()))


# --- python -m -----------------------------------------------------------------------------------------
MODULE_CALL = re.compile(r"(?:^|[\s(=])(?:\.venv/bin/)?python3? -m ([a-z_][\w.]*)(.*)")
# A span naming a module of the project's tool packages without `python -m`: `k8s.images --promote`.
BARE_MODULE = re.compile(r"^((?:k8s|tools|lambdas|services)\.[a-z_]+)((?: .*)?)$")


def module_calls(found: list[Snippet]) -> list[tuple[Snippet, str, list[str]]]:
    """(snippet, module, the words after it: flags and a first subcommand, not values)."""
    calls = []
    for snippet in found:
        matches = [*MODULE_CALL.finditer(snippet.text), *BARE_MODULE.finditer(snippet.text)]
        for match in matches:
            if match.group(1) != "tenant_provisioner":
                words = _words(match.group(2))
                named = [w.split("=")[0] for w in words if w.startswith("--")]
                if words and re.fullmatch(r"[a-z][a-z-]*", words[0]):
                    named.insert(0, words[0])   # a subcommand (`tools.release migrate`) or a positional value
                calls.append((snippet, match.group(1), named))
    return calls


def module_help(module: str, cwd: Path = PROJECT_DIR) -> str | None:
    """`python -m <module> --help` (None: the module does not exist or cannot run)."""
    run = subprocess.run([sys.executable, "-m", module, "--help"], cwd=cwd, capture_output=True, text=True,
                         timeout=120)
    return run.stdout if run.returncode == 0 else None


def module_flag_errors(calls: list[tuple[Snippet, str, list[str]]], cwd: Path = PROJECT_DIR) -> list[str]:
    """Modules named with flags must accept them (their --help lists each flag, and a subcommand among
    its `{a,b}` choices); modules without flags must exist (not run: some of them start servers)."""
    import importlib.util
    with_flags = sorted({module for _, module, flags in calls if flags})
    with ThreadPoolExecutor(max_workers=2) as pool:
        helps = dict(zip(with_flags, pool.map(lambda m: module_help(m, cwd), with_flags)))
    errors = []
    for snippet, module, flags in calls:
        if not flags:
            if importlib.util.find_spec(module) is None:
                errors.append(f"{snippet}: no module {module}")
            continue
        if helps[module] is None:
            errors.append(f"{snippet}: `python -m {module} --help` fails")
            continue
        options = set(re.findall(r"--[\w-]+", helps[module]))
        errors += [f"{snippet}: python -m {module} has no option {flag}" for flag in flags
                   if flag.startswith("--") and flag not in options]
        choices = {c for group in re.findall(r"\{([\w,-]+)\}", helps[module]) for c in group.split(",")}
        errors += [f"{snippet}: python -m {module} has no subcommand {word} (it has {sorted(choices)})"
                   for word in flags if not word.startswith("--") and choices and word not in choices]
    return errors


# --- paths, config keys, GitHub variables ---------------------------------------------------------------
def repository_paths(found: list[Snippet]) -> list[tuple[Snippet, str]]:
    paths = []
    for snippet in found:
        for word in re.split(r"[\s=(),]+", snippet.text):
            word = word.rstrip(".:;").split("#")[0]
            if (word.startswith(REPOSITORY_DIRS) and not word.startswith(GENERATED)
                    and not re.search(r"[<>{}*…$]", word) and re.fullmatch(r"[\w./-]+", word)):
                paths.append((snippet, word))
    return paths


@functools.cache
def code_strings(root: Path = PROJECT_DIR) -> frozenset[str]:
    """Every quoted dotted name in the domain library: audit actions (`billing.payment_failed`)."""
    return frozenset(name for path in (root / "tenant_provisioner").rglob("*.py")
                     for name in re.findall(r"[\"']([a-z_]+\.[a-z_.]+)[\"']", path.read_text()))


def config_key_errors(found: list[Snippet]) -> list[str]:
    config = load_config("prod")
    errors = []
    for snippet in found:
        for key in re.findall(r"^([a-z_]+(?:\.[a-z_*]+)+)$", snippet.text):
            head, *rest = key.split(".")
            if not hasattr(config, head) or head in ("name", "account", "region", "tags") or key in code_strings():
                continue   # not a config key: a module (k8s.render), a file (db.py), an audit action
            value = getattr(config, head)
            for part in rest:
                if part == "*":
                    break
                if not hasattr(value, part):
                    errors.append(f"{snippet}: `{head}` has no field {part!r}")
                    break
                value = getattr(value, part)
    return errors


GITHUB_VARIABLE = re.compile(r"^(AWS_[A-Z_]+|API_BASE_URL)(_<env>|_dev|_prod)?$")


def workflow_variables(root: Path = PROJECT_DIR) -> set[str]:
    """Variables the workflows read: `vars.NAME`, and `NAME_<env>` for `vars[format('NAME_{0}', …)]`."""
    text = "".join(p.read_text() for p in sorted((root / ".github" / "workflows").glob("*.yml")))
    return set(re.findall(r"vars\.(\w+)", text)) | {f"{name}_<env>" for name in
                                                     re.findall(r"vars\[format\('(\w+)_\{0\}'", text)}


def documented_variables(found: list[Snippet]) -> set[str]:
    names = set()
    for snippet in found:
        if (match := GITHUB_VARIABLE.match(snippet.text)) and not snippet.text.startswith("AWS_DEFAULT"):
            names.add(match.group(1) + ("_<env>" if match.group(2) else ""))
    return names


def lambda_invoke_errors(docs: list[Path]) -> list[str]:
    """AWS CLI v2 reads `--payload` as base64 unless told otherwise: each invoke with a JSON payload
    must say `--cli-binary-format raw-in-base64-out`."""
    errors = []
    for doc in docs:
        text = doc.read_text()
        for match in re.finditer(r"aws lambda invoke", text):
            command = re.split(r"out\.json|/dev/stdout|`\.|```", text[match.start():match.start() + 400])[0]
            if "--payload" in command and "--cli-binary-format raw-in-base64-out" not in command:
                errors.append(f"{doc.name}: {' '.join(command.split())!r} lacks --cli-binary-format raw-in-base64-out")
    return errors


def operations_action_errors(docs: list[Path], root: Path = PROJECT_DIR) -> list[str]:
    """Every `tenant_operations` action a doc names (a payload `{"action": "…"}` or a backticked name
    next to the function's name) is one of the function's ACTIONS."""
    handler = (root / "lambdas" / "tenant_operations" / "handler.py").read_text()
    actions = set(re.findall(r'"(\w+)": _\w+', re.search(r"ACTIONS: .*?\n}", handler, flags=re.S).group(0)))
    assert {"init", "migrate"} <= actions
    errors = []
    for doc in docs:
        text = doc.read_text()
        named = re.findall(r'"action":\s*"([\w-]+)"', text)
        named += [a for line in text.splitlines() if "tenant_operations" in line
                  for a in re.findall(r"(?:action|actions) `([\w-]+)`|, `([\w-]+)`", line) for a in a if a]
        errors += [f"{doc.name}: tenant_operations has no action {name!r} ({sorted(actions)})"
                   for name in named if name not in actions]
    return errors


# --- the tests -----------------------------------------------------------------------------------------
def _commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_every_readme_command_exists_after_make():
    """`tenant-provisioner init` failed unless the virtualenv was on PATH."""
    commands = _commands()
    assert commands
    for command in commands:
        program = command.split()[0]
        if program in EXTERNAL:
            continue
        assert program.startswith(".venv/bin/"), f"{command!r}: runs only with the virtualenv on PATH"
        assert (VENV_BIN / program.removeprefix(".venv/bin/")).exists(), f"{command!r}: not installed by make"


def test_every_cli_subcommand_and_flag_in_the_operator_docs_exists():
    calls = cli_calls(snippets(operator_docs()))
    assert len(calls) > 40
    errors = [f"{snippet}: {error}" for snippet, words in calls for error in cli_errors(words)]
    assert not errors, "\n".join(errors)


def test_every_make_target_and_variable_in_the_operator_docs_exists():
    calls = make_calls(snippets(operator_docs()))
    assert {"synth", "preflight", "cluster-tunnel"} <= {target for _, target, _ in calls}
    variables = makefile_variables(PROJECT_DIR / "Makefile")
    errors = [f"{snippet}: no make target {target}" for snippet, target, _ in calls
              if not make_target_exists(PROJECT_DIR, target)]
    errors += [f"{snippet}: the Makefile never reads {name}" for snippet, _, names in calls for name in names
               if name not in variables]
    errors += [f"{snippet}: make {target} needs {', '.join(sorted(REAL_ACCOUNT_TARGETS[target] - set(names)))}"
               for snippet, target, names in calls
               if names and not REAL_ACCOUNT_TARGETS.get(target, set()) <= set(names)]
    assert not errors, "\n".join(errors)


def test_every_python_module_and_its_flags_in_the_operator_docs_exist():
    calls = module_calls(snippets(operator_docs()))
    assert any(flags for _, _, flags in calls)
    errors = module_flag_errors(calls)
    assert not errors, "\n".join(errors)


def test_every_repository_path_in_the_operator_docs_exists():
    paths = repository_paths(snippets(operator_docs()))
    assert len(paths) > 10
    missing = [f"{snippet}: {path} does not exist" for snippet, path in paths if not (PROJECT_DIR / path).exists()]
    assert not missing, "\n".join(missing)


def test_every_config_key_in_the_operator_docs_is_a_field_of_the_config():
    errors = config_key_errors(snippets(operator_docs()))
    assert not errors, "\n".join(errors)


def test_the_github_variables_documented_are_the_ones_the_workflows_read():
    documented = documented_variables(snippets([README]))
    read = workflow_variables()
    assert read, "no `vars.` in the workflows"
    assert read <= documented, f"read by the workflows, missing from the README's table: {sorted(read - documented)}"
    everywhere = documented_variables(snippets(operator_docs()))
    assert everywhere <= read, f"documented, read by no workflow: {sorted(everywhere - read)}"


def test_every_lambda_invoke_in_the_operator_docs_sends_its_payload_as_json():
    errors = lambda_invoke_errors(operator_docs())
    assert not errors, "\n".join(errors)


def test_every_tenant_operations_action_in_the_operator_docs_exists():
    errors = operations_action_errors(operator_docs())
    assert not errors, "\n".join(errors)


def copy_of_the_docs(tmp_path: Path, edits: dict[str, tuple[str, str]]) -> list[Path]:
    """The operator docs copied under ``tmp_path`` with ``edits`` (doc → (old, new)) applied."""
    for doc in operator_docs():
        copy = tmp_path / doc.relative_to(PROJECT_DIR)
        copy.parent.mkdir(parents=True, exist_ok=True)
        text = doc.read_text()
        if copy.name in edits:
            old, new = edits[copy.name]
            assert old in text, f"{copy.name} no longer says {old!r}: pick another misspelling"
            text = text.replace(old, new)
        copy.write_text(text)
    return operator_docs(tmp_path)


def test_each_check_fails_on_a_misspelled_name_in_a_copy_of_the_docs(tmp_path):
    docs = copy_of_the_docs(tmp_path, {
        "offboarding.md": ("--export-dir", "--export-directory"),
        "cluster-access.md": ("make cluster-tunnel ENV=prod PORT=9443", "make cluster-tunel ENV=prod PORT=9443"),
        "suspend-resume.md": ("tenant-provisioner resume", "tenant-provisioner resumes"),
        "release.md": ("`k8s.images --promote`", "`k8s.images --promotion`"),
        "configuration.md": ("`concurrency.account_quota`", "`concurrency.account_quotas`"),
        "README.md": ("`AWS_DEPLOY_ROLE_ARN`", "`AWS_DEPLOY_ROLE`"),
        "tenant-onboarding.md": ("--cli-binary-format raw-in-base64-out \\\n  --payload '{\"action\": \"sync", "--payload '{\"action\": \"sync"),
        "kubernetes-upgrade.md": ("`k8s/chart.py`", "`k8s/charts.py`"),
        "service-credentials.md": ("""ops '{"action": "init"}'""", """ops '{"action": "initialise"}'"""),
    })
    found = snippets(docs)
    assert any("no option --export-directory" in e for s, w in cli_calls(found) for e in cli_errors(w))
    assert any("no subcommand 'resumes'" in e for s, w in cli_calls(found) for e in cli_errors(w))
    assert any(not make_target_exists(PROJECT_DIR, t) for _, t, _ in make_calls(found))
    assert any("has no option --promotion" in e for e in module_flag_errors(module_calls(found)))
    assert any("no field 'account_quotas'" in e for e in config_key_errors(found))
    assert "AWS_DEPLOY_ROLE_ARN" not in documented_variables(snippets([tmp_path / "README.md"]))
    assert any("tenant-onboarding.md" in e for e in lambda_invoke_errors(docs))
    assert any(not (PROJECT_DIR / path).exists() for _, path in repository_paths(found))
    assert any("no action 'initialise'" in e for e in operations_action_errors(docs))
