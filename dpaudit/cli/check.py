"""`dpaudit check`: the CI gate on a saved report (exit 0 pass, 1 fail, 2 bad input)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from dpaudit.cli.common import (
    friendly,
    main,
)
from dpaudit.errors import DPAuditError


@main.command("check")
@click.argument("report_path", metavar="REPORT.json", type=click.Path(path_type=Path))
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), default=None,
              help="TOML policy file (top-level keys or a [policy] table; see examples/policy.toml). Flags below "
              "override its values. Default: none (only --forbid-violation applies).")
@click.option("--max-auc", type=float, default=None,
              help="Largest attack AUC allowed on DP models (0.5 = chance, 1 = perfect). Default: the policy "
              "file's max_auc_dp, else off. Set non-DP limits with max_auc_non_dp in the policy file.")
@click.option("--max-tpr-at-1pct-fpr", "max_tpr", type=float, default=None,
              help="Largest attack TPR at 1% FPR allowed on DP models (fraction 0-1). Default: the policy file's "
              "max_tpr_at_1pct_fpr_dp, else off. Non-DP: max_tpr_at_1pct_fpr_non_dp in the policy file.")
@click.option("--max-epsilon", type=float, default=None,
              help="Largest claimed ε (accountant) allowed for every DP model. Default: the policy file's "
              "max_epsilon (a number or a {model = ε} table), else off.")
@click.option("--min-accuracy", type=float, default=None,
              help="Lowest test accuracy allowed for every model (fraction 0-1). Default: the policy file's "
              "min_accuracy, else off.")
@click.option("--forbid-violation/--allow-violation", default=None,
              help="Fail if any model's verdict is 'violation' (ε lower bound above the claimed ε). "
              "Default: the policy file's forbid_violation, else forbid.")
@click.option("--baseline", "baseline_path", type=click.Path(path_type=Path), default=None,
              help="An earlier report.json of the same dataset and split: AUC, TPR@1%FPR, ε lower bound and "
              "claimed ε may not rise by more than --tolerance over it. Default: none.")
@click.option("--tolerance", type=float, default=None,
              help="Absolute rise allowed over the baseline, in each metric's unit. Default: the policy file's "
              "tolerance, else 0.02.")
@click.option("--format", "out_format", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="What to print on stdout.")
@click.option("--junit-xml", "junit_path", type=click.Path(path_type=Path), default=None,
              help="Also write JUnit XML (one testcase per rule) to this file. Default: none.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None,
              help="Also write a Markdown summary (for a PR comment) to this file. Default: none.")
@friendly
def check_command(report_path, policy_path, max_auc, max_tpr, max_epsilon, min_accuracy, forbid_violation,
                  baseline_path, tolerance, out_format, junit_path, markdown_path):
    """Gate CI on a report: exit 0 if every privacy rule holds, 1 if any fails, 2 on bad input."""
    from dataclasses import replace

    from dpaudit.check import (
        Policy,
        evaluate_policy,
        read_report_strict,
        rules_json,
        rules_junit_xml,
        rules_markdown,
        rules_table,
    )
    from dpaudit.io import atomic_write_text
    from dpaudit.io_paths import refuse_overwriting_inputs

    # The exit status is the gate's contract: 0 pass, 1 fail, 2 bad input or I/O error. Whatever else goes
    # wrong must not read as "policy failed" (1) with a traceback, so it becomes one line and exit 2 as well.
    try:
        refuse_overwriting_inputs([("--junit-xml", junit_path), ("--markdown", markdown_path)],
                                  [("report", report_path), ("baseline", baseline_path), ("policy", policy_path)])
        policy = Policy.from_toml(policy_path) if policy_path else Policy()
        overrides = {k: v for k, v in (("max_auc_dp", max_auc), ("max_tpr_at_1pct_fpr_dp", max_tpr),
                                       ("max_epsilon", max_epsilon), ("min_accuracy", min_accuracy),
                                       ("forbid_violation", forbid_violation), ("tolerance", tolerance))
                     if v is not None}
        policy = replace(policy, **overrides)
        policy.validate("command line")
        report = read_report_strict(report_path)
        baseline = read_report_strict(baseline_path) if baseline_path else None
        rules = evaluate_policy(report, policy, baseline)  # verifies both against their evidence first
        outputs = [(opt, path, text) for opt, path, text in
                   (("--junit-xml", junit_path, rules_junit_xml(rules) if junit_path else ""),
                    ("--markdown", markdown_path, rules_markdown(rules) if markdown_path else "")) if path]
        written: list[Path] = []
        for opt, path, text in outputs:
            try:
                atomic_write_text(path, text)
            except OSError as exc:
                for done in written:  # all or nothing: no half set of outputs beside an exit 2
                    done.unlink(missing_ok=True)
                why = ("a folder above it is a file" if isinstance(exc, (FileExistsError, NotADirectoryError))
                       else exc.strerror or exc.__class__.__name__)
                raise DPAuditError(f"{opt} {path} cannot be written ({why})") from None
            written.append(Path(path))
    except DPAuditError as exc:
        raise DPAuditError(" ".join(str(exc).split())) from None  # one line, whatever a file's keys hold
    except Exception as exc:  # noqa: BLE001 (see the comment above)
        raise DPAuditError(" ".join(f"check could not evaluate {report_path} ({exc.__class__.__name__}: {exc})"
                                    .split())) from None
    if out_format == "json":
        click.echo(rules_json(rules, str(report_path), str(baseline_path) if baseline_path else None))
    else:
        click.echo(rules_table(rules))
    sys.exit(0 if all(r.passed for r in rules) else 1)
