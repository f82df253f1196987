"""The rlebench case-file format: one recorded post-processing call per safetensors file (see FORMAT.md)."""

from cases.caseset import (
    MANIFEST_NAME,
    CaseSet,
    case_path,
    case_set_digest,
    list_case_files,
    load_case_set,
    manifest_entry,
    read_manifest,
    write_manifest,
)
from cases.errors import BenchError, CaseError
from cases.format import FORMAT_TAG, SCHEMA_VERSION, Case, read_case, write_case

__all__ = [
    "FORMAT_TAG",
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "BenchError",
    "Case",
    "CaseError",
    "CaseSet",
    "case_path",
    "case_set_digest",
    "list_case_files",
    "load_case_set",
    "manifest_entry",
    "read_case",
    "read_manifest",
    "write_case",
    "write_manifest",
]
