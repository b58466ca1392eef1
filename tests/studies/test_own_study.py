"""A researcher's own study, outside this repository: `claims init`, the README's commands as
printed, threshold rows, a checkpoint given with ``--claims-model``, misspelt names, and the same
evidence from any invocation directory, report folder or number of workers."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main as claims_main
from tests._support.paths import ROOT

BIN = Path(sys.executable).parent


def readme_commands(section: str) -> list[str]:
    """The lines of the ```bash blocks of README section `section`, as printed."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", body, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


def run(command: str | list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    argv = shlex.split(command) if isinstance(command, str) else command
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder outside the repository with a checkpoint of one's own in it (`./my-checkpoint`)."""
    from harness import load_model

    folder = tmp_path_factory.mktemp("project")
    model = load_model("fixture:planted")
    model.module.save_pretrained(folder / "my-checkpoint")
    model.tokenizer.save_pretrained(folder / "my-checkpoint")
    return folder


@pytest.fixture(scope="module")
def readme_run(project) -> list[subprocess.CompletedProcess]:
    return [run(line, project) for line in readme_commands("Your own study")]


def test_the_readme_commands_run_as_printed_in_a_folder_outside_the_repository(readme_run, project):
    commands = readme_commands("Your own study")
    assert commands[0] == "claims init animal --model fixture:planted"
    assert [c.split()[:2] for c in commands[1:]] == [["pytest", "animal"], ["pytest", "animal"]]
    for command, proc in zip(commands, readme_run):
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    assert sorted(p.name for p in (project / "animal").iterdir() if p.suffix in (".py", ".txt")) == [
        "__init__.py", "conftest.py", "prompts.txt", "study.py", "test_animal.py"]


def test_the_new_study_holds_and_reports_its_row_model_and_data(readme_run):
    plain, checkpoint = readme_run[1].stdout, readme_run[2].stdout
    assert "1 passed" in plain and "1 passed" in checkpoint
    assert "study animal: thresholds row 'fixture:planted' (the model's spec)" in plain
    assert "study animal: thresholds row 'fixture:planted' (--claims-thresholds)" in checkpoint
    assert re.search(r"model animal: \./my-checkpoint  fingerprint \w{12}  \(cpu, float32\)  from directory: ", checkpoint)
    assert re.search(r"data animal: .*animal/prompts\.txt  hash sha256:\w{12}", plain)


def test_a_misspelt_name_ends_the_run_at_collection(project, readme_run):
    proc = run("pytest animal --claims-model anmial=./my-checkpoint", project)
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert ("ERROR: --claims-model anmial=./my-checkpoint: no study in this run reads a model named 'anmial' "
            "(known: ['animal']); did you mean 'animal'?") in proc.stderr
    proc = run("pytest animal --claims-model animal=./my-checkpoint", project)   # no row for it
    assert proc.returncode == 4
    assert "no thresholds for model './my-checkpoint' (study animal)" in proc.stderr
    assert "pass --claims-thresholds animal=ROW (rows: ['fixture:planted'])" in proc.stderr


def test_claims_init_never_overwrites_and_refuses_a_name_that_is_not_an_identifier(project, readme_run, capsys):
    before = (project / "animal" / "study.py").read_text()
    assert claims_main(["init", "animal", "--model", "x", "--dir", str(project)]) == 1
    assert "animal already exists; claims init never overwrites" in capsys.readouterr().err
    assert (project / "animal" / "study.py").read_text() == before
    assert claims_main(["init", "my-study", "--model", "x", "--dir", str(project)]) == 1
    assert "`name` must be a Python identifier" in capsys.readouterr().err
    assert not (project / "my-study").exists()


def evidence_of(report: Path) -> list:
    data = json.loads(report.read_text())
    return [(c["identity"], c["seed"], c["outcome"], c["evidence"]) for c in data["claims"]]


@pytest.mark.slow
def test_the_same_study_gives_identical_evidence_from_any_folder_report_folder_or_worker_count(project, readme_run):
    (project / "sub").mkdir(exist_ok=True)
    runs = {
        "from the project": (project, ["pytest", "animal", "--claims-report", "out/a"], project / "out/a"),
        "from a subfolder, report folder absent": (
            project / "sub", ["pytest", "--claims-report", "../reports/x", str(project / "animal")],
            project / "reports/x"),
        "from a subfolder, report folder present": (
            project / "sub", ["pytest", "--claims-report", "../reports/x", str(project / "animal")],
            project / "reports/x"),
        "two workers": (project, ["pytest", "animal", "-n", "2", "--claims-report", "out/b"], project / "out/b"),
    }
    got = {}
    for name, (cwd, argv, report) in runs.items():
        proc = run(argv, cwd)
        assert proc.returncode == 0, name + proc.stdout[-3000:] + proc.stderr[-3000:]
        got[name] = evidence_of(report / "report.json")
    first = got["from the project"]
    assert first[0][0] == "animal/test_animal.py::test_unembedding_direction_moves_the_logit_difference"
    assert all(value == first for value in got.values()), {k: v[0][1] for k, v in got.items()}


# --- study declarations, in-process ---------------------------------------------------------------

STUDY = '''
from dataclasses import dataclass, field
from harness.plugin import Study

@dataclass(frozen=True)
class Row:
    bar: float
    refuted: dict = field(default_factory=dict)

STUDY = Study({name!r}, model="fixture:none", thresholds={{"fixture:none": Row(0.5, {refuted})}})
'''

CLAIMS = '''
import pytest
from harness import expect, stats
from harness.plugin import threshold_row

@pytest.mark.claim("holds")
def test_holds(pytestconfig):
    expect(stats.bootstrap_mean([1.0, 2.0, 1.5, 1.2, 1.8, 1.1, 1.9, 1.4, 1.6, 1.3] * 3)).at_least(
        threshold_row(pytestconfig, {name!r}).bar)

@pytest.mark.claim("does not hold")
def test_does_not_hold():
    expect(stats.bootstrap_mean([-1.0, -2.0, -1.5, -1.2, -1.8, -1.1, -1.9, -1.4, -1.6, -1.3] * 3)).positive()
'''


def make_study(pytester, folder: str, name: str, refuted: str = "{}") -> None:
    pkg = pytester.mkpydir(folder)
    (pkg / "study.py").write_text(STUDY.format(name=name, refuted=refuted))
    (pkg / f"test_{folder}.py").write_text(CLAIMS.format(name=name))


def test_a_rows_refuted_claims_run_as_strict_xfails(pytester):
    make_study(pytester, "mine", "mine", refuted='{"test_does_not_hold": "-1.48 [-1.64, -1.32]"}')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*study mine: thresholds row 'fixture:none' (the model's spec)*"])


def test_a_study_py_without_study_is_someone_elses_module_and_ignored(pytester):
    pkg = pytester.mkpydir("plain")
    (pkg / "study.py").write_text("raise RuntimeError('never imported')\n")
    (pkg / "test_plain.py").write_text("def test_x():\n    pass\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_study_whose_study_is_not_a_study_is_a_usage_error(pytester):
    pkg = pytester.mkpydir("odd")
    (pkg / "study.py").write_text("STUDY = {'name': 'odd'}\n")
    (pkg / "test_odd.py").write_text("def test_x():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*odd*study.py: `STUDY` must be a harness.plugin.Study, got dict*"])


def test_two_folders_declaring_one_study_name_is_a_usage_error(pytester):
    make_study(pytester, "first", "same")
    make_study(pytester, "second", "same")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*two studies are named 'same'*rename one*"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="my study", model="m", thresholds={"m": 1}), "Study `name` must start with a letter"),
    (dict(name="s", model="", thresholds={"m": 1}), "Study 's': `model` must be the default model's spec"),
    (dict(name="s", model="m", thresholds={}), "Study 's': `thresholds` must map row names to rows"),
    (dict(name="s", model="m", thresholds={"m": 1}, data="s"), "Study 's': `data` must be a tuple of names"),
])
def test_a_bad_study_declaration_names_the_field(kwargs, message):
    from harness.plugin import Study, StudyError

    with pytest.raises(StudyError, match=re.escape(message)):
        Study(**kwargs)
