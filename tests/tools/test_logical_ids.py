"""The logical-id check: what counts as a change a deploy would turn into a replacement."""

from __future__ import annotations

import json
from pathlib import Path

from tools.logical_ids import compare, report, resources


def _template(outdir: Path, stack: str, resources_by_id: dict[str, str]) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    body = {"Resources": {i: {"Type": t, "Properties": {}} for i, t in resources_by_id.items()}}
    (outdir / f"{stack}.template.json").write_text(json.dumps(body))


def test_reads_every_template_of_an_assembly_including_stage_assemblies(tmp_path):
    _template(tmp_path, "Dev-Data", {"Db": "AWS::RDS::DBInstance"})
    _template(tmp_path / "assembly-Prod", "Prod-Data", {"Db": "AWS::RDS::DBInstance", "Key": "AWS::KMS::Key"})
    assert resources(tmp_path) == {"Dev-Data": {"Db": "AWS::RDS::DBInstance"},
                                   "Prod-Data": {"Db": "AWS::RDS::DBInstance", "Key": "AWS::KMS::Key"}}


def test_identical_stacks_are_unchanged():
    stacks = {"Dev-Data": {"Db": "AWS::RDS::DBInstance"}}
    diffs = compare(stacks, {"Dev-Data": dict(stacks["Dev-Data"])})
    assert [d.changed for d in diffs] == [False]
    assert report(diffs).endswith("1 stacks, 0 with changed logical ids")


def test_renamed_retyped_and_vanished_resources_are_changes():
    before = {"Dev-Limits": {"Fn": "AWS::Lambda::Function", "Queue": "AWS::SQS::Queue"},
              "Dev-Gone": {"Topic": "AWS::SNS::Topic"}}
    after = {"Dev-Limits": {"FnRenamed": "AWS::Lambda::Function", "Queue": "AWS::SNS::Topic"}}
    diffs = {d.stack: d for d in compare(before, after)}
    assert diffs["Dev-Limits"].added == ("FnRenamed",)
    assert diffs["Dev-Limits"].removed == ("Fn",)
    assert diffs["Dev-Limits"].retyped == ("Queue",)
    assert diffs["Dev-Gone"].removed == ("Topic",)
    assert "removed: Fn" in report(list(diffs.values()))
