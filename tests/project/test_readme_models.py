"""README's model table lists every family in the registry with the defaults sdtui applies to it, so
a family added or retuned cannot go undocumented or be documented wrong."""

import re
from pathlib import Path

import pytest

from tui.engine.families import FAMILIES

README = Path(__file__).parents[2] / "README.md"


def _rows() -> dict[str, str]:
    models = README.read_text().split("\n## Models\n", 1)[1]
    table = models.split("\n| Family |", 1)[1].split("\n\n", 1)[0]
    return {cells[0]: "|".join(cells[1:]) for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:])}


def _number(value: float) -> str:
    return f"{value:g}"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.id)
def test_readme_lists_the_family_with_its_defaults(family):
    row = _rows().get(family.label)
    assert row is not None, f"README's model table has no row for {family.label}"
    defaults = family.defaults
    assert f"{defaults.size}x{defaults.size}, {defaults.steps} steps" in row, row
    assert re.search(rf"\b{re.escape(_number(defaults.guidance))}\b", row), row
    if family.negative_prompt:
        assert "negative prompt" in row and "no negative prompt" not in row, row
    else:
        assert "no negative prompt" in row or "negative" not in row, row
    assert ("edit" in row) == (family.pipelines.edit is not None), row
    for variant in family.variants:
        steps = f"{variant.defaults.steps} step{'s' if variant.defaults.steps != 1 else ''}"
        assert f"{variant.label}: {steps}" in row, (variant.label, row)


def test_the_table_has_no_family_the_registry_lacks():
    assert set(_rows()) == {family.label for family in FAMILIES}
