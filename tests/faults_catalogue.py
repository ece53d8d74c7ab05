"""The classes of faults and bad input the suite tests, and which tests cover each.

The README's table "Faults and bad input we test" is generated from this catalogue and the
collected tests (``python -m tests.faults_catalogue``); ``tests/test_faults_catalogue.py``
fails when the table and the suite drift apart. A test may count in more than one class.
"""

from __future__ import annotations

import re
import subprocess
import sys

CATALOGUE: dict[str, list[str]] = {
    "The member list is the policy's; a member without data is refused": [
        r"tests/cli/test_faults\.py::test_a_member_site_without_data",
        r"tests/site_node/test_demo\.py::",
        r"tests/consortium/run/test_inputs\.py::test_with_an_example_the_members",
        r"tests/e2e/test_simulation_run\.py::test_every_round_has_all_four_sites",
    ],
    "SecAgg+ parameters validated together; the unmasked aggregate checked": [
        r"tests/policies/test_schema\.py::test_(secagg_capacity|capacity|modulus|even_or_small"
        r"|largest_modulus|fractional_num_shares)",
        r"tests/consortium/run/test_rounds\.py::test_(a_non_finite_aggregate|an_aggregate_beyond"
        r"|no_aggregate)",
        r"tests/consortium/run/test_workflow\.py::test_a_bad_aggregate",
        r"tests/site_node/test_client\.py::test_more_examples_than_secagg_max_weight",
    ],
    "Non-finite or unsupported values never reach training": [
        r"tests/policies/test_schema\.py::test_(non_finite|yaml_infinity)",
        r"tests/site_node/protocol/test_mechanism\.py::",
        r"tests/site_node/test_instruction\.py::",
    ],
    "Bad site data refused before training, nothing spent": [
        r"tests/site_node/data/test_(tabular|image)_validation\.py::",
        r"tests/site_node/test_client_data\.py::",
        r"tests/consortium/run/test_demo_sites\.py::",
        r"tests/e2e/test_own_task\.py::test_a_site_whose_file",
        r"tests/site_node/test_client\.py::test_a_refusal_has_weight_zero.*"
        r"(non-finite|single|unreadable)",
        r"tests/deployment/test_cli\.py::test_start_with_(missing|unparseable)_data",
    ],
    "Rejected replies and security events fail verification": [
        r"tests/cli/test_audit_exit_codes\.py::",
        r"tests/consortium/audit/test_verify\.py::test_an_impostor",
        r"tests/consortium/run/test_impostor_simulation\.py::",
        r"tests/consortium/run/test_attribution\.py::",
        r"tests/consortium/run/test_workflow\.py::test_a_rejected_reply",
        r"tests/consortium/audit/test_report\.py::test_report_lists_security",
    ],
    "Key rotation keeps history verifiable": [
        r"tests/consortium/audit/test_(registry|verify)\.py::.*(rotat|valid_when_logged)",
    ],
    "Enrolment: one id rule, one key per site, one consortium key": [
        r"tests/policies/test_identity\.py::",
        r"tests/consortium/audit/test_registry\.py::test_(one_receipt|an_invalid)",
        r"tests/consortium/audit/test_log\.py::test_another_consortium",
        r"tests/deployment/test_cli\.py::test_enroll_",
        r"tests/cli/test_refusals\.py::test_site_node_init_refuses",
        r"tests/deployment/test_homes\.py::test_(init_keeps|one_consortium_home)",
        r"tests/consortium/run/test_demo_mode\.py::test_a_store_signed_by_another",
    ],
    "Path traversal through site ids": [
        r"tests/cli/test_faults\.py::test_a_site_id_that_climbs",
        r"tests/policies/test_schema\.py::test_member_site_ids",
        r"tests/policies/test_site_schema\.py::test_(the_site_id|peer_ids)",
    ],
    "min_sites enforced on the sites that actually trained": [
        r"tests/consortium/run/test_workflow\.py::test_(too_few|a_refusal_within)",
    ],
    "Admission rule and refusal reasons (never a stack trace)": [
        r"tests/site_node/privacy/test_admission\.py::",
        r"tests/site_node/test_client\.py::test_a_refused_run_stays",
        r"tests/e2e/test_site_refusal\.py::",
        r"tests/dashboard/test_app\.py::test_(participation_names|refusal_of_a_real)",
        r"tests/dashboard/test_units\.py::test_a_refusing_site",
    ],
    "Only what the threat model lists leaves a site": [
        r"tests/site_node/test_client\.py::test_an_accepted_round_returns",
        r"tests/consortium/audit/test_report\.py::test_threat_model",
    ],
    "A stage that timed out does not fail the next round (late replies held back)": [
        r"tests/consortium/run/test_grid\.py::test_a_node_(still_on_a_stale|that_never_answers)",
    ],
    "A SuperNode the SuperLink refuses is told why, whatever the transport said": [
        r"tests/deployment/test_supernode_output\.py::",
        r"tests/integration/test_deployment\.py::test_(unenrolled|plaintext|wrong_ca)",
    ],
    "Ctrl-C and SIGTERM end a run promptly as interrupted": [
        r"tests/e2e/test_interrupt_resume\.py::test_sigterm",
        r"tests/consortium/run/test_grid\.py::test_(the_stop|a_stopped)",
    ],
    "A killed run is shown as such, resumed once, or abandoned with the reason": [
        r"tests/e2e/test_interrupt_resume\.py::test_a_killed",
        r"tests/consortium/run/test_resume\.py::",
        r"tests/dashboard/test_app\.py::test_a_run_whose_process_was_killed",
        r"tests/site_node/test_client\.py::test_a_round_already_trained",
    ],
    "A store of a newer schema is refused before training": [
        r"tests/consortium/store/test_database\.py::test_(a_store_of_a_newer|a_file_that_is_not"
        r"|a_v1)",
        r"tests/cli/test_faults\.py::test_a_store_of_a_newer",
        r"tests/consortium/run/test_demo_mode\.py::test_a_store_of_a_newer",
    ],
    "`consortium dashboard` stops its server on SIGTERM": [
        r"tests/cli/test_dashboard_process\.py::",
    ],
    "Hostile files and lax parsing (YAML, encodings, types, CLI ranges)": [
        r"tests/policies/test_documents\.py::",
        r"tests/policies/test_schema\.py::test_(yes_is_not|bad_values)",
        r"tests/policies/test_site_schema\.py::test_(bad_values|yaml_literals|unknown_site)",
        r"tests/cli/test_refusals\.py::test_(broken_policy|consortium_run_refuses_absurd"
        r"|site_node_budget|the_installed)",
    ],
    "Task files: unknown types and contradictions refused, naming file, column and field": [
        r"tests/policies/test_task\.py::",
        r"tests/policies/test_task_loader\.py::test_(strict_yaml|canonical_json)",
        r"tests/site_node/test_instruction\.py::test_a(n invalid)? task",
    ],
    "Fuzzing in bounded time (policy and task loaders, table cells, receipts, stored records)": [
        r"tests/policies/test_loader\.py::test_the_loader_raises_nothing",
        r"tests/policies/test_task_loader\.py::test_any_parsed_document",
        r"tests/site_node/data/test_tabular_properties\.py::",
        r"tests/site_node/protocol/test_receipt_fuzz\.py::",
        r"tests/consortium/store/test_corrupt_store_fuzz\.py::",
    ],
    "Homes, stores, ledgers and keys private to the user (0700/0600)": [
        r"tests/e2e/test_simulation_run\.py::test_homes_stores",
        r"tests/consortium/store/test_database\.py::test_store_files_are_private",
        r"tests/consortium/audit/test_end_to_end\.py::test_the_store_is_private",
        r"tests/deployment/test_homes\.py::test_site_home_keys_and_permissions",
    ],
}


def collected() -> list[str]:
    """Every test id of the suite (parametrised cases counted one by one)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "tests"], capture_output=True, text=True,
                          check=True)
    return [line for line in done.stdout.splitlines() if "::" in line]


def counts(ids: list[str]) -> dict[str, int]:
    """Cases per class."""
    return {name: sum(any(re.search(p, i) for p in patterns) for i in ids)
            for name, patterns in CATALOGUE.items()}


def table(ids: list[str]) -> str:
    """The README table."""
    rows = ["| class of fault or bad input | test cases |", "| --- | ---: |"]
    rows += [f"| {name} | {n} |" for name, n in counts(ids).items()]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(table(collected()) + "\n")
