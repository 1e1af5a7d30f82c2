"""The rules the marts follow, in this project's words, each with the tests that pin it.

``SECTIONS`` are the general rules (time, dossiers, timeliness, feedback); ``SETTLED`` the numbered settled rules
the code cites as "settled detail N" (where the national method leaves room, the choice made here); ``CHOICES``
further choices of this project. Each test is named ``path::function`` and must exist
(tests/unit/kpis/test_rulebook.py checks it). docs/kpis.md is generated from this module and the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

T_CAL = "tests/unit/calendar/test_calendar.py"
T_DOS = "tests/unit/marts/test_dossier_rules.py"
T_FPS = "tests/unit/marts/test_feedback_procedures_scores.py"
T_EQ = "tests/unit/marts/test_dossier_agg_equivalence.py"
T_STG = "tests/unit/staging/test_staging.py"


@dataclass(frozen=True)
class Rule:
    ref: str                  # "S9" for settled rule 9, else a section name
    title: str
    text: str
    tests: tuple[str, ...]


SECTIONS: tuple[Rule, ...] = (
    Rule("Time", "Time and periods",
         "Timestamps are Vietnam local time and are compared by their calendar date. A period P runs from "
         "`period_start` to `period_end`, both included: calendar months (`2024-03`), quarters (`2024-Q1`) and "
         "years (`2024`), and for form 06 also cut-off periods (`cutoff_15`) that start on the 15th of the month "
         "before and end on the 14th. Every measure of P is taken on its evaluation day `E`, the earlier of "
         "`period_end` and the run's data date `as_of`; a period not yet begun on `as_of` has no rows. Working "
         "days are Monday to Friday less Vietnam's public holidays (observed and substitute days included) and the "
         "days listed in the extra days-off file.",
         (f"{T_CAL}::test_add_working_days_never_counts_d_and_zero_is_d",
          f"{T_CAL}::test_cutoff_periods_are_labelled_by_the_calendar_period_they_end_in",
          f"{T_DOS}::test_current_period_uses_as_of")),
    Rule("Dossiers", "Which dossiers count",
         "A dossier counts once it is received: a status other than 1 and 3 with a received time. Its due date "
         "is the date of `due_at`; without one, the procedure's legal time in working days added to the received "
         "date; without both, it has none. It ends on the date of `finished_at`, or, for statuses 7 to 10 "
         "without one, of `returned_at`. The population of P holds the dossiers received by E that had not "
         "ended before P began; among them, received in P (received on or after `period_start`), carried over "
         "(received before), resolved in P (ended by E) and in progress at E (the others).",
         (f"{T_DOS}::test_received_flag_excludes_status_1_and_3",
          f"{T_DOS}::test_end_date_uses_returned_at_only_for_status_7_to_10",
          f"{T_DOS}::test_population_split_and_classes")),
    Rule("Timeliness", "One timeliness class per dossier of the population",
         "Checked in this order at E: (1) two or more supplement requests made by E: late when resolved, overdue "
         "when not; (2) resolved: early before the due date, on time on it or with no due date, late after it; "
         "(3) in progress and waiting for a supplement at E (its latest request by E not yet answered by E): "
         "within time when that request was made by the due date, else overdue; (4) other dossiers in progress: "
         "within time while the due date is E or later (or there is none), else overdue. The marts count the "
         "classes on grouped dossiers and `explain` classifies dossier by dossier; both must agree.",
         (f"{T_DOS}::test_population_split_and_classes",
          f"{T_EQ}::test_dossier_counters_equal_the_pair_by_pair_count")),
    Rule("Feedback", "Feedback items",
         "A feedback item's deadline is 15 working days after its received date. Its population in P: received "
         "by E and not answered before P began. On time: answered by E on or before the deadline, or still open "
         "at E with E on or before the deadline. An item received in P is unsatisfied when it has more dislikes "
         "than likes, is a re-complaint, was answered after the deadline, or is open at E past it.",
         (f"{T_FPS}::test_feedback_deadline_on_time_and_unsatisfied",)),
    Rule("Values", "Values, targets and roll-ups",
         "A rate is numerator / denominator and stays empty (never 0) when the denominator is 0. Every agency "
         "valid on some day of P has a row, with zeros when nothing happened. A parent adds its descendants' "
         "numerators and denominators; ratios are never averaged. Decision 766 scores are stored unrounded.",
         (f"{T_DOS}::test_every_valid_agency_has_rows_and_rollups_add_numerators",
          f"{T_FPS}::test_scores_are_capped_and_unrounded")),
)

SETTLED: tuple[Rule, ...] = (
    Rule("S1", "Working days and the latest supplement request",
         "A day is a working day unless it is a Saturday, Sunday, a day of the Vietnam holiday calendar (observed "
         "and substitute days too) or a day of the extra days-off file (empty as shipped); a Saturday declared a "
         "make-up working day still is not one. Adding n working days to d never counts d; adding 0 gives d. In "
         "a JSON list of supplement requests the latest is the one with the greatest date, wherever it stands.",
         (f"{T_CAL}::test_add_working_days_never_counts_d_and_zero_is_d",
          f"{T_CAL}::test_holidays_with_substitute_days_and_saturdays_are_not_working_days",
          f"{T_CAL}::test_extra_days_off_file",
          f"{T_DOS}::test_json_list_latest_request_by_date_wherever_it_stands")),
    Rule("S2", "Which periods exist",
         "Periods go from the first one touching any agency's validity to the one holding `as_of`; the current, "
         "unfinished period is evaluated on `as_of`. A cut-off period carries the label of the calendar period "
         "it ends in: `2024-Q1` is 15/12/2023 to 14/3/2024, `2024` is 15/12/2023 to 14/12/2024.",
         (f"{T_CAL}::test_periods_run_from_first_validity_to_the_period_containing_as_of",
          f"{T_CAL}::test_cutoff_periods_are_labelled_by_the_calendar_period_they_end_in",
          f"{T_DOS}::test_current_period_uses_as_of")),
    Rule("S3", "The latest version everywhere",
         "Every period reads the latest version of each record (status, flags, due date, likes); only its dates "
         "are compared with E. So a record changed today can change every period after its earliest date.",
         (f"{T_DOS}::test_latest_version_used_in_every_period_only_dates_compared",
          f"{T_FPS}::test_changed_periods")),
    Rule("S4", "Statuses 7 and 8",
         "A dossier with status 7 or 8 and an end date is resolved and classed against its due date like any other.",
         (f"{T_DOS}::test_status_7_and_8_with_end_date_are_resolved_and_classed",)),
    Rule("S5", "Supplement requests follow the winning version's format",
         "From a JSON list: count the requests dated by E; the dossier waits at E when its latest request by E "
         "has no supply date by E. From a flat export: the count as exported, less one when the (latest) request "
         "is dated after E, and the two dates as exported. A waiting dossier with no due date is within time.",
         (f"{T_DOS}::test_flat_supplement_count_minus_one_when_request_after_e",
          f"{T_DOS}::test_json_list_latest_request_by_date_wherever_it_stands",
          f"{T_DOS}::test_paused_without_due_date_is_within_time")),
    Rule("S6", "Payments, ratings and linked feedback by E",
         "A payment counts when it succeeded and was paid by E. A dossier's rating at E is its last one dated by "
         "E. A linked feedback item makes its dossier dissatisfied once received by E, whatever its agency.",
         (f"{T_DOS}::test_rates_and_flags_per_kpi",
          f"{T_DOS}::test_satisfaction_rating_latest_by_date_then_time_then_id_and_linked_feedback")),
    Rule("S7", "Feedback judged at E",
         "Lateness of feedback is judged at E; likes, dislikes and re-complaints as last exported. The score of 6 "
         "\"when there is no feedback\" applies when the indicator's own denominator is 0 (its ratio stays empty).",
         (f"{T_FPS}::test_feedback_deadline_on_time_and_unsatisfied",
          f"{T_FPS}::test_no_feedback_scores_six_and_ratio_null")),
    Rule("S8", "The catalogue in force at E and the agency's level",
         "Procedure measures read, for each procedure, its latest version updated by E, else its earliest one. "
         "Communes count Cấp xã procedures, districts Cấp huyện, departments and the province Cấp tỉnh; a "
         "procedure's levels are separated by `;`. Every procedure measure counts only the agency's level.",
         (f"{T_FPS}::test_procedure_kpis_use_catalogue_at_e_and_the_agency_level",)),
    Rule("S9", "Who owns a record in P",
         "Start from the agency the record names; while it is not valid on the record's date (received date; "
         "certification date for e-certifications) move to its successor. Then, while that owner is valid on no "
         "day of P, move to its successor again: a dossier open across the 2025 merger continues in its "
         "successor's later periods. Dossiers, feedback and e-certifications all follow this rule.",
         (f"{T_DOS}::test_old_code_after_merger_and_open_dossier_move_to_successor",)),
    Rule("S10", "Roll-ups",
         "A parent's row is its own records plus its children's rows, for the children valid on some day of P, "
         "recursively; procedure counts add up the same way. Decision 766 and form 06 have the same roll-up rows; "
         "a roll-up's score comes from its summed ratio.",
         (f"{T_DOS}::test_every_valid_agency_has_rows_and_rollups_add_numerators",)),
    Rule("S11", "E-certified copies",
         "The value is the number of copies certified from `period_start` to E (0 when none), with no "
         "denominator; the target is the same agency's value for the same period a year earlier (empty when "
         "there is none) and it is met when the value is above it. Rates meet their target when equal or above.",
         (f"{T_DOS}::test_e_certified_copies_target_is_last_year_value",)),
    Rule("S12", "Unknown paper-result flag",
         "A missing paper-result flag (no column, or an empty Có/Không cell) counts as paper; in a column marking "
         "yes with `x` an empty cell means no. Indicator 3.3 uses the e-result flag as last exported; in 4.2 the "
         "e-result condition applies to dossiers resolved in P with status 9 or 10.",
         (f"{T_DOS}::test_rates_and_flags_per_kpi",)),
    Rule("S13", "Scores with an empty ratio, and maximum scores",
         "With an empty ratio, 2.1, 4.1, 4.2 and 4.3 have no score, 5.2 and 5.3 score 6 and 5.4 scores 0. The "
         "maximum scores are listed with the indicators; 3.3 and 3.6 have none.",
         (f"{T_FPS}::test_no_feedback_scores_six_and_ratio_null",
          f"{T_FPS}::test_scores_are_capped_and_unrounded")),
    Rule("S14", "Form 06 rows",
         "Form 06 is keyed by agency, period basis, type and label, field code and field name; a row exists only "
         "where c03 > 0; the field is the dossier's, else its procedure's.",
         (f"{T_DOS}::test_form06_field_falls_back_to_procedure_code_and_name",)),
    Rule("S15", "The catalogue on the received date",
         "A dossier takes its fallback due date, paper-result flag and field from the procedure version in force "
         "on its received date (latest updated by that date, else the earliest).",
         (f"{T_DOS}::test_due_date_falls_back_to_working_days_of_the_catalogue_on_the_received_date",)),
    Rule("S16", "Unknown agencies and broken successor chains",
         "An agency code missing from agencies.csv breaks a row rule (the row is quarantined). A record whose "
         "successor chain ends in an agency not valid on its date keeps that agency for the second step of S9; a "
         "record with no owner valid in P counts for no agency in P.",
         (f"{T_STG}::test_agency_from_dossier_id_prefix_and_unknown_agency",
          f"{T_DOS}::test_chain_ending_in_invalid_agency_counts_for_nobody")),
    Rule("S17", "Valid on some day of P; ratings on the same date",
         "\"Valid on some day of P\" looks at [period_start, period_end]. Of two ratings of a dossier on one date "
         "the later timestamp wins, then the greater rating id.",
         (f"{T_DOS}::test_satisfaction_rating_latest_by_date_then_time_then_id_and_linked_feedback",
          f"{T_DOS}::test_old_code_after_merger_and_open_dossier_move_to_successor")),
    Rule("S18", "The targets file",
         "The targets file maps a year and, optionally, an agency to targets. For agency A in year Y: the row "
         "(Y, A); else the general row of the latest year up to Y; else the general row of the earliest year. "
         "The shipped file holds the 2023 commune plan.",
         (f"{T_DOS}::test_targets_file_overrides_by_year_and_agency",)),
    Rule("S19", "Form 06 field name", "The field name is the dossier's Tên lĩnh vực, else its procedure's.",
         (f"{T_DOS}::test_form06_field_falls_back_to_procedure_code_and_name",)),
)

CHOICES: tuple[Rule, ...] = (
    Rule("C1", "Unknown flags count as no",
         "An unknown `has_digitized_components`, `has_e_result` or `reused_digitized_data` counts as no (the "
         "paper-result flag is the exception, S12).",
         (f"{T_DOS}::test_rates_and_flags_per_kpi",)),
    Rule("C2", "Unknown publication state",
         "A procedure whose publication state is unknown is in the denominator of the publication measures (it is "
         "not Dừng công khai) and not in the numerator (it is not Đang công khai).",
         (f"{T_FPS}::test_procedure_kpis_use_catalogue_at_e_and_the_agency_level",)),
)

RULES = {r.ref: r for r in (*SECTIONS, *SETTLED, *CHOICES)}
