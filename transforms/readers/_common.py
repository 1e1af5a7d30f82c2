"""Shared pieces of the file readers, by what a reader looks for: ``_result`` (what a reader returns or raises),
``_headers`` (header matching against the mapping files, the raw schema), ``_values`` (cell text and raw record
batches), ``_scan`` (NFC, control characters, footer rows). Every name below is importable from here.

Vocabulary: a *header* is what a person sees at the top of a column in an export (``Mã hồ sơ``); a *canonical*
name is the pipeline's column name (``dossier_id``). The mapping files (transforms/mappings/*.yaml) say which
headers mean which canonical name for each source format; they are data, not code.
"""

from transforms.readers._headers import (
    HeaderMatch,
    raw_canonical_names,
    check_required,
    display_header,
    entity_mapping,
    header_lookup,
    key_columns,
    mapping,
    match_headers,
    normalize_header,
    raw_schema,
    required_columns,
)
from transforms.contracts import FORMATS
from transforms.readers._result import EXTRA, SOURCE_LINE, SOURCE_ROW, FileRejected, ReadResult, file_label
from transforms.readers._scan import (
    footer_words,
    is_footer_start,
    line_list,
    may_need_nfc,
    nfc,
    note_skipped,
    scan_text,
)
from transforms.readers._values import (
    arrow_extra,
    arrow_to_batch,
    cell_text,
    columns_to_batch,
    extra_text,
    json_value_text,
)

__all__ = [
    "EXTRA", "FORMATS", "SOURCE_LINE", "SOURCE_ROW", "FileRejected", "HeaderMatch", "ReadResult",
    "arrow_extra", "arrow_to_batch", "cell_text", "check_required", "columns_to_batch",
    "display_header", "entity_mapping", "extra_text", "file_label", "footer_words", "header_lookup",
    "is_footer_start", "json_value_text", "key_columns", "line_list", "mapping", "match_headers", "may_need_nfc",
    "nfc", "normalize_header", "note_skipped", "raw_canonical_names", "raw_schema", "required_columns", "scan_text",
]
