"""The form decoder on /sparql's hot path gives exactly what urllib's parse_qs gives."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.web.protocol import form_fields

# Escapes, broken escapes, backslashes (the decoder's own escape character), plus signs,
# separators and any other character, mixed.
PIECES = st.one_of(
    st.sampled_from(["%", "%4", "%zz", "%41", "%C3", "%A9", "%E2%82", "%5C", "\\", "\\x41",
                     "\\%41", "+", "&", "=", "&&", "é", "€", "%2B", "%26", "%3D", "\n"]),
    st.text(max_size=4),
)  # fmt: skip


# A shared, loaded machine: generation speed is not what is tested.
RELAXED = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@RELAXED
@given(st.lists(PIECES, max_size=30).map("".join))
def test_any_text_decodes_as_urllib_decodes_it(text):
    assert form_fields(text) == parse_qs(text, keep_blank_values=True)


@RELAXED
@given(st.dictionaries(st.text(min_size=1), st.lists(st.text(), min_size=1), max_size=4))
def test_what_a_client_encodes_comes_back(fields):
    encoded = urlencode(fields, doseq=True)
    assert form_fields(encoded) == parse_qs(encoded, keep_blank_values=True)
