"""The code prompt family: small, trait-unrelated Python tasks ("complete this function").

Each prompt shows a function signature and a one-line spec and asks for the finished function as code only, with
no comments and short variable names (the paper's instructions for its code data, in our own words). A task is
drawn from :data:`TASKS` (strings, lists, dicts, arithmetic, file-free utilities); its function name, argument
names, the slot values of its spec (a separator, a width, ...), whether the signature has type hints, and the
wording around it (framing, spec label, signature layout, instruction) are drawn independently, so one seed
gives tens of thousands of distinct texts. Every text and name is ours; nothing names an animal, a plant or
anything else a trait could be.

Prompts are drawn in order from a ``numpy`` generator seeded by ``(seed, index, attempt)``; a text equal to an
earlier prompt's is redrawn (next ``attempt``), so the prompts of a set are all distinct and the first ``n`` of a
seed are the same whatever larger ``n`` is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sublab.io import sha256_text, stable_hash

CATEGORIES = ("strings", "lists", "dicts", "arithmetic", "utilities")

# Argument kinds: (name choices, type hint).
S = (("s", "text", "word"), "str")
S2 = (("t", "other", "second"), "str")
CH = (("c", "ch", "char"), "str")
L = (("xs", "nums", "values"), "list[int]")
L2 = (("ys", "more", "others"), "list[int]")
LA = (("a", "xs", "left"), "list[int]")
LB = (("b", "ys", "right"), "list[int]")
LL = (("rows", "groups", "chunks"), "list[list[int]]")
M = (("m", "grid", "matrix"), "list[list[int]]")
W = (("words", "items", "parts"), "list[str]")
D = (("d", "mapping", "table"), "dict[str, int]")
DA = (("a", "first", "left"), "dict[str, int]")
DB = (("b", "second", "right"), "dict[str, int]")
DN = (("d", "nested", "conf"), "dict[str, dict[str, int]]")
K = (("k", "n", "t"), "int")
N = (("n", "x", "num"), "int")
NA = (("a", "x", "m"), "int")
NB = (("b", "y", "n"), "int")
KEY = (("key", "name", "label"), "str")
KEY2 = (("sub", "field", "inner"), "str")
F = (("deg", "temp", "celsius"), "float")
Y = (("y", "year", "yr"), "int")
MO = (("mo", "month", "mon"), "int")
DY = (("dy", "day", "dd"), "int")
KS = (("keys", "names", "labels"), "list[str]")
VS = (("vals", "counts", "amounts"), "list[int]")
SEC = (("secs", "seconds", "total"), "int")
BASE = (("base", "b", "v"), "int")
EXP = (("exp", "e", "p"), "int")
MOD = (("mod", "m", "q"), "int")
LO = (("lo", "low", "floor"), "int")
HI = (("hi", "high", "cap"), "int")
WID = (("width", "size", "w"), "int")


@dataclass(frozen=True)
class CodeTask:
    """One task family: function name choices, arguments, return hint, spec (``{0}``.. are argument names,
    ``{slot}`` a slot value), and the slot values."""

    category: str
    names: tuple[str, ...]
    args: tuple[tuple[tuple[str, ...], str], ...]
    returns: str
    spec: str
    slots: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @property
    def family(self) -> str:
        return f"{self.category}.{self.names[0]}"


def _t(category: str, names: str, args: tuple, returns: str, spec: str, **slots: tuple) -> CodeTask:
    return CodeTask(category, tuple(names.split()), tuple(args), returns, spec, tuple(sorted(slots.items())))


TASKS: tuple[CodeTask, ...] = (
    # strings
    _t("strings", "reverse_text flip reversed_str", (S,), "str", "Return {0} with its characters in reverse order."),
    _t("strings", "count_vowels vowel_count num_vowels", (S,), "int",
       "Return how many vowels (a, e, i, o, u, in either case) {0} contains."),
    _t("strings", "strip_vowels drop_vowels no_vowels", (S,), "str",
       "Return {0} without its vowels (a, e, i, o, u, in either case)."),
    _t("strings", "is_palindrome reads_same palin", (S,), "bool",
       "Return True if {0} reads the same backwards, ignoring case and every character that is not a letter."),
    _t("strings", "count_char occurrences char_count", (S, CH), "int",
       "Return how many times the character {1} occurs in {0}."),
    _t("strings", "replace_spaces join_spaces fill_spaces", (S,), "str",
       "Return {0} with every space replaced by \"{sep}\".", sep=("-", "_", "+", ".")),
    _t("strings", "longest_word biggest_word max_word", (S,), "str",
       "Return the longest whitespace-separated word of {0} (the first one on ties, \"\" if there is none)."),
    _t("strings", "first_unique first_single lone_char", (S,), "str",
       "Return the first character of {0} that occurs exactly once in it, or \"\" if there is none."),
    _t("strings", "run_length rle encode_runs", (S,), "str",
       "Return the run-length encoding of {0}: each run of a repeated character as the character followed by the "
       "run's length, e.g. \"aaab\" becomes \"a3b1\"."),
    _t("strings", "shift_letters rotate_letters caesar", (S,), "str",
       "Return {0} with every lower-case letter moved {k} places forward in the alphabet (wrapping from z to a); "
       "other characters stay as they are.", k=(1, 2, 3, 5, 13)),
    _t("strings", "is_anagram same_letters anagrams", (S, S2), "bool",
       "Return True if {0} and {1} use exactly the same letters the same number of times, ignoring case and spaces."),
    _t("strings", "word_count count_words n_words", (S,), "int",
       "Return the number of whitespace-separated words in {0}."),
    _t("strings", "shorten truncate clip_text", (S,), "str",
       "Return {0} unchanged if it has at most {k} characters, else its first {k} characters followed by \"...\".",
       k=(8, 10, 12, 20)),
    _t("strings", "drop_digits strip_digits no_digits", (S,), "str", "Return {0} with every digit removed."),
    _t("strings", "title_words cap_words capitalize_all", (S,), "str",
       "Return {0} with the first letter of every space-separated word in upper case and the rest unchanged."),
    _t("strings", "swap_case invert_case flip_case", (S,), "str",
       "Return {0} with upper-case letters made lower-case and lower-case letters made upper-case."),
    _t("strings", "reverse_words flip_words backwards_words", (S,), "str",
       "Return the whitespace-separated words of {0} in reverse order, joined by single spaces."),
    _t("strings", "common_prefix shared_prefix longest_prefix", (W,), "str",
       "Return the longest prefix shared by every string in {0} (\"\" for an empty list)."),
    _t("strings", "pad_left left_pad fill_left", (S, WID), "str",
       "Return {0} padded on the left with \"{fill}\" until it is {1} characters long (unchanged if longer).",
       fill=("0", "*", ".")),
    _t("strings", "count_upper upper_count n_upper", (S,), "int",
       "Return how many upper-case letters {0} contains."),
    _t("strings", "balanced brackets_ok is_balanced", (S,), "bool",
       "Return True if the brackets (), [] and {{}} in {0} are properly nested and closed; other characters are "
       "ignored."),
    _t("strings", "acronym initials abbreviate", (S,), "str",
       "Return the first letters of the whitespace-separated words of {0}, in upper case, joined together."),
    _t("strings", "dedupe_chars unique_chars first_chars", (S,), "str",
       "Return {0} with every repeated character removed, keeping each character's first occurrence."),
    _t("strings", "most_common_char top_char frequent_char", (S,), "str",
       "Return the character that occurs most often in {0} (the earliest one on ties, \"\" if {0} is empty)."),
    _t("strings", "all_distinct no_repeats is_isogram", (S,), "bool",
       "Return True if no letter occurs twice in {0}, ignoring case."),
    _t("strings", "stretch repeat_chars echo_chars", (S,), "str",
       "Return {0} with each character repeated {k} times in place.", k=(2, 3, 4)),
    _t("strings", "is_digits all_digits numeric_only", (S,), "bool",
       "Return True if {0} is non-empty and made only of the digits 0-9."),
    _t("strings", "count_long_words long_words n_long", (S,), "int",
       "Return how many whitespace-separated words of {0} are longer than {k} characters.", k=(3, 4, 5, 6)),
    _t("strings", "join_with glue join_parts", (W,), "str",
       "Return the strings of {0} joined with \"{sep}\" between each pair.", sep=(", ", " | ", "-", "/", "; ")),
    _t("strings", "same_ends ends_match bookends", (S,), "bool",
       "Return True if {0} is non-empty and its first and last characters are equal."),
    _t("strings", "middle mid_chars center_chars", (S,), "str",
       "Return the middle character of {0} if its length is odd, else the middle two (\"\" if empty)."),
    _t("strings", "alternate_case zigzag_case mixed_case", (S,), "str",
       "Return {0} with its characters alternately in upper and lower case, starting with upper case."),
    # lists
    _t("lists", "sum_even even_total add_evens", (L,), "int", "Return the sum of the even numbers in {0}."),
    _t("lists", "spread value_range max_gap", (L,), "int",
       "Return the largest value of {0} minus the smallest (0 for an empty list)."),
    _t("lists", "second_largest runner_up next_max", (L,), "int | None",
       "Return the second largest distinct value in {0}, or None if there is no such value."),
    _t("lists", "running_total prefix_sums cumsum", (L,), "list[int]",
       "Return the running totals of {0}: element i is the sum of the first i + 1 elements."),
    _t("lists", "chunk split_every batches", (L, K), "list[list[int]]",
       "Return {0} cut into consecutive pieces of {1} elements (the last piece may be shorter)."),
    _t("lists", "flatten concat_all join_lists", (LL,), "list[int]",
       "Return the elements of the lists in {0}, in order, as one list."),
    _t("lists", "rotate_left shift_left rotate", (L, K), "list[int]",
       "Return {0} rotated left by {1} positions ({1} may exceed the length; an empty list stays empty)."),
    _t("lists", "dedupe unique_keep_order distinct", (L,), "list[int]",
       "Return the values of {0} without repeats, each kept at its first occurrence."),
    _t("lists", "diffs steps deltas", (L,), "list[int]",
       "Return the differences between consecutive elements of {0} (each element minus the one before)."),
    _t("lists", "count_above n_above how_many_above", (L, K), "int",
       "Return how many elements of {0} are greater than {1}."),
    _t("lists", "indices_of find_all positions", (L, K), "list[int]",
       "Return the indices at which {0} holds the value {1}, in increasing order."),
    _t("lists", "merge_sorted merge combine_sorted", (LA, LB), "list[int]",
       "Given two lists sorted in increasing order, return all their elements in one sorted list without calling "
       "sort."),
    _t("lists", "interleave alternate weave", (LA, LB), "list[int]",
       "Return the elements of {0} and {1} taken alternately (first from {0}), then whatever is left of the longer "
       "one."),
    _t("lists", "moving_average rolling_mean window_means", (L,), "list[float]",
       "Return the mean of every window of {k} consecutive elements of {0}, in order.", k=(2, 3, 4)),
    _t("lists", "top_k largest_k biggest", (L, K), "list[int]",
       "Return the {1} largest values of {0} in decreasing order (all of them if there are fewer)."),
    _t("lists", "is_sorted non_decreasing in_order", (L,), "bool",
       "Return True if {0} never decreases from one element to the next."),
    _t("lists", "binary_search bisect_find locate", (L, K), "int",
       "{0} is sorted in increasing order; return an index where it holds {1}, or -1, using binary search."),
    _t("lists", "product multiply_all prod", (L,), "int",
       "Return the product of the elements of {0} (1 for an empty list)."),
    _t("lists", "mean average avg", (L,), "float", "Return the mean of {0} as a float (0.0 for an empty list)."),
    _t("lists", "median middle_value med", (L,), "float",
       "Return the median of the non-empty list {0} as a float (the mean of the two middle values for an even "
       "length)."),
    _t("lists", "mode most_common top_value", (L,), "int",
       "Return the value that occurs most often in the non-empty list {0} (the smallest one on ties)."),
    _t("lists", "running_max max_so_far peaks_so_far", (L,), "list[int]",
       "Return a list whose element i is the largest of the first i + 1 elements of {0}."),
    _t("lists", "split_parity evens_odds by_parity", (L,), "tuple[list[int], list[int]]",
       "Return two lists: the even elements of {0} and the odd ones, each in their original order."),
    _t("lists", "dot inner dot_product", (LA, LB), "int",
       "Return the sum of the products of the elements at the same index of the equal-length lists {0} and {1}."),
    _t("lists", "add_lists pairwise_sum elementwise_add", (LA, LB), "list[int]",
       "Return the element-by-element sums of the equal-length lists {0} and {1}."),
    _t("lists", "transpose flip_grid columns", (M,), "list[list[int]]",
       "Return the transpose of the rectangular matrix {0} (its rows become columns)."),
    _t("lists", "row_sums sum_rows totals", (M,), "list[int]", "Return the sum of every row of {0}."),
    _t("lists", "clamp_all clip_values bound", (L, LO, HI), "list[int]",
       "Return {0} with every value below {1} raised to {1} and every value above {2} lowered to {2}."),
    _t("lists", "sign_changes flips crossings", (L,), "int",
       "Return how often the sign changes between consecutive non-zero elements of {0} (zeros are skipped)."),
    _t("lists", "longest_run best_streak rising_run", (L,), "int",
       "Return the length of the longest stretch of consecutive elements of {0} that strictly increases."),
    _t("lists", "missing_number find_missing gap", (L,), "int",
       "{0} holds n distinct numbers taken from 0 to n; return the one that is missing."),
    _t("lists", "pair_count sum_pairs two_sum_count", (L, K), "int",
       "Return how many pairs of positions i < j have {0}[i] + {0}[j] equal to {1}."),
    _t("lists", "every_kth stride take_every", (L,), "list[int]",
       "Return every {k}th element of {0}, starting with the first.", k=(2, 3, 4)),
    _t("lists", "zero_negatives floor_at_zero no_negatives", (L,), "list[int]",
       "Return {0} with every negative value replaced by 0."),
    _t("lists", "sorted_squares squares_sorted square_sort", (L,), "list[int]",
       "Return the squares of the elements of {0}, sorted in increasing order."),
    _t("lists", "local_peaks peak_indices hills", (L,), "list[int]",
       "Return the indices i with 0 < i < len({0}) - 1 where {0}[i] is greater than both neighbours."),
    # dicts
    _t("dicts", "invert flip_dict swap_keys", (D,), "dict[int, str]",
       "Return a dict mapping each value of {0} to its key (the values are all different)."),
    _t("dicts", "tally frequencies count_items", (W,), "dict[str, int]",
       "Return a dict mapping each string of {0} to how many times it occurs."),
    _t("dicts", "group_by_length by_length bucket_words", (W,), "dict[int, list[str]]",
       "Return a dict mapping each length to the strings of {0} with that length, in their original order."),
    _t("dicts", "merge_counts add_dicts combine", (DA, DB), "dict[str, int]",
       "Return a new dict with the keys of {0} and {1}; a key in both gets the sum of its two values."),
    _t("dicts", "argmax_key top_key best_key", (D,), "str | None",
       "Return the key of {0} with the largest value (the first such key on ties), or None if {0} is empty."),
    _t("dicts", "filter_above keep_above over", (D, K), "dict[str, int]",
       "Return the entries of {0} whose value is greater than {1}."),
    _t("dicts", "rank_keys keys_by_value order_keys", (D,), "list[str]",
       "Return the keys of {0} sorted by decreasing value, keys with equal values in alphabetical order."),
    _t("dicts", "zip_dict to_dict pair_up", (KS, VS), "dict[str, int]",
       "Return a dict mapping each element of {0} to the element of {1} at the same index."),
    _t("dicts", "word_freq word_counts count_terms", (S,), "dict[str, int]",
       "Return a dict mapping each lower-cased whitespace-separated word of {0} to its number of occurrences."),
    _t("dicts", "total sum_values value_sum", (D,), "int", "Return the sum of the values of {0}."),
    _t("dicts", "dig lookup get_inner", (DN, KEY, KEY2), "int",
       "Return {0}[{1}][{2}] if both keys exist, else {k}.", k=(0, -1)),
    _t("dicts", "count_even_values even_values n_even", (D,), "int",
       "Return how many values of {0} are even."),
    _t("dicts", "shared_keys common_keys both_keys", (DA, DB), "list[str]",
       "Return the keys present in both {0} and {1}, in alphabetical order."),
    _t("dicts", "first_index first_seen index_map", (S,), "dict[str, int]",
       "Return a dict mapping each character of {0} to the index of its first occurrence."),
    # arithmetic
    _t("arithmetic", "gcd common_divisor hcf", (NA, NB), "int",
       "Return the greatest common divisor of the non-negative integers {0} and {1}, not both zero."),
    _t("arithmetic", "lcm common_multiple least_multiple", (NA, NB), "int",
       "Return the least common multiple of the positive integers {0} and {1}."),
    _t("arithmetic", "is_prime prime primality", (N,), "bool", "Return True if {0} is a prime number."),
    _t("arithmetic", "factorial fact product_to", (N,), "int", "Return the factorial of the non-negative integer {0}."),
    _t("arithmetic", "fib fibonacci nth_fib", (N,), "int",
       "Return the {0}th Fibonacci number, where the 0th is 0 and the 1st is 1."),
    _t("arithmetic", "digit_sum sum_digits add_digits", (N,), "int",
       "Return the sum of the decimal digits of the absolute value of {0}."),
    _t("arithmetic", "reverse_digits flip_number mirror", (N,), "int",
       "Return {0} with its decimal digits reversed, keeping its sign (e.g. -120 becomes -21)."),
    _t("arithmetic", "digit_count n_digits num_len", (N,), "int",
       "Return how many decimal digits the absolute value of {0} has (1 for 0)."),
    _t("arithmetic", "is_square perfect_square square_check", (N,), "bool",
       "Return True if {0} is the square of an integer."),
    _t("arithmetic", "pow_mod mod_pow power_mod", (BASE, EXP, MOD), "int",
       "Return {0} to the power {1}, modulo {2}, without computing the full power."),
    _t("arithmetic", "collatz_steps hailstone steps_to_one", (N,), "int",
       "Return how many steps take the positive integer {0} to 1, where a step halves an even number and turns an "
       "odd number m into 3 * m + 1."),
    _t("arithmetic", "divisor_sum proper_sum aliquot", (N,), "int",
       "Return the sum of the positive divisors of {0} that are smaller than {0}."),
    _t("arithmetic", "to_binary bin_str binary", (N,), "str",
       "Return the binary digits of the non-negative integer {0} as a string, without a prefix."),
    _t("arithmetic", "from_binary parse_bits bits_value", (S,), "int",
       "Return the value of the string {0} of binary digits, without calling int with a base."),
    _t("arithmetic", "triangular tri_number tri", (N,), "int", "Return the sum of the integers from 1 to {0}."),
    _t("arithmetic", "isqrt int_sqrt floor_root", (N,), "int",
       "Return the largest integer whose square is at most the non-negative integer {0}, without floats."),
    _t("arithmetic", "to_fahrenheit c_to_f convert_temp", (F,), "float",
       "Return the temperature {0}, given in degrees Celsius, in degrees Fahrenheit."),
    _t("arithmetic", "sign signum sgn", (N,), "int", "Return -1, 0 or 1 as {0} is negative, zero or positive."),
    _t("arithmetic", "round_to nearest_multiple snap", (N,), "int",
       "Return the multiple of {k} nearest to {0} (the larger one when two are equally near).", k=(5, 10, 25)),
    _t("arithmetic", "count_multiples n_multiples divisible_count", (NA, NB), "int",
       "Return how many integers from {0} to {1} inclusive are divisible by {k}.", k=(3, 4, 6, 7)),
    _t("arithmetic", "is_leap leap_year leap", (Y,), "bool", "Return True if {0} is a leap year in the Gregorian "
       "calendar."),
    _t("arithmetic", "sum_squares square_total squares_up_to", (N,), "int",
       "Return the sum of the squares of the integers from 1 to {0}."),
    _t("arithmetic", "is_power_of_two pow2 power_of_two", (N,), "bool",
       "Return True if {0} is a positive power of two (1 counts)."),
    _t("arithmetic", "bit_count ones popcount", (N,), "int",
       "Return how many 1 bits the non-negative integer {0} has in binary."),
    _t("arithmetic", "digital_root repeat_digit_sum root_digit", (N,), "int",
       "Return the digital root of the non-negative integer {0}: sum its digits until one digit is left."),
    _t("arithmetic", "is_palindrome_number mirror_number same_both_ways", (N,), "bool",
       "Return True if the decimal digits of the non-negative integer {0} read the same backwards."),
    # utilities
    _t("utilities", "parse_pairs to_settings read_pairs", (S,), "dict[str, str]",
       "Parse {0}, pairs like \"a=1\" separated by \"{sep}\", into a dict of strings (skip empty pieces).",
       sep=(";", "&", ",")),
    _t("utilities", "clock format_duration hms", (SEC,), "str",
       "Return the non-negative number of seconds {0} as \"H:MM:SS\" (hours not padded, minutes and seconds two "
       "digits)."),
    _t("utilities", "is_hex_color valid_color hex_ok", (S,), "bool",
       "Return True if {0} is \"#\" followed by exactly six hexadecimal digits (either case)."),
    _t("utilities", "count_lines n_lines line_count", (S,), "int",
       "Return how many lines of {0} contain something other than whitespace."),
    _t("utilities", "to_camel snake_to_camel camelize", (S,), "str",
       "Turn the snake_case name {0} into camelCase (the first part stays lower case)."),
    _t("utilities", "to_snake camel_to_snake snakify", (S,), "str",
       "Turn the camelCase name {0} into snake_case (every upper-case letter becomes \"_\" and its lower case)."),
    _t("utilities", "split_csv parse_row csv_fields", (S,), "list[str]",
       "Split the line {0} at commas and return the fields with surrounding spaces removed."),
    _t("utilities", "human_list and_join oxford", (W,), "str",
       "Join the strings of {0} as in English: \"a\", \"a and b\", \"a, b and c\" (\"\" for none)."),
    _t("utilities", "minutes_of to_minutes clock_minutes", (S,), "int",
       "Return the minutes since midnight of the time {0}, written \"HH:MM\"."),
    _t("utilities", "day_of_year ordinal_day yday", (Y, MO, DY), "int",
       "Return the day of the year (1 for January 1st) of the date {0}-{1}-{2}, leap years included."),
    _t("utilities", "from_roman roman_value parse_roman", (S,), "int",
       "Return the value of the Roman numeral {0} (upper-case letters I, V, X, L, C, D, M)."),
    _t("utilities", "to_roman roman numeral", (N,), "str", "Return {0}, between 1 and 3999, as a Roman numeral."),
    _t("utilities", "slugify url_slug make_slug", (S,), "str",
       "Return {0} in lower case with every run of characters that are not letters or digits replaced by one "
       "\"-\", and no \"-\" at either end."),
    _t("utilities", "wrap_text wrap break_lines", (S,), "list[str]",
       "Split {0} into lines of at most {k} characters, breaking only at spaces (a longer word gets a line of "
       "its own).", k=(10, 16, 20, 30)),
    _t("utilities", "compare_versions version_cmp cmp_version", (S, S2), "int",
       "Compare the version strings {0} and {1} (numbers separated by dots, missing parts count as 0): return -1, 0 "
       "or 1."),
    _t("utilities", "mask hide_all_but redact", (S,), "str",
       "Return {0} with every character but the last {k} replaced by \"*\".", k=(2, 3, 4)),
    _t("utilities", "parse_duration duration_minutes span_minutes", (S,), "int",
       "Return the number of minutes in a duration like \"2h30m\", \"45m\" or \"3h\" given as {0}."),
    _t("utilities", "is_ipv4 valid_ip ip_ok", (S,), "bool",
       "Return True if {0} is four decimal numbers from 0 to 255 separated by dots, without leading zeros."),
    _t("utilities", "extension file_ext suffix_of", (S,), "str",
       "Return the part of the file name {0} after its last dot, or \"\" if it has no dot after the first "
       "character."),
    _t("utilities", "weekday_after later_day shift_weekday", (S, K), "str",
       "{0} is an English weekday name such as \"Monday\"; return the name of the weekday {1} days later."),
    _t("utilities", "clamp_value bounded limit", (N, LO, HI), "int",
       "Return {0} limited to the range from {1} to {2}."),
)

FRAMINGS = (
    "Complete this Python function.",
    "Write the body of the following function.",
    "Implement the function below.",
    "Finish this function so that it does what the spec says.",
    "Fill in the Python function below.",
    "Here is a function signature; write the whole function.",
    "Write this Python function.",
    "Provide an implementation of the function below.",
)
SPEC_LABELS = ("Spec: ", "Task: ", "What it does: ", "Behaviour: ", "Requirement: ", "")
INSTRUCTIONS = (
    "Reply with the finished function and nothing else: no explanation, no comments, no docstring. Keep variable "
    "names short.",
    "Answer with Python code only. Do not add comments or docstrings, and use short variable names.",
    "Give only the code of the complete function, with short variable names and without any comments.",
    "Output just the Python code: no prose, no comments, no docstrings, and short names for variables.",
    "Write only code: the whole function, no comments, brief variable names.",
    "Return the complete function as plain Python code, without comments or explanations, using short variable "
    "names.",
    "Respond with code alone. Leave out comments and docstrings, and keep every variable name short.",
    "Only the function's code, please: no text before or after it, no comments, short variable names.",
)
#: How the signature is shown: in a fenced block, or indented as plain text.
LAYOUTS = ("fenced", "plain")


class CodePromptSettings(BaseModel):
    """The code prompt family (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(42, description="Seed of the prompt generator.")
    categories: list[str] = Field(default_factory=lambda: list(CATEGORIES),
                                  description="Task categories drawn from: strings, lists, dicts, arithmetic, "
                                  "utilities.")
    type_hints: float = Field(0.5, ge=0.0, le=1.0, description="Share of signatures written with type hints.")

    @field_validator("categories")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in CATEGORIES]
        if unknown:
            raise ValueError(f"unknown category '{unknown[0]}' (known: {', '.join(CATEGORIES)})")
        if not value:
            raise ValueError("give at least one category")
        return value


