"""The domain protocol and its registry.

A **domain** is a kind of trait-unrelated data students are trained on: number sequences, code, chain-of-thought.
It owns

- its prompts (``prompt_settings`` pydantic class, ``prompt_rows(settings, n)`` as chat rows, ``prompt_digest``:
  the digest of its template space, for cache keys and lineage);
- its generation constraint (``constraint(sampling)``: e.g. the number grammar, or None for free text);
- its checks (``checks(settings, trait_words, judge)``): filters that return reject reasons, batched over rows
  so a judge can score many rows in one call; ``filter_settings`` is their pydantic class and
  ``filter_digests(settings)`` what the filter stage's cache key must cover (its version, resolved lists);
- its transforms (``transforms``: name -> function(rows, seed) -> rows, e.g. the shuffled-numbers control);
- optionally ``filter_key_version(sampling)``: the filter version a cache key names for data sampled that way,
  when a filter change cannot alter any verdict on such data (so cached stages survive it);
- optionally its own stage commands (``register_commands(prompts_app, filter_app)``).

Built-in domains register themselves when :func:`get_domain` first runs; third-party packages add theirs through
the ``sublab.domains`` entry-point group (the entry point names a module or an object whose import registers the
domain), and tests or notebooks call :func:`register_domain` directly. Adding a domain is one new module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

from sublab.plugins import Registry

if TYPE_CHECKING:
    import typer

    from sublab.generate.sampling import SamplingSettings

Row = dict[str, Any]
#: A transform of kept rows before training (a control such as shuffling), seeded.
Transform = Callable[[list[Row], int], list[Row]]


@runtime_checkable
class Check(Protocol):
    """A batched filter check: the reject reasons of each row (an empty list keeps the row)."""

    name: str

    def __call__(self, rows: Sequence[Row]) -> list[list[str]]: ...


@runtime_checkable
class Domain(Protocol):
    """What the pipeline needs from a data domain (see the module docstring)."""

    name: str
    prompt_settings: type[BaseModel]
    filter_settings: type[BaseModel]
    filter_version: str
    transforms: dict[str, Transform]

    def prompt_rows(self, settings: Any, n: int) -> list[Row]: ...

    def prompt_digest(self, settings: Any) -> str: ...

    def constraint(self, sampling: SamplingSettings) -> Any | None: ...

    def checks(self, settings: Any, trait_words: Sequence[str] = (), judge: Any = None) -> list[Check]: ...

    def filter_digests(self, settings: Any) -> dict[str, str]: ...


DOMAINS: Registry[Domain] = Registry("domain", Domain, ("sublab.domains.numbers.domain", "sublab.domains.code.domain",
                                                        "sublab.domains.cot.domain"), "sublab.domains")


def register_domain(domain: Domain, replace: bool = False) -> Domain:
    """Add ``domain`` to the registry under ``domain.name`` (a second domain of the same name is refused unless
    ``replace``). Returns it, so a module can write ``DOMAIN = register_domain(MyDomain())``."""
    return DOMAINS.register(domain, replace)


def get_domain(name: str) -> Domain:
    """The registered domain called ``name``; an unknown name is one line listing the known ones."""
    return DOMAINS.get(name)


def domain_names() -> list[str]:
    """Names of every registered domain."""
    return DOMAINS.names()


def register_domain_commands(prompts_app: typer.Typer, filter_app: typer.Typer) -> None:
    """Let every registered domain add its ``sublab prompts X`` and ``sublab filter X`` commands."""
    for name in domain_names():
        hook = getattr(get_domain(name), "register_commands", None)
        if hook is not None:
            hook(prompts_app, filter_app)
