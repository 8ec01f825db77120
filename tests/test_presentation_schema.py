"""The presentation's JSON shape is one JSON Schema, checked with jsonschema and published."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from service.prescribe.presentation import SCHEMA, schema_problems
from service.web import openapi


def problems(body: Any) -> set[tuple[str, str]]:
    return {(p.field, p.rule) for p in schema_problems(body)}


def test_the_schema_is_valid_and_is_the_one_openapi_publishes() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert openapi.PRESENTATION is SCHEMA


def test_a_well_formed_presentation_has_no_shape_problems() -> None:
    body = {
        "@context": "/api/prescribe/context.jsonld",
        "@type": "Presentation",
        "conditions": "fibromyalgia",  # one string stands for a list of one
        "goals": ["pain"],
        "pathologies": ["anxiety", {"pathology": "fear of movement", "score": 40, "elevated": "x"}],
        "preferences": {"setting": "water", "format": "group"},
    }
    assert problems(body) == set()  # "elevated": "x" is SHACL's to refuse, not the schema's


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"conditions": [3]}, {("conditions[0]", "type")}),
        ({"goals": {"pain": 1}}, {("goals", "type")}),
        ({"goal": ["pain"]}, {("goal", "known-field")}),
        ({"pathologies": "anxiety"}, {("pathologies", "type")}),
        ({"pathologies": [{"score": 3}]}, {("pathologies[0].pathology", "required")}),
        (
            {"pathologies": [{"pathology": "anxiety", "grade": 2}]},
            {("pathologies[0].grade", "known-field")},
        ),
        (
            {"pathologies": [{"pathology": "anxiety", "score": [1]}]},
            {("pathologies[0].score", "type")},
        ),
        ({"preferences": ["water"]}, {("preferences", "type")}),
        (
            {"preferences": {"format": None, "colour": "red"}},
            {("preferences.format", "type"), ("preferences.colour", "known-field")},
        ),
        ({"@type": "Patient"}, {("@type", "type")}),
    ],
)
def test_shape_problems_name_the_field_and_rule(body: Any, expected: set[tuple[str, str]]) -> None:
    assert problems(body) == expected
