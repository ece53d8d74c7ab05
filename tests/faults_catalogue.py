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
    "A member that dials the SuperLink's Control or Runtime API is refused (403) and logged": [
        r"tests/deployment/test_api_guard\.py::test_(control_and_runtime|a_websocket|a_request_with_no"
        r"|other_hosts)",
        r"tests/integration/test_multi_host\.py::test_a_hospital_is_refused",
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
        r"tests/site_node/test_instruction\.py::test_a(n_invalid)?_task",
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
    "A value with no canonical JSON (NaN, infinity) is never hashed or signed": [
        r"tests/policies/test_canonical\.py::test_canonical_json_refuses_nan_and_infinity_anywhere",
        r"tests/policies/test_canonical\.py::test_a_document_with_a_nan_has_no_canonical_json",
        r"tests/site_node/protocol/test_receipt\.py::test_canonical_encoding_refuses_non_finite",
    ],
    "An unknown run status, round status or run mode in the store is refused, naming run and "
    "value": [
        r"tests/consortium/store/test_statuses\.py::test_an_unknown_",
        r"tests/consortium/store/test_corrupt_store_fuzz\.py::",
    ],
    "Two resumes of one run: exactly one claims it, the other starts nothing": [
        r"tests/consortium/run/test_resume_claim\.py::test_(of_two_resumes|concurrent_processes)",
        r"tests/cli/test_resume\.py::test_a_resume_that_loses_the_race",
        r"tests/e2e/test_interrupt_resume\.py::test_a_killed",
    ],
    "A resume never continues a local-only run, closes a run whose rounds were all recorded, and "
    "keeps its policy, rounds, seed and task": [
        r"tests/consortium/run/test_resume_claim\.py::test_(a_local_only|the_automatic_choice"
        r"|only_local_only|a_run_killed_after|a_run_abandoned)",
        r"tests/cli/test_resume\.py::test_resume_(refuses_the_options|closes"
        r"|refuses_another_examples)",
    ],
    "Each site's data fingerprinted; the same data at two sites, or changed data on resume, "
    "refused": [
        r"tests/consortium/run/test_data_fingerprint\.py::",
        r"tests/cli/test_resume\.py::test_(resume_refuses_a_site_whose_data|a_new_run_refuses)",
        r"tests/site_node/test_run_continuity\.py::test_a_later_round_on_other_data",
        r"tests/site_node/data/test_fingerprint\.py::",
    ],
    "Another site home on resume is refused; no key is provisioned or rotated, no ledger split": [
        r"tests/cli/test_resume\.py::test_resume_with_other_site_homes",
        r"tests/consortium/run/test_resume_claim\.py::test_a_demo_sites_key",
        r"tests/site_node/test_run_continuity\.py::test_another_site_home",
        r"tests/consortium/run/test_receipts_held\.py::",
        r"tests/site_node/test_instruction\.py::test_(receipts_held|a_bad_receipts_held)",
    ],
    "Concurrent runs never pass a site's budget (reservations under the ledger's lock, atomic "
    "keys)": [
        r"tests/site_node/privacy/test_concurrent_admission\.py::",
        r"tests/site_node/privacy/test_reservations\.py::",
        r"tests/site_node/test_home\.py::test_(processes_creating_one_site_home|ensure_keys)",
    ],
    "A budget tool never reports an unspent budget for a home or site it cannot find": [
        r"tests/site_node/test_budget_cli\.py::",
    ],
    "A refusal that can be predicted stops the run before any site spends (preflight)": [
        r"tests/consortium/run/test_preflight\.py::",
        r"tests/site_node/test_preflight\.py::",
        r"tests/e2e/test_site_refusal\.py::test_(a_site_with_more_rows_than_max_weight"
        r"|when_every_site_would_refuse)",
    ],
    "check-data checks what the consortium policy implies for the data (max_weight, batch)": [
        r"tests/site_node/test_check_data\.py::",
    ],
    "The auditor's view shows the verifier's verdict (tampered receipt, security events, "
    "unreadable store)": [
        r"tests/dashboard/test_audit_verdict\.py::test_(an_intact|a_receipt_whose|security_events"
        r"|the_verdict_is_cached|an_error_building|a_store_that_cannot)",
        r"tests/dashboard/test_audit_download\.py::test_auditor_report_of_a_tampered",
        r"tests/dashboard/test_app\.py::test_audit_page_without_audit_log",
    ],
    "Unsigned ε figures on the dashboard are cross-checked against the signed receipts": [
        r"tests/dashboard/test_audit_verdict\.py::test_privacy_page_",
        r"tests/dashboard/test_verdict_units\.py::test_every_unsigned",
    ],
    "The dashboard sends no request off its host": [
        r"tests/dashboard/test_no_outside_request\.py::",
    ],
    "A patch test fails when its Flower patch is removed, whatever ran before": [
        r"tests/site_node/test_flower_compat\.py::test_(masking_installs|the_client_app_installs)",
        r"tests/consortium/test_flower_compat\.py::test_(install_masking|the_server_paces)",
    ],
    "Task scalings that overflow a float refused; non-finite features refused at the site": [
        r"tests/policies/test_task_scaling\.py::",
        r"tests/site_node/data/test_tabular_validation\.py::test_a_non_finite_encoded_feature",
    ],
    "Numbers are ASCII decimal only (5_5, ٥٥, ５５ are not 55)": [
        r"tests/policies/test_task_numbers\.py::",
        r"tests/site_node/data/test_tabular_validation\.py::test_(numbers_float_reads"
        r"|a_label_in_unicode_digits)",
    ],
    "Files checked from their headers before decoding (npz sizes, decompression bombs, disguised "
    "formats)": [
        r"tests/site_node/data/test_npz_headers\.py::",
        r"tests/site_node/data/test_image_headers\.py::",
    ],
    "Large tables checked in chunks: bounded memory, progress, the same report": [
        r"tests/site_node/data/test_table_chunks\.py::",
        r"tests/site_node/data/test_check_data_progress\.py::",
        r"tests/site_node/data/test_tabular_properties\.py::test_(chunks|text_cells)",
    ],
    "The deployed mode runs from an installed wheel, never from a checkout": [
        r"tests/deployment/test_app_bundle\.py::",
        r"tests/integration/test_installed\.py::",
    ],
    "Server and nodes read one set of run-config keys (a demo of another example)": [
        r"tests/deployment/test_run_config\.py::",
    ],
    "A busy dashboard port is refused before anything starts, naming --port": [
        r"tests/deployment/test_dashboard_command\.py::test_a_busy_port",
    ],
    "Refusals name the fix (a policy that does not fit the sites, shares above min_sites)": [
        r"tests/deployment/test_error_hints\.py::",
    ],
    "The audit log's end cannot be cut off unnoticed (signed head, signed run-stop)": [
        r"tests/consortium/audit/test_truncation\.py::",
        r"tests/cli/test_audit_exit_codes\.py::test_(a_log_cut|without_a_head)",
    ],
    "Every store row the export and the dashboard show is covered by the signed log": [
        r"tests/consortium/audit/test_coverage\.py::",
        r"tests/consortium/store/test_corrupt_store_fuzz\.py::",
    ],
    "The consortium key is pinned to the home's by default": [
        r"tests/cli/test_audit_exit_codes\.py::test_the_homes_key_is_pinned",
        r"tests/consortium/audit/test_verify\.py::test_(verification_pins|a_log_rewritten)",
    ],
    "The auditor's ε recomputation: one accountant interface, cached, identical to "
    "dp_accounting": [
        r"tests/consortium/audit/test_accountant\.py::test_(both_sides|the_cached_rdp"
        r"|the_pld_recomputation)",
    ],
    "Run store columns agree with the records (new and migrated stores); corrupt JSON refused": [
        r"tests/consortium/store/test_schema\.py::test_(each_run_table|the_agreement_check"
        r"|a_comparison_with_unreadable)",
    ],
    "A stale pid file never gets a stranger signalled": [
        r"tests/deployment/test_stop\.py::test_stop_never_signals_",
        r"tests/deployment/test_stop\.py::test_consortium_stop_with_a_(stale|n_unreadable)_pid_file",
        r"tests/deployment/test_status\.py::test_status_of_a_node_whose_pid_another_program",
    ],
    "Stopping a detached node or SuperLink ends every helper; nothing running is said": [
        r"tests/deployment/test_stop\.py::test_(stop_ends|stop_with_nothing|consortium_stop_stops"
        r"|serve_detach_then_stop|stop_a_real_detached)",
    ],
    "The privacy unit: refused when it cannot be honoured; units never composed": [
        r"tests/site_node/test_privacy_unit\.py::test_(the_task_file_refuses|a_record_without"
        r"|a_missing_patient|check_data_needs|the_ledger_never)",
        r"tests/site_node/data/test_image_patients\.py::test_(a_file_the_pattern|an_index_that"
        r"|a_missing_index|a_bare_name|the_task_refuses|an_npz_whose|an_npz_task_refuses)",
        r"tests/consortium/audit/test_verify_units\.py::test_(receipts_of_one_site|a_receipt_must)",
        r"tests/site_node/protocol/test_receipt\.py::test_(version_2_receipts|a_version_3)",
    ],
    "A service unit never runs without TLS, holds no secrets, and verifies": [
        r"tests/deployment/test_units\.py::",
    ],
    "Sites and server that mask with different SecAgg+ mask versions are refused before anyone "
    "trains, naming the site": [
        r"tests/consortium/run/test_preflight\.py::test_(a_site_with_another|an_answer_without)"
        r".*mask_version",
        r"tests/site_node/test_instruction\.py::test_another_or_no_mask_version",
        r"tests/site_node/test_(client|preflight)\.py::.*mask version",
        r"tests/site_node/protocol/test_masking\.py::test_another_or_no_mask_version",
    ],
    "SecAgg+ masks: known answer, masks cancel (dropouts too), bounded memory, bad uploads "
    "refused": [
        r"tests/site_node/protocol/test_masking\.py::test_(known_answer|masks_are_the_standard"
        r"|a_stream_read)",
        r"tests/site_node/protocol/test_masked_vector\.py::",
        r"tests/consortium/run/test_secure_aggregation\.py::",
    ],
    "A training device is parsed once and refused clearly; the mode check holds on GPUs": [
        r"tests/site_node/test_device\.py::",
        r"tests/site_node/test_settings\.py::test_a_bad_device_or_physical_batch",
        r"tests/deployment/test_device_option\.py::test_(a_device_typo|cuda_on_a_machine)",
        r"tests/cli/test_run_device\.py::test_a_bad_or_missing_device",
        r"tests/site_node/test_grad_mode\.py::test_(tf32_sized_noise|a_wrong_mode|a_tf32_device"
        r"|tf32_is_off)",
        r"tests/site_node/test_training\.py::test_a_physical_batch_cap",
    ],
    "A model that does not beat the majority class is flagged, never silently reported": [
        r"tests/consortium/store/test_baseline\.py::",
        r"tests/consortium/run/test_comparison\.py::test_the_summary_line",
        r"tests/dashboard/test_app\.py::test_overview_flags_a_model",
        r"tests/consortium/store/test_corrupt_store_fuzz\.py::.*(majority_rate|choice_json)",
    ],
    "Fixed features: a bad extractor refused naming the field; a backbone file that is not the "
    "task's refused at the site, naming the file and both hashes, before any record is read; a "
    "features folder that is not a folder refused before the node starts, naming --features-dir": [
        r"tests/policies/test_task_features\.py::test_(bad_features|an_image_network"
        r"|a_tabular_task)",
        r"tests/site_node/test_features\.py::test_a_(backbone_whose_hash|missing_backbone)",
        r"tests/site_node/test_settings\.py::test_a_features_folder_is_resolved",
        r"tests/deployment/test_features_dir\.py::test_(a_missing_features_dir"
        r"|check_data_finds_the_backbone|start_checks_the_backbone)",
        r"tests/e2e/test_features_run\.py::test_a_site_with_another_backbone",
    ],
    "Augmentation a task cannot use refused naming the field (no transform, a crop as large as "
    "the image, with features)": [
        r"tests/site_node/test_augmentation\.py::test_a_task_naming_bad_augmentation",
        r"tests/policies/test_task_features\.py::test_augmentation_with_features",
    ],
    "Settings chosen for a terms-only policy: public inputs, 0 ε, never above the ceiling": [
        r"tests/consortium/run/test_choice\.py::",
        r"tests/e2e/test_privacy_terms_only\.py::",
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
