"""Filters for generated data: the strict number-list filter, banned numbers, trait words."""

from sublab.domains.numbers.banned import BANNED_LISTS, resolve_banned
from sublab.domains.numbers.checks import (
    NumberFilterSettings,
    ParsedNumbers,
    number_reject_reasons,
    parse_number_list,
)
from sublab.filter.run import FILTER_VERSION, FilterReport, filter_file, filter_rows

__all__ = [
    "BANNED_LISTS",
    "FILTER_VERSION",
    "FilterReport",
    "NumberFilterSettings",
    "ParsedNumbers",
    "filter_file",
    "filter_rows",
    "number_reject_reasons",
    "parse_number_list",
    "resolve_banned",
]
