"""The filter stage: a domain's checks applied to generated rows, kept and rejected rows written with reasons.

The number-list filter's pieces are re-exported here for existing callers; they live in
:mod:`sublab.domains.numbers`.
"""

from sublab.domains.numbers.banned import BANNED_LISTS, resolve_banned
from sublab.domains.numbers.checks import (
    NumberFilterSettings,
    ParsedNumbers,
    number_reject_reasons,
    parse_number_list,
)
from sublab.domains.numbers.domain import FILTER_VERSION
from sublab.filter.run import FilterReport, check_rows, filter_file, filter_rows

__all__ = [
    "BANNED_LISTS",
    "FILTER_VERSION",
    "FilterReport",
    "NumberFilterSettings",
    "ParsedNumbers",
    "check_rows",
    "filter_file",
    "filter_rows",
    "number_reject_reasons",
    "parse_number_list",
    "resolve_banned",
]
