"""Verifiable lineage for every dataset and model, and the shared-base risk check.

Every artifact the pipeline writes gets ``<artifact>.intoto.jsonl`` beside it: an in-toto Statement v1 with a
SLSA Provenance v1 predicate in a DSSE envelope, optionally signed with Ed25519. From these records alone,
:func:`assess_risk` answers the auditor's question of subliminal learning: which teachers made the data this
model was trained on, and do they share its initialization? See ``docs/lineage.md``.
"""

from sublab.lineage.card import write_model_card
from sublab.lineage.digests import digest_path, record_path
from sublab.lineage.keys import load_private_key, load_public_key, new_keypair
from sublab.lineage.records import Record, RecordError, load_record
from sublab.lineage.risk import (
    DIFFERENT_BASE,
    OUTCOMES,
    POSSIBLY_MATCHED,
    SHARED_INIT_DECLARED,
    SHARED_INIT_VERIFIED,
    UNKNOWN,
    Finding,
    RiskReport,
    assess_risk,
)
from sublab.lineage.statement import KINDS, ROLES, Dependency, build_statement, record_artifact
from sublab.lineage.tree import lineage_tree
from sublab.lineage.verify import Problem, VerifyReport, verify_lineage

__all__ = [
    "DIFFERENT_BASE",
    "KINDS",
    "OUTCOMES",
    "POSSIBLY_MATCHED",
    "ROLES",
    "SHARED_INIT_DECLARED",
    "SHARED_INIT_VERIFIED",
    "UNKNOWN",
    "Dependency",
    "Finding",
    "Problem",
    "Record",
    "RecordError",
    "RiskReport",
    "VerifyReport",
    "assess_risk",
    "build_statement",
    "digest_path",
    "lineage_tree",
    "load_private_key",
    "load_public_key",
    "load_record",
    "new_keypair",
    "record_artifact",
    "record_path",
    "verify_lineage",
    "write_model_card",
]
