"""The command-line synopses of README.md and docs/*.md agree with each daemon's argparse parser.

A synopsis is a line of a fenced block that starts with ``processd``, ``ingestd`` or ``gatewayd`` followed by a
flag and has an optional ``[--flag]`` (an example command has none), plus the indented lines that continue it.
Every flag it names exists; a number written as a flag's value (``[--flush-max-events 32768]``) is the default
of the config field of that name; ``a|b`` lists the flag's choices; and a synopsis that does not end in ``...``
names every flag the parser has.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from gatewayd.config import GatewayConfig
from gatewayd.config import build_parser as gatewayd_parser
from ingestd.config import IngestConfig
from ingestd.config import build_parser as ingestd_parser
from processd.config import ProcessdConfig
from processd.config import build_parser as processd_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
DAEMONS: dict[str, tuple[argparse.ArgumentParser, Any]] = {
    "processd": (processd_parser(), ProcessdConfig),
    "ingestd": (ingestd_parser(), IngestConfig),
    "gatewayd": (gatewayd_parser(), GatewayConfig),
}
_START = re.compile(r"^(processd|ingestd|gatewayd) +(\[?--)")
_FLAG = re.compile(r"(--[a-z][a-z0-9-]*)(?:[ =]([^\s\]\[]+))?")
_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def synopses() -> list[tuple[str, str, str]]:
    """(where, daemon, text) of every synopsis in the docs."""
    out = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        fenced = False
        for i, line in enumerate(lines):
            if line.startswith("```"):
                fenced = not fenced
                continue
            match = _START.match(line) if fenced else None
            if match is None or "[--" not in line:
                continue
            text = [line]
            for more in lines[i + 1:]:
                if not more.startswith(" ") or not more.strip().startswith("["):
                    break
                text.append(more)
            body = " ".join(t.split("#", 1)[0] for t in text)  # a trailing "# comment" is not part of it
            out.append((f"{path.relative_to(ROOT)}:{i + 1}", match.group(1), body))
    return out


def _defaults(config: Any) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}


def _check(daemon: str, text: str) -> list[str]:
    parser, config = DAEMONS[daemon]
    actions = {opt: a for a in parser._actions for opt in a.option_strings}
    defaults = _defaults(config)
    problems = []
    named = set()
    for flag, value in _FLAG.findall(text):
        named.add(flag)
        action = actions.get(flag)
        if action is None:
            problems.append(f"{flag} is not a flag of {daemon}")
        elif value and _NUMBER.match(value):
            field = flag[2:].replace("-", "_")
            if field not in defaults:
                problems.append(f"{flag} {value}: no config field {field} to hold the default to")
            elif float(value) != defaults[field]:
                problems.append(f"{flag} {value}: the default is {defaults[field]}")
        elif value and "|" in value and set(value.split("|")) != set(action.choices or ()):
            problems.append(f"{flag} {value}: the choices are {'|'.join(action.choices or ())}")
    if not re.sub(r"\[[^\]]*\]", "", text).rstrip().endswith("..."):
        flags = {o for o in actions if o.startswith("--")} - {"--help", "--version"}
        missing = sorted(flags - named)
        if missing:
            problems.append(f"does not end in '...' but leaves out {missing}")
    return problems


def test_every_daemon_has_a_synopsis_in_the_readme() -> None:
    assert {daemon for where, daemon, _ in synopses() if where.startswith("README.md")} == set(DAEMONS)


@pytest.mark.parametrize(("where", "daemon", "text"), synopses(), ids=lambda v: v if ":" in str(v) else "")
def test_synopsis_matches_the_parser(where: str, daemon: str, text: str) -> None:
    assert not _check(daemon, text), f"{where}: {_check(daemon, text)}"
