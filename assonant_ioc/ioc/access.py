"""EPICS access security: the asLib ``.acf`` grammar a controls engineer already writes.

Supported: ``UAG(name) {users}``, ``HAG(name) {hosts}``, ``ASG(name) { RULE(level,
NONE|READ|WRITE[, TRAPWRITE|NOTRAPWRITE]) [{ UAG(...) HAG(...) }] }``. ``INP<x>`` and
``CALC`` are refused with their line number (this IOC has no records to read them from).
As in asLib: a PV in a group the file does not define falls to ``DEFAULT``; a group with
no rule that applies gives no access; WRITE includes READ; a rule without UAG/HAG applies
to everyone; host names compare without case.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path

from assonant_ioc.errors import ConfigError

#: The access security groups of this IOC's PVs (status PVs are read-only to everyone).
COMMANDS_ASG = "ASSONANT_COMMANDS"
SETTINGS_ASG = "ASSONANT_SETTINGS"


class Access(enum.IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2


@dataclass(frozen=True)
class Rule:
    level: int
    access: Access
    trapwrite: bool
    uags: tuple[str, ...] = ()
    hags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    source: str
    uags: dict[str, frozenset[str]] = field(default_factory=dict)
    hags: dict[str, frozenset[str]] = field(default_factory=dict)
    asgs: dict[str, tuple[Rule, ...]] = field(default_factory=dict)

    def access(self, asg: str, host: str | None, user: str | None) -> Access:
        """What ``user`` on ``host`` may do with a PV of group ``asg``."""
        rules = self.asgs.get(asg, self.asgs.get("DEFAULT", ()))
        best = Access.NONE
        for rule in rules:
            if rule.uags and not any(user in self.uags.get(u, ()) for u in rule.uags):
                continue
            host_l = (host or "").lower()
            if rule.hags and not any(host_l in self.hags.get(h, ()) for h in rule.hags):
                continue
            best = max(best, rule.access)
        return best

    def traps(self, asg: str) -> bool:
        return any(r.trapwrite for r in self.asgs.get(asg, self.asgs.get("DEFAULT", ())))


_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([(){},])|([^\s(){},"#]+))')


def _tokens(text: str) -> list[tuple[int, str]]:
    """(line, token) of every word, string and punctuation mark; comments dropped."""
    out: list[tuple[int, str]] = []
    line, last = 1, 0
    for match in _TOKEN.finditer(text):
        _comment, string, punct, word = match.groups()
        token = string or punct or word
        if token is None:
            continue
        start = match.start(2 if string else 3 if punct else 4)
        line += text.count("\n", last, start)
        last = start
        out.append((line, token))
    return out


class _AcfError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.source = source
        self.problems: list[tuple[int, str]] = []

    def peek(self) -> tuple[int, str]:
        return self.toks[self.i] if self.i < len(self.toks) else (self.line(), "")

    def line(self) -> int:
        return self.toks[-1][0] if self.toks else 1

    def take(self, want: str | None = None) -> tuple[int, str]:
        line, tok = self.peek()
        if want is not None and tok != want:
            raise _AcfError(line, f"expected {want!r}, found {tok or 'the end'!r}")
        self.i += 1
        return line, tok

    def names(self, close: str) -> list[str]:
        out = []
        while self.peek()[1] not in (close, ""):
            _, tok = self.take()
            if tok != ",":
                out.append(tok.strip('"'))
        self.take(close)
        return out

    def skip_block(self) -> None:
        depth = 0
        while True:
            _, tok = self.take()
            if tok in ("(", "{"):
                depth += 1
            elif tok in (")", "}"):
                depth -= 1
                if depth == 0:
                    return
            elif tok == "":
                return

    def parse(self) -> Policy:
        uags: dict[str, frozenset[str]] = {}
        hags: dict[str, frozenset[str]] = {}
        asgs: dict[str, tuple[Rule, ...]] = {}
        while self.i < len(self.toks):
            line, kind = self.take()
            try:
                if kind in ("UAG", "HAG"):
                    self.take("(")
                    (name,) = self.names(")") or [""]
                    self.take("{")
                    members = frozenset(m.lower() if kind == "HAG" else m for m in self.names("}"))
                    (uags if kind == "UAG" else hags)[name] = members
                elif kind == "ASG":
                    self.take("(")
                    (name,) = self.names(")") or [""]
                    asgs[name] = self.asg()
                else:
                    raise _AcfError(line, f"unknown {kind!r} (expected UAG, HAG or ASG)")
            except _AcfError as err:
                self.problems.append((err.line, err.message))
                return Policy(self.source)
            except ValueError:
                self.problems.append((line, f"{kind} needs exactly one name"))
        for asg, rules in asgs.items():
            for rule in rules:
                for u in rule.uags:
                    if u not in uags:
                        self.problems.append((0, f"ASG({asg}): unknown UAG {u!r}"))
                for h in rule.hags:
                    if h not in hags:
                        self.problems.append((0, f"ASG({asg}): unknown HAG {h!r}"))
        return Policy(self.source, uags, hags, asgs)

    def asg(self) -> tuple[Rule, ...]:
        rules: list[Rule] = []
        self.take("{")
        while self.peek()[1] not in ("}", ""):
            line, kind = self.take()
            if kind.startswith("INP") or kind == "CALC":
                self.problems.append((line, f"{kind} is not supported by this IOC"))
                self.i -= 1
                self.skip_block()
                continue
            if kind != "RULE":
                raise _AcfError(line, f"unknown {kind!r} in ASG (expected RULE)")
            self.take("(")
            args = self.names(")")
            if len(args) not in (2, 3) or not args[0].isdigit():
                raise _AcfError(line, "RULE(level, NONE|READ|WRITE[, TRAPWRITE])")
            try:
                access = Access[args[1].upper()]
            except KeyError:
                raise _AcfError(line, f"unknown access {args[1]!r} (NONE, READ, WRITE)") from None
            trap = len(args) == 3 and args[2].upper() == "TRAPWRITE"
            if len(args) == 3 and args[2].upper() not in ("TRAPWRITE", "NOTRAPWRITE"):
                raise _AcfError(line, f"unknown {args[2]!r} (TRAPWRITE or NOTRAPWRITE)")
            u: list[str] = []
            h: list[str] = []
            if self.peek()[1] == "{":
                self.take("{")
                while self.peek()[1] not in ("}", ""):
                    iline, item = self.take()
                    if item in ("UAG", "HAG"):
                        self.take("(")
                        (u if item == "UAG" else h).extend(self.names(")"))
                    elif item == "CALC" or item.startswith("INP"):
                        self.problems.append((iline, f"{item} is not supported by this IOC"))
                        self.i -= 1
                        self.skip_block()
                    else:
                        raise _AcfError(iline, f"unknown {item!r} in RULE (UAG or HAG)")
                self.take("}")
            rules.append(Rule(int(args[0]), access, trap, tuple(u), tuple(h)))
        self.take("}")
        return tuple(rules)


def load_acf(path: str | Path) -> Policy:
    """Read an access security file; raises ConfigError naming every problem and its line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(p), [(0, f"cannot read: {err}")]) from err
    parser = _Parser(text, str(p))
    policy = parser.parse()
    if parser.problems:
        raise ConfigError(str(p), parser.problems)
    return policy
