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


GIB = 1024**3


def _mac_rows() -> list[list[str]]:
    section = README.read_text().split("\n### Which model fits my Mac\n", 1)[1]
    table = section.split("\n| model, as it runs |", 1)[1].split("\n\n", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_the_which_model_fits_my_mac_table_says_what_sdtui_would():
    from tui.engine.fit import judge, mps_budget

    header = README.read_text().split("\n| model, as it runs |", 1)[1].splitlines()[0]
    sizes = [int(cell.split()[0]) for cell in header.strip("|").split("|")[1:]]
    assert sizes == [16, 24, 32, 48, 64, 128]
    rows = _mac_rows()
    assert len(rows) >= 9
    for model, need, *words in rows:
        needed = int(float(need.removesuffix(" GB")) * GIB)
        said = [judge(needed, mps_budget(size * GIB, None)).word for size in sizes]
        assert words == said, f"README's row for {model} says {words}; sdtui says {said}"
