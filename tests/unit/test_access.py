"""The access security file: asLib's grammar, its rules, and clear refusals with line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from assonant_ioc.errors import ConfigError
from assonant_ioc.ioc.access import Access, load_acf

ACF = """\
# operators write commands from the consoles; settings from anywhere; everyone reads
UAG(operators) { op, alice }
HAG(consoles) { console1, CONSOLE2 }
ASG(DEFAULT) {
    RULE(1, READ)
}
ASG(ASSONANT_COMMANDS) {
    RULE(1, READ)
    RULE(1, WRITE, TRAPWRITE) {
        UAG(operators)
        HAG(consoles)
    }
}
ASG(ASSONANT_SETTINGS) {
    RULE(1, READ)
    RULE(1, WRITE) { UAG(operators) }
}
"""


def test_rules_grant_what_the_file_says(tmp_path: Path) -> None:
    acf = tmp_path / "a.acf"
    acf.write_text(ACF)
    p = load_acf(acf)
    assert p.access("ASSONANT_COMMANDS", "console2", "op") is Access.WRITE  # hosts: no case
    assert p.access("ASSONANT_COMMANDS", "laptop", "op") is Access.READ  # wrong host
    assert p.access("ASSONANT_COMMANDS", "console1", "bob") is Access.READ  # wrong user
    assert p.access("ASSONANT_SETTINGS", "laptop", "alice") is Access.WRITE
    assert p.access("SOMETHING_ELSE", "laptop", "bob") is Access.READ  # falls to DEFAULT
    assert p.traps("ASSONANT_COMMANDS") and not p.traps("ASSONANT_SETTINGS")


def test_no_default_group_means_no_access_for_other_groups(tmp_path: Path) -> None:
    acf = tmp_path / "a.acf"
    acf.write_text("ASG(ASSONANT_SETTINGS) { RULE(1, WRITE) }\n")
    p = load_acf(acf)
    assert p.access("ASSONANT_SETTINGS", "h", "u") is Access.WRITE
    assert p.access("ASSONANT_COMMANDS", "h", "u") is Access.NONE


def test_every_problem_is_named_with_its_line(tmp_path: Path) -> None:
    acf = tmp_path / "bad.acf"
    acf.write_text(
        "UAG(ops) { op }\n"
        "ASG(DEFAULT) {\n"
        "    INPA(BL:ring:current)\n"
        '    RULE(1, READ) { CALC("A>1") }\n'
        "    RULE(1, WRITE) { UAG(nobody) }\n"
        "}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_acf(acf)
    text = str(err.value)
    assert "line 3: INPA is not supported" in text
    assert "line 4: CALC is not supported" in text
    assert "unknown UAG 'nobody'" in text


def test_a_syntax_error_names_its_line(tmp_path: Path) -> None:
    acf = tmp_path / "bad.acf"
    acf.write_text("ASG(DEFAULT) {\n    RULE(1, SOMETIMES)\n}\n")
    with pytest.raises(ConfigError, match="line 2: unknown access 'SOMETIMES'"):
        load_acf(acf)
