"""A seeded generator of GSM8K-style maths word problems whose answers are computed, never written.

Each **family** draws its numbers from a ``numpy`` generator, writes the question from one of its phrasings and
computes the answer from the numbers it drew (integer arithmetic, with divisions chosen to come out exact); the
numbers are kept in ``params`` so anyone can recompute the answer (the tests do, with formulas of their own).
Families cover arithmetic, rates, fractions, percentages and ratios, in one to four steps (``steps``: the
arithmetic operations a solution needs). ``scale`` bounds the base quantities drawn (smaller: easier sums).

Every text is ours; names, objects and settings are chosen to be unrelated to any trait (no animals, plants or
fruit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NAMES = ("Maya", "Omar", "Lena", "Ravi", "Sofia", "Tomas", "Aisha", "Ben", "Chen", "Dara", "Elif", "Farid",
         "Grace", "Hugo", "Ines", "Jonas", "Kira", "Luis", "Mei", "Nora", "Pablo", "Rosa", "Sam", "Tara", "Yusuf",
         "Zoe", "Anton", "Bea", "Carlos", "Dina")
ITEMS = ("pencils", "marbles", "stickers", "books", "cards", "bottles", "cups", "shirts", "toys", "candles",
         "bricks", "tickets", "coins", "batteries", "buttons", "envelopes", "blocks", "cookies", "muffins",
         "notebooks", "erasers", "magnets", "balloons", "puzzles", "chairs")
CONTAINERS = ("boxes", "bags", "crates", "packs", "trays", "jars", "baskets", "bins")
MACHINES = ("printer", "machine", "factory line", "robot", "press")
PEOPLE = ("students", "workers", "players", "guests", "visitors", "members")


@dataclass(frozen=True)
class Problem:
    """One word problem: its text, its computed answer, and how it was made."""

    question: str
    answer: int
    family: str
    steps: int
    params: dict[str, Any] = field(default_factory=dict)


class Draw:
    """Helpers over one generator: integers in a range, choices, two different names."""

    def __init__(self, rng: np.random.Generator, scale: int) -> None:
        self.rng = rng
        self.scale = scale

    def int(self, low: int, high: int) -> int:
        """A uniform integer in ``[low, high]`` (``high`` raised to ``low`` if below it)."""
        return int(self.rng.integers(low, max(low, high) + 1))

    def up_to(self, low: int, share: float = 1.0) -> int:
        """An integer from ``low`` to ``max(low, scale * share)``."""
        return self.int(low, max(low, round(self.scale * share)))

    def pick(self, options: tuple[Any, ...]) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def names(self) -> tuple[str, str]:
        first = self.pick(NAMES)
        second = self.pick(tuple(n for n in NAMES if n != first))
        return first, second


Family = Callable[[Draw], Problem]


def total_groups(d: Draw) -> Problem:
    a, b = d.up_to(2, 0.2), d.up_to(2, 0.2)
    name, item, box = d.names()[0], d.pick(ITEMS), d.pick(CONTAINERS)
    q = d.pick((f"{name} has {a} {box} with {b} {item} in each. How many {item} does {name} have in all?",
                f"There are {a} {box} and each holds {b} {item}. How many {item} are there altogether?"))
    return Problem(q, a * b, "total_groups", 1, {"a": a, "b": b})


def add_more(d: Draw) -> Problem:
    a, b = d.up_to(1), d.up_to(1)
    name, item = d.names()[0], d.pick(ITEMS)
    q = d.pick((f"{name} had {a} {item} and then got {b} more. How many {item} does {name} have now?",
                f"A shelf holds {a} {item}. Someone adds {b} more {item}. How many {item} are on the shelf?"))
    return Problem(q, a + b, "add_more", 1, {"a": a, "b": b})


def give_away(d: Draw) -> Problem:
    b = d.up_to(1, 0.5)
    a = b + d.up_to(1, 0.5)
    (name, other), item = d.names(), d.pick(ITEMS)
    q = d.pick((f"{name} had {a} {item} and gave {b} of them to {other}. How many {item} does {name} have left?",
                f"A store had {a} {item} and sold {b}. How many {item} are left?"))
    return Problem(q, a - b, "give_away", 1, {"a": a, "b": b})


def share_equally(d: Draw) -> Problem:
    each, people = d.up_to(2, 0.3), d.int(2, 12)
    total = each * people
    who, item = d.pick(PEOPLE), d.pick(ITEMS)
    q = d.pick((f"{total} {item} are shared equally among {people} {who}. How many {item} does each get?",
                f"A teacher splits {total} {item} evenly between {people} {who}. How many {item} does each of "
                "them receive?"))
    return Problem(q, total // people, "share_equally", 1, {"total": total, "people": people})


def temperature_drop(d: Draw) -> Problem:
    start, drop = d.int(-10, 25), d.int(3, 30)
    q = d.pick((f"At noon the temperature was {start} degrees. By night it had fallen by {drop} degrees. What was "
                "the temperature at night?",
                f"A freezer shows {start} degrees and then cools by {drop} degrees. What does it show now?"))
    return Problem(q, start - drop, "temperature_drop", 1, {"start": start, "drop": drop})


def rate_time(d: Draw) -> Problem:
    rate, hours = d.up_to(2, 0.5), d.int(2, 12)
    machine, item = d.pick(MACHINES), d.pick(ITEMS)
    q = d.pick((f"A {machine} makes {rate} {item} every hour. How many {item} does it make in {hours} hours?",
                f"In one hour a {machine} produces {rate} {item}. How many {item} does it produce in {hours} "
                "hours?"))
    return Problem(q, rate * hours, "rate_time", 1, {"rate": rate, "hours": hours})


def buy_change(d: Draw) -> Problem:
    n, price = d.int(2, 9), d.int(1, max(2, d.scale // 10))
    bill = next(b for b in (10, 20, 50, 100, 200, 500, 1000, 10_000) if b >= n * price)
    name, item = d.names()[0], d.pick(ITEMS)
    q = d.pick((f"{name} buys {n} {item} at ${price} each and pays with a ${bill} bill. How many dollars of change "
                f"does {name} get?",
                f"Each of the {item} costs ${price}. {name} buys {n} of them and hands over ${bill}. How much change, "
                "in dollars, comes back?"))
    return Problem(q, bill - n * price, "buy_change", 2, {"n": n, "price": price, "bill": bill})


def two_purchases(d: Draw) -> Problem:
    a, x = d.int(2, 9), d.int(1, max(2, d.scale // 10))
    b, y = d.int(2, 9), d.int(1, max(2, d.scale // 10))
    name = d.names()[0]
    first, second = d.pick(ITEMS), d.pick(ITEMS)
    while second == first:
        second = d.pick(ITEMS)
    q = (f"{name} buys {a} {first} for ${x} each and {b} {second} for ${y} each. How many dollars does {name} "
         "spend in total?")
    return Problem(q, a * x + b * y, "two_purchases", 3, {"a": a, "x": x, "b": b, "y": y})


def fraction_not(d: Draw) -> Problem:
    q_ = d.int(2, 10)
    p = d.int(1, q_ - 1)
    total = q_ * d.up_to(1, 0.2)
    who = d.pick(PEOPLE)
    q = d.pick((f"There are {total} {who}. {p}/{q_} of them arrive by bus and the rest walk. How many walk?",
                f"Of {total} {who}, {p}/{q_} wear a hat. How many do not wear a hat?"))
    return Problem(q, total - total * p // q_, "fraction_not", 2, {"total": total, "p": p, "q": q_})


def percent_discount(d: Draw) -> Problem:
    off = d.pick((10, 20, 25, 30, 40, 50, 75))
    price = 20 * d.up_to(1, 0.5)  # a multiple of 20 keeps every listed discount exact
    item = d.pick(("jacket", "lamp", "bicycle", "backpack", "desk", "speaker", "kettle", "tent"))
    q = d.pick((f"A {item} costs ${price}. It is on sale for {off}% off. What is the sale price in dollars?",
                f"The price of a {item} is ${price}, and a coupon takes {off}% off. How many dollars does it cost "
                "with the coupon?"))
    return Problem(q, price * (100 - off) // 100, "percent_discount", 2, {"price": price, "off": off})


def speed_distance(d: Draw) -> Problem:
    speed, hours, extra = d.int(20, max(21, d.scale)), d.int(2, 6), d.up_to(1, 0.5)
    name = d.names()[0]
    q = d.pick((f"{name} drives at {speed} km per hour for {hours} hours and then drives {extra} km more. How many "
                f"km does {name} drive in all?",
                f"A train travels {hours} hours at {speed} km per hour, then another {extra} km. How far does it "
                "travel in total, in km?"))
    return Problem(q, speed * hours + extra, "speed_distance", 2, {"speed": speed, "hours": hours, "extra": extra})


def leftover(d: Draw) -> Problem:
    size = d.int(3, 12)
    total = size * d.up_to(2, 0.3) + d.int(1, size - 1)
    item = d.pick(ITEMS)
    q = d.pick((f"{total} {item} are packed into bags of {size}. How many {item} are left over once every full bag "
                "is packed?",
                f"A class puts {total} {item} into groups of {size}. After making as many full groups as possible, "
                f"how many {item} remain?"))
    return Problem(q, total % size, "leftover", 1, {"total": total, "size": size})


def ratio_split(d: Draw) -> Problem:
    a, b = d.int(1, 6), d.int(1, 6)
    total = (a + b) * d.up_to(1, 0.3)
    first, second = d.pick(ITEMS), d.pick(ITEMS)
    while second == first:
        second = d.pick(ITEMS)
    q = (f"A box holds {first} and {second} in the ratio {a}:{b}, {total} items in all. How many {second} are in "
         "the box?")
    return Problem(q, total * b // (a + b), "ratio_split", 2, {"a": a, "b": b, "total": total})


def age_sum(d: Draw) -> Problem:
    age, times, years = d.int(3, 15), d.int(2, 4), d.int(1, 10)
    name, other = d.names()
    q = (f"{name} is {age} years old, and {other} is {times} times as old as {name}. What will the sum of their "
         f"ages be in {years} years?")
    return Problem(q, age + times * age + 2 * years, "age_sum", 4, {"age": age, "times": times, "years": years})


def buy_two_change(d: Draw) -> Problem:
    a, x = d.int(2, 6), d.int(1, max(2, d.scale // 10))
    b, y = d.int(2, 6), d.int(1, max(2, d.scale // 10))
    spent = a * x + b * y
    bill = next(v for v in (20, 50, 100, 200, 500, 1000, 10_000) if v >= spent)
    name = d.names()[0]
    q = (f"{name} buys {a} notebooks at ${x} each and {b} pens at ${y} each, and pays with ${bill}. How many "
         f"dollars of change does {name} get?")
    return Problem(q, bill - spent, "buy_two_change", 4, {"a": a, "x": x, "b": b, "y": y, "bill": bill})


def spend_fractions(d: Draw) -> Problem:
    a, b = d.int(2, 5), d.int(2, 5)
    money = a * b * d.up_to(1, 0.3)
    name = d.names()[0]
    q = (f"{name} has ${money}. {name} spends 1/{a} of it on a book and then 1/{b} of what is left on lunch. How "
         f"many dollars does {name} have now?")
    left = money - money // a
    return Problem(q, left - left // b, "spend_fractions", 4, {"money": money, "a": a, "b": b})


def average_needed(d: Draw) -> Problem:
    need, s1, s2, s3 = d.int(40, 100), d.int(50, 100), d.int(50, 100), d.int(50, 100)
    s3 -= (s1 + s2 + s3 + need) % 4  # the four scores must average to a whole number
    target = (s1 + s2 + s3 + need) // 4
    name = d.names()[0]
    q = (f"{name} scored {s1}, {s2} and {s3} on three tests. What score does {name} need on the fourth test to "
         f"average exactly {target} over the four tests?")
    return Problem(q, 4 * target - (s1 + s2 + s3), "average_needed", 3, {"s1": s1, "s2": s2, "s3": s3,
                                                                        "target": target})


def reading_days(d: Draw) -> Problem:
    r1, r2, days = d.int(2, 20), d.int(2, 20), d.int(2, 12)
    pages = (r1 + r2) * days
    name, other = d.names()
    q = (f"{name} reads {r1} pages a day and {other} reads {r2} pages a day. Reading together, how many days do they "
         f"need to read {pages} pages?")
    return Problem(q, pages // (r1 + r2), "reading_days", 2, {"r1": r1, "r2": r2, "pages": pages})


def savings_weeks(d: Draw) -> Problem:
    per_week, weeks = d.int(2, max(3, d.scale // 5)), d.int(2, 15)
    have = d.up_to(0, 0.5)
    cost = have + per_week * weeks
    name = d.names()[0]
    item = d.pick(("game", "bike", "watch", "radio", "camera", "guitar"))
    q = (f"{name} wants a {item} that costs ${cost}. {name} has ${have} and saves ${per_week} each week. How many "
         f"weeks until {name} has exactly enough?")
    return Problem(q, (cost - have) // per_week, "savings_weeks", 2, {"cost": cost, "have": have,
                                                                    "per_week": per_week})


def rope_pieces(d: Draw) -> Problem:
    piece = d.pick((10, 20, 25, 50))
    meters = d.int(1, max(2, d.scale // 10))
    q = (f"A rope is {meters} meters long. It is cut into pieces that are each {piece} centimeters long. How many "
         "pieces are there?")
    return Problem(q, meters * 100 // piece, "rope_pieces", 2, {"meters": meters, "piece": piece})


def profit(d: Draw) -> Problem:
    n, cost = d.int(2, 30), d.int(1, max(2, d.scale // 10))
    price = cost + d.int(1, max(2, d.scale // 10))
    name, item = d.names()[0], d.pick(ITEMS)
    q = (f"{name} buys {n} {item} for ${cost} each and sells every one of them for ${price}. How many dollars of "
         f"profit does {name} make?")
    return Problem(q, n * (price - cost), "profit", 2, {"n": n, "cost": cost, "price": price})


def percent_change(d: Draw) -> Problem:
    up = d.pick((10, 20, 25, 50))
    down = d.pick((10, 20, 25, 50))
    start = 400 * d.int(1, max(1, d.scale // 20))  # a multiple of 400 keeps both steps exact
    q = (f"A town has {start} residents. The number grows by {up}%, and then {down}% of the new total move away. "
         "How many residents are left?")
    grown = start * (100 + up) // 100
    return Problem(q, grown * (100 - down) // 100, "percent_change", 4, {"start": start, "up": up, "down": down})


def bakery_week(d: Draw) -> Problem:
    monday = d.int(5, max(6, d.scale))
    fewer = d.int(1, 2 * monday - 1)
    item = d.pick(("loaves", "cakes", "pies", "rolls"))
    q = (f"A bakery makes {monday} {item} on Monday and twice as many on Tuesday. On Wednesday it makes {fewer} fewer "
         f"than on Tuesday. How many {item} does it make over the three days?")
    return Problem(q, monday + 2 * monday + (2 * monday - fewer), "bakery_week", 4, {"monday": monday,
                                                                                    "fewer": fewer})


def hours_pay(d: Draw) -> Problem:
    wage, hours, days = d.int(8, 30), d.int(2, 8), d.int(2, 7)
    spent = d.int(1, wage * hours * days)
    name = d.names()[0]
    q = (f"{name} earns ${wage} an hour and works {hours} hours a day for {days} days, then spends ${spent}. How "
         f"many dollars does {name} have left from the pay?")
    return Problem(q, wage * hours * days - spent, "hours_pay", 3, {"wage": wage, "hours": hours, "days": days,
                                                                   "spent": spent})


FAMILIES: dict[str, Family] = {f.__name__: f for f in (
    total_groups, add_more, give_away, share_equally, temperature_drop, rate_time, leftover, buy_change,
    two_purchases, fraction_not, percent_discount, speed_distance, ratio_split, reading_days, savings_weeks,
    rope_pieces, profit, average_needed, hours_pay, age_sum, buy_two_change, spend_fractions, percent_change,
    bakery_week)}
#: Steps of each family (the arithmetic operations a solution needs), read without drawing.
FAMILY_STEPS: dict[str, int] = {name: fn(Draw(np.random.default_rng(0), 50)).steps for name, fn in FAMILIES.items()}


def families_for(min_steps: int, max_steps: int, names: list[str] | None = None) -> list[str]:
    """Family names with ``min_steps <= steps <= max_steps`` (among ``names`` if given), in a fixed order."""
    pool = names if names else list(FAMILIES)
    return [n for n in pool if min_steps <= FAMILY_STEPS[n] <= max_steps]


def draw_problem(rng: np.random.Generator, families: list[str], scale: int) -> Problem:
    """One problem from one of ``families``."""
    name = families[int(rng.integers(len(families)))]
    return FAMILIES[name](Draw(rng, scale))