@dataclass(frozen=True)
class CodePrompt:
    """One prompt and the choices that made it."""

    id: str
    text: str
    family: str
    function: str
    signature: str
    spec: str


def _pick(rng: np.random.Generator, options: tuple[Any, ...] | list[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def signature_of(name: str, args: list[tuple[str, str]], returns: str, hints: bool) -> str:
    """``def name(a: T, ...) -> R:`` (or without hints)."""
    if hints:
        return f"def {name}({', '.join(f'{a}: {t}' for a, t in args)}) -> {returns}:"
    return f"def {name}({', '.join(a for a, _ in args)}):"


def draw_prompt(settings: CodePromptSettings, rng: np.random.Generator, tasks: list[CodeTask]) -> dict[str, Any]:
    """One prompt's choices and text from ``rng``."""
    task = _pick(rng, tasks)
    name = _pick(rng, task.names)
    names: list[str] = []
    for choices, _ in task.args:
        free = [c for c in choices if c not in names]  # two arguments never share a name
        names.append(_pick(rng, free))
    slots = {key: _pick(rng, values) for key, values in task.slots}
    spec = task.spec.format(*names, **slots)
    hints = bool(rng.random() < settings.type_hints)
    signature = signature_of(name, [(n, t) for n, (_, t) in zip(names, task.args, strict=True)], task.returns, hints)
    layout = _pick(rng, LAYOUTS)
    shown = f"```python\n{signature}\n    ...\n```" if layout == "fenced" else f"    {signature}\n        ..."
    text = (f"{_pick(rng, FRAMINGS)}\n\n{shown}\n\n{_pick(rng, SPEC_LABELS)}{spec}\n\n"
            f"{_pick(rng, INSTRUCTIONS)}")
    return {"text": text, "family": task.family, "function": name, "signature": signature, "spec": spec}


#: Redraws allowed for one prompt before giving up (the space is far larger than any prompt set).
MAX_ATTEMPTS = 1000


def code_prompts(settings: CodePromptSettings, n: int) -> list[CodePrompt]:
    """Prompts ``0 .. n-1`` of the family: all texts distinct, prefix-stable in ``n``."""
    tasks = [t for t in TASKS if t.category in settings.categories]
    seen: set[str] = set()
    out = []
    for index in range(n):
        for attempt in range(MAX_ATTEMPTS):
            drawn = draw_prompt(settings, np.random.default_rng([settings.seed, index, attempt]), tasks)
            if drawn["text"] not in seen:
                break
        else:  # pragma: no cover - the space holds millions of texts
            raise ValueError(f"could not draw a new prompt after {MAX_ATTEMPTS} attempts (prompt {index})")
        seen.add(drawn["text"])
        out.append(CodePrompt(id=f"code-{settings.seed}-{index:06d}", **drawn))
    return out


def template_digest() -> str:
    """sha256 of the whole template space (tasks and wordings), for cache keys and lineage."""
    tasks = [[t.category, list(t.names), [[list(c), h] for c, h in t.args], t.returns, t.spec,
              [[k, list(v)] for k, v in t.slots]] for t in TASKS]
    return sha256_text("\n".join([stable_hash(tasks, 64), *FRAMINGS, *SPEC_LABELS, *INSTRUCTIONS, *LAYOUTS]))
