"""MakeCallRequest: every validation rule, every accepted variant, and the payload sent to Vobiz."""

from __future__ import annotations

from typing import Any

import pytest

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.models.call import TERMINAL_STATUSES, CallStatus, MakeCallRequest

REQUIRED: dict[str, Any] = {
    "from": "14155551234",
    "to": "14155555678",
    "answer_url": "https://example.com/answer",
}


@pytest.fixture(autouse=True)
def _numbers_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check the validation rules and quote the refused numbers: logs show them masked by
    default, which ``tests/test_phone_masking.py`` checks (also for these messages)."""
    monkeypatch.setenv("AIRFLOW__VOBIZ__MASK_PHONE_NUMBERS", "false")


def build(**overrides: Any) -> MakeCallRequest:
    return MakeCallRequest.build(**{**REQUIRED, **overrides})


def refused(**overrides: Any) -> str:
    with pytest.raises(VobizValidationError) as info:
        build(**overrides)
    message = str(info.value)
    assert message.startswith("invalid Make-Call request: ")
    return message


# ------------------------------------------------------------------------------------------ to / from


def test_to_accepts_a_list_and_a_lt_joined_string_alike() -> None:
    as_list = build(to=["14155555678", "+919876543210", "sip:john1234@api.vobiz.ai"])
    as_text = build(to="14155555678<+919876543210<sip:john1234@api.vobiz.ai")
    assert as_list.to == as_text.to == ("14155555678", "+919876543210", "sip:john1234@api.vobiz.ai")
    assert as_list.destinations == as_list.to
    assert as_list.to_payload()["to"] == "14155555678<+919876543210<sip:john1234@api.vobiz.ai"


def test_to_accepts_a_tuple_and_strips_blanks_around_destinations() -> None:
    assert build(to=("14155555678", " 14155555679 ")).to == ("14155555678", "14155555679")


@pytest.mark.parametrize("number", ["14155551234", "+14155551234", "1234567", "+123456789012345"])
def test_e164_numbers_with_or_without_plus(number: str) -> None:
    request = build(**{"from": number}, to=number)
    assert request.from_number == number
    assert request.to == (number,)


@pytest.mark.parametrize(
    "number",
    ["0123456789", "+0123456789", "123456", "1234567890123456", "1415-555-1234", "+", "abc", "++14155551234"],
)
def test_malformed_numbers_are_refused_naming_the_field(number: str) -> None:
    message = refused(**{"from": number})
    assert f"from: {number!r} is not an E.164 number" in message
    message = refused(to=number)
    assert f"to[0]: {number!r} is not an E.164 number or sip: URI" in message


@pytest.mark.parametrize(
    "uri", ["sip:john1234@api.vobiz.ai", "sip:alice@10.0.0.1:5060", "sip:bob@example.com;transport=tcp"]
)
def test_sip_uris_are_destinations(uri: str) -> None:
    assert build(to=uri).to == (uri,)


@pytest.mark.parametrize("uri", ["sip:api.vobiz.ai", "sips:john@api.vobiz.ai", "sip:@host", "sip:john@"])
def test_malformed_sip_uris_are_refused(uri: str) -> None:
    assert f"to[0]: {uri!r} is not an E.164 number or sip: URI" in refused(to=uri)


def test_a_comma_is_refused_with_a_hint_and_the_index_of_the_bad_destination() -> None:
    message = refused(to=["14155555678", "14155555679", "12,34"])
    assert (
        "to[2]: '12,34' is not an E.164 number or sip: URI (separate destinations with '<' or pass a list)"
        in message
    )
    assert "to[0]" not in message and "to[1]" not in message


def test_1000_destinations_are_accepted_and_1001_refused() -> None:
    numbers = [f"1415{n:07d}" for n in range(1001)]
    assert len(build(to=numbers[:1000]).to) == 1000
    assert len(build(to="<".join(numbers[:1000])).to) == 1000
    assert "to: at most 1000 destinations, got 1001" in refused(to=numbers)


@pytest.mark.parametrize("empty", ["", "   ", []])
def test_no_destination_is_refused(empty: Any) -> None:
    assert "to: at least one destination is required" in refused(to=empty)


def test_empty_segment_between_separators_is_refused() -> None:
    assert "to[1]: '' is not an E.164 number or sip: URI" in refused(to="14155555678<<14155555679")


def test_required_fields_are_named_when_missing() -> None:
    with pytest.raises(VobizValidationError) as info:
        MakeCallRequest.build()
    message = str(info.value)
    for name in ("from", "to", "answer_url"):
        assert f"{name}: required" in message


def test_from_may_be_given_by_its_python_name_but_not_twice() -> None:
    request = MakeCallRequest.build(from_number="14155551234", to="14155555678", answer_url="https://e.com/a")
    assert request.to_payload()["from"] == "14155551234"
    with pytest.raises(VobizValidationError, match="from: given twice"):
        MakeCallRequest.build(**REQUIRED, from_number="14155551234")


# ------------------------------------------------------------------------------------------ URLs, methods


URL_FIELDS = ["answer_url", "ring_url", "hangup_url", "fallback_url", "machine_detection_url"]


@pytest.mark.parametrize("field", URL_FIELDS)
@pytest.mark.parametrize(
    "url", ["https://example.com/a?x=1", "http://127.0.0.1:8080/hook", "https://u:p@hooks.example.com/v"]
)
def test_http_urls_are_kept_exactly(field: str, url: str) -> None:
    assert getattr(build(**{field: url}), field) == url


@pytest.mark.parametrize("field", URL_FIELDS)
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/a", "is not an http(s) URL"),
        ("example.com/answer", "is not an http(s) URL"),
        ("/answer", "is not an http(s) URL"),
        ("https:///answer", "has no host"),
        ("https://exa mple.com/a", "is not an absolute http(s) URL"),
        ("https://example.com:99999/a", "is not a valid URL"),
    ],
)
def test_bad_urls_are_refused(field: str, url: str, problem: str) -> None:
    assert f"{field}: {url!r} {problem}" in refused(**{field: url})


METHOD_FIELDS = [
    "answer_method",
    "ring_method",
    "hangup_method",
    "fallback_method",
    "machine_detection_method",
]


@pytest.mark.parametrize("field", METHOD_FIELDS)
@pytest.mark.parametrize(("given", "stored"), [("get", "GET"), ("Post", "POST"), ("POST", "POST")])
def test_methods_are_case_insensitive_and_stored_upper(field: str, given: str, stored: str) -> None:
    request = build(**{field: given})
    assert getattr(request, field) == stored
    assert request.to_payload()[field] == stored


@pytest.mark.parametrize("field", METHOD_FIELDS)
@pytest.mark.parametrize("method", ["PUT", "DELETE", "", "G ET"])
def test_other_methods_are_refused(field: str, method: str) -> None:
    assert f"{field}: {method!r} is not GET or POST" in refused(**{field: method})


def test_answer_method_is_always_sent() -> None:
    payload = build().to_payload()
    assert payload == {
        "from": "14155551234",
        "to": "14155555678",
        "answer_url": "https://example.com/answer",
        "answer_method": "POST",
    }


# ------------------------------------------------------------------------------------------ machine detection


@pytest.mark.parametrize(
    ("given", "stored"), [(True, "true"), ("true", "true"), ("TRUE", "true"), ("hangup", "hangup")]
)
def test_machine_detection_values(given: Any, stored: str) -> None:
    request = build(machine_detection=given)
    assert request.machine_detection == stored
    assert request.to_payload()["machine_detection"] == stored


@pytest.mark.parametrize("off", [False, "false", "False", None])
def test_machine_detection_off_is_left_out(off: Any) -> None:
    request = build(machine_detection=off)
    assert request.machine_detection is None
    assert "machine_detection" not in request.to_payload()


@pytest.mark.parametrize("bad", ["yes", "1", 1, "detect"])
def test_machine_detection_other_values_are_refused(bad: Any) -> None:
    assert f"machine_detection: {bad!r} is not 'true' or 'hangup'" in refused(machine_detection=bad)


RANGES = [
    ("machine_detection_time", 2000, 10000),
    ("machine_detection_maximum_speech_length", 1000, 6000),
    ("machine_detection_initial_silence", 2000, 10000),
    ("machine_detection_maximum_words", 2, 10),
    ("machine_detection_initial_greeting", 1000, 5000),
]


@pytest.mark.parametrize(("field", "low", "high"), RANGES)
def test_machine_detection_ranges_accept_both_edges(field: str, low: int, high: int) -> None:
    assert build(**{field: low}).to_payload()[field] == low
    assert build(**{field: high}).to_payload()[field] == high
    # numeric strings are accepted and sent as integers
    assert build(**{field: str(high)}).to_payload()[field] == high


@pytest.mark.parametrize(("field", "low", "high"), RANGES)
def test_machine_detection_ranges_refuse_just_outside(field: str, low: int, high: int) -> None:
    assert f"{field}: must be between {low} and {high}" in refused(**{field: low - 1})
    assert f"got {high + 1}" in refused(**{field: high + 1})


# ------------------------------------------------------------------------------------------ advanced fields


def test_caller_name_50_characters_is_fine_51_is_not() -> None:
    assert build(caller_name="x" * 50).caller_name == "x" * 50
    assert "caller_name: at most 50 characters, got 51" in refused(caller_name="x" * 51)


@pytest.mark.parametrize("digits", ["1", "1234#", "*9", "1w2W3", "w1", "12ww#W", "123@1000", "#@5", "0@250"])
def test_send_digits_accepted(digits: str) -> None:
    assert build(send_digits=digits).to_payload()["send_digits"] == digits


@pytest.mark.parametrize(
    "digits", ["", "w", "wW", "12a", "1 2", "123@", "@1000", "1w@1000", "12@0", "12@1.5", "A"]
)
def test_send_digits_refused(digits: str) -> None:
    assert f"send_digits: {digits!r} is not a DTMF string" in refused(send_digits=digits)


@pytest.mark.parametrize(
    ("given", "stored"), [(True, True), (False, False), ("true", True), ("false", False)]
)
def test_send_on_preanswer_is_a_boolean(given: Any, stored: bool) -> None:
    assert build(send_on_preanswer=given).to_payload()["send_on_preanswer"] is stored


def test_send_on_preanswer_refuses_other_values() -> None:
    assert "send_on_preanswer: 'maybe' is not true or false" in refused(send_on_preanswer="maybe")


@pytest.mark.parametrize("field", ["time_limit", "hangup_on_ring", "ring_timeout"])
def test_positive_seconds(field: str) -> None:
    assert build(**{field: 1}).to_payload()[field] == 1
    assert build(**{field: "30"}).to_payload()[field] == 30
    assert f"{field}: must be greater than 0, got 0" in refused(**{field: 0})
    assert f"{field}: must be greater than 0, got -5" in refused(**{field: -5})
    assert f"{field}: 'soon' is not an integer" in refused(**{field: "soon"})
    assert f"{field}: True is not an integer" in refused(**{field: True})
    assert f"{field}: 1.5 is not an integer" in refused(**{field: 1.5})


def test_unknown_fields_are_refused_with_a_suggestion() -> None:
    assert "ringtimeout: not a Make-Call field (did you mean 'ring_timeout'?)" in refused(ringtimeout=30)
    assert "sip_headers: not a Make-Call field" in refused(sip_headers="X-a=1")


def test_every_failing_field_is_listed_in_one_message_without_pydantic_dump() -> None:
    message = refused(to=["14155555678", "x", "12,34"], caller_name="y" * 51, machine_detection_time=1)
    assert message.count(";") == 3
    for part in ("to[1]", "to[2]", "caller_name: at most 50 characters", "machine_detection_time"):
        assert part in message
    assert "pydantic" not in message and "input_value" not in message and "errors.pydantic.dev" not in message


def test_full_payload_uses_api_names_and_leaves_out_none() -> None:
    request = build(
        to=["14155555678", "sip:a@b.example"],
        answer_method="get",
        hangup_url="https://example.com/hangup",
        ring_url="https://example.com/ring",
        machine_detection=True,
        machine_detection_time="2500",
        caller_name="Airflow",
        send_digits="1w2",
        time_limit=3600,
        ring_timeout="30",
    )
    assert request.to_payload() == {
        "from": "14155551234",
        "to": "14155555678<sip:a@b.example",
        "answer_url": "https://example.com/answer",
        "answer_method": "GET",
        "ring_url": "https://example.com/ring",
        "hangup_url": "https://example.com/hangup",
        "machine_detection": "true",
        "machine_detection_time": 2500,
        "caller_name": "Airflow",
        "send_digits": "1w2",
        "time_limit": 3600,
        "ring_timeout": 30,
    }


def test_request_is_frozen() -> None:
    request = build()
    with pytest.raises(ValueError, match="frozen"):
        request.caller_name = "x"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ validate_fields


def test_validate_fields_checks_only_the_given_fields() -> None:
    MakeCallRequest.validate_fields(caller_name="ok", ring_timeout="20")
    MakeCallRequest.validate_fields(to=["14155555678"])
    MakeCallRequest.validate_fields()
    with pytest.raises(VobizValidationError) as info:
        MakeCallRequest.validate_fields(caller_name="z" * 51, to="1,2")
    message = str(info.value)
    assert "caller_name: at most 50 characters" in message
    assert "to[0]: '1,2'" in message
    assert "from" not in message.replace("from:", "") and "answer_url" not in message


def test_validate_fields_uses_the_same_rules_as_build() -> None:
    with pytest.raises(VobizValidationError, match=r"from: '012' is not an E\.164 number"):
        MakeCallRequest.validate_fields(from_number="012")
    with pytest.raises(VobizValidationError, match="answer_url: 'ftp://x' is not an http"):
        MakeCallRequest.validate_fields(answer_url="ftp://x")
    with pytest.raises(VobizValidationError, match="not a Make-Call field"):
        MakeCallRequest.validate_fields(bogus=1)


# ------------------------------------------------------------------------------------------ CallStatus


def test_call_status_values_and_terminal_set() -> None:
    assert CallStatus("no-answer") is CallStatus.NO_ANSWER
    assert CallStatus.IN_PROGRESS == "in-progress"
    assert str(CallStatus.CANCELED) == "canceled"
    assert {"completed", "busy", "failed", "no-answer", "timeout", "cancel", "canceled"} == TERMINAL_STATUSES
    assert CallStatus.RINGING not in TERMINAL_STATUSES
    assert CallStatus.BUSY in TERMINAL_STATUSES


def test_numbers_given_as_python_ints_mean_their_digits() -> None:
    request = MakeCallRequest.build(**{"from": 14155551234}, to=[919876543210], answer_url="https://e.com/a")
    assert request.to_payload()["from"] == "14155551234"
    assert request.to == ("919876543210",)
    assert "to[0]: True is not a string" in refused(to=[True])


def test_a_flood_of_bad_destinations_gives_a_bounded_message() -> None:
    message = refused(to=[f"bad{n}" for n in range(500)])
    assert "to[19]" in message
    assert "to[20]" not in message
    assert message.endswith("and 480 more")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("to", "1" * 70_000),
        ("from", "x" * 70_000),
        ("answer_url", "https://example.com/" + "a" * 70_000 + " b"),
        ("send_digits", "9" * 69_999 + "z"),
    ],
)
def test_a_huge_bad_value_is_quoted_short(field: str, value: str) -> None:
    message = refused(**{field: value})
    assert f"... ({len(value)} characters)" in message
    assert len(message) < 400


# ---------------------------------------------------------------------------------------- whole-value matches


@pytest.mark.parametrize("number", ["14155551234\n", "+14155551234\n", "14155551234\r\n"])
def test_a_caller_id_with_a_trailing_newline_is_refused(number: str) -> None:
    # "$" also matches before a final newline: the number must be the whole value.
    assert f"from: {number!r} is not an E.164 number" in refused(**{"from": number})


@pytest.mark.parametrize(
    "number",
    [
        "1\u0664\u0661\u0665\u0665\u0665\u0665\u0661\u0662\u0663\u0664",
        "+1\uff14\uff11\uff15\uff15\uff15\uff15",
    ],
)
def test_numbers_in_other_scripts_digits_are_refused(number: str) -> None:
    # "\d" would take Arabic-Indic or full-width digits; Vobiz dials ASCII digits.
    assert f"from: {number!r} is not an E.164 number" in refused(**{"from": number})
    assert f"to[0]: {number!r} is not an E.164 number or sip: URI" in refused(to=number)


def test_a_sip_port_in_other_scripts_digits_is_refused() -> None:
    uri = "sip:alice@example.com:\u0665\u0660\u0666\u0660"
    assert f"to[0]: {uri!r} is not an E.164 number or sip: URI" in refused(to=uri)


@pytest.mark.parametrize("digits", ["1w2\n", "123@1000\n", "1\n2"])
def test_send_digits_with_a_newline_are_refused(digits: str) -> None:
    assert f"send_digits: {digits!r} is not a DTMF string" in refused(send_digits=digits)


# ----------------------------------------------------------------------------------------- edges of each rule


def test_a_sip_port_has_at_most_5_digits() -> None:
    assert build(to="sip:alice@example.com:65535").to == ("sip:alice@example.com:65535",)
    assert "is not an E.164 number or sip: URI" in refused(to="sip:alice@example.com:123456")


def test_a_sip_host_of_one_character_and_a_host_ending_in_a_dot_or_dash() -> None:
    assert build(to="sip:bob@h").to == ("sip:bob@h",)
    assert "is not an E.164 number or sip: URI" in refused(to="sip:bob@host.")
    assert "is not an E.164 number or sip: URI" in refused(to="sip:bob@-host")


@pytest.mark.parametrize("number", [0, -14155551234])
def test_zero_and_negative_ints_are_not_numbers(number: int) -> None:
    assert f"from: {number!r} is not a string" in refused(**{"from": number})
    assert f"to[0]: {number!r} is not a string" in refused(to=[number])


def test_the_int_1_is_taken_as_its_digit_and_refused_as_too_short() -> None:
    assert "from: '1' is not an E.164 number" in refused(**{"from": 1})


def test_a_bool_is_not_a_caller_id() -> None:
    assert "from: True is not a string" in refused(**{"from": True})


def test_to_as_a_single_int_is_refused_naming_its_type() -> None:
    message = refused(to=14155555678)
    assert "to: expected a list of destinations or a '<'-joined string, got int" in message


@pytest.mark.parametrize(("value", "kind"), [(b"14155555678", "bytes"), ({"14155555678": 1}, "dict")])
def test_to_as_bytes_or_a_mapping_is_refused(value: Any, kind: str) -> None:
    assert f"to: expected a list of destinations or a '<'-joined string, got {kind}" in refused(to=value)


def test_to_accepts_any_other_iterable_in_order() -> None:
    numbers = ["14155555678", "14155555679"]
    assert build(to=iter(numbers)).to == tuple(numbers)
    assert build(to=(n for n in numbers)).to == tuple(numbers)


def test_one_destination_is_enough() -> None:
    assert build(to=["14155555678"]).to == ("14155555678",)
    assert build(to="14155555678").to_payload()["to"] == "14155555678"


@pytest.mark.parametrize(
    ("field", "low", "high", "unit"),
    [
        ("machine_detection_time", 2000, 10000, " ms"),
        ("machine_detection_maximum_speech_length", 1000, 6000, " ms"),
        ("machine_detection_initial_silence", 2000, 10000, " ms"),
        ("machine_detection_maximum_words", 2, 10, ""),
        ("machine_detection_initial_greeting", 1000, 5000, " ms"),
    ],
)
def test_machine_detection_range_messages_name_the_unit(field: str, low: int, high: int, unit: str) -> None:
    assert f"{field}: must be between {low} and {high}{unit}, got {low - 1}" in refused(**{field: low - 1})
    assert f"{field}: must be between {low} and {high}{unit}, got {high + 1}" in refused(**{field: high + 1})


@pytest.mark.parametrize(("given", "sent"), [(30.0, 30), (" 30 ", 30), ("+7", 7), ("0030", 30)])
def test_whole_numbers_in_other_forms_are_sent_as_integers(given: Any, sent: int) -> None:
    payload = build(ring_timeout=given).to_payload()
    assert payload["ring_timeout"] == sent
    assert type(payload["ring_timeout"]) is int


@pytest.mark.parametrize("given", ["3.0", "1e3", "30s", "", [30]])
def test_other_forms_are_not_integers(given: Any) -> None:
    assert f"ring_timeout: {given!r} is not an integer" in refused(ring_timeout=given)


def test_a_negative_numeric_string_is_range_checked() -> None:
    assert "time_limit: must be greater than 0, got -5" in refused(time_limit="-5")


@pytest.mark.parametrize("value", [123, b"https://example.com/a"])
def test_a_url_that_is_not_a_string_is_refused(value: Any) -> None:
    assert f"answer_url: {value!r} is not a URL string" in refused(answer_url=value)


def test_an_empty_url_is_refused() -> None:
    assert "ring_url: '' is not an absolute http(s) URL" in refused(ring_url="")


def test_the_url_scheme_is_case_insensitive_and_kept_as_given() -> None:
    assert build(answer_url="HTTPS://Example.com/A").answer_url == "HTTPS://Example.com/A"


@pytest.mark.parametrize(
    "url", ["https://example.com/a\t", "https://example.com/\u00a0a", "\nhttps://e.com/a"]
)
def test_a_url_with_any_whitespace_is_refused(url: str) -> None:
    assert f"answer_url: {url!r} is not an absolute http(s) URL" in refused(answer_url=url)


@pytest.mark.parametrize("given", [" get ", "\tPOST\n"])
def test_methods_may_be_padded_with_whitespace(given: str) -> None:
    assert build(ring_method=given).ring_method == given.strip().upper()


def test_a_method_that_is_not_a_string_is_refused() -> None:
    assert "hangup_method: 1 is not GET or POST" in refused(hangup_method=1)


@pytest.mark.parametrize(("given", "stored"), [(" Hangup ", "hangup"), (" FALSE ", None)])
def test_machine_detection_ignores_case_and_padding(given: str, stored: str | None) -> None:
    assert build(machine_detection=given).machine_detection == stored


def test_caller_name_that_is_not_a_string_is_refused() -> None:
    assert "caller_name: 5 is not a string" in refused(caller_name=5)
    assert build(caller_name="").to_payload()["caller_name"] == ""


def test_send_digits_that_are_not_a_string_are_refused() -> None:
    assert "send_digits: 123 is not a DTMF string" in refused(send_digits=123)


@pytest.mark.parametrize(("given", "stored"), [(" TRUE ", True), ("False", False)])
def test_send_on_preanswer_ignores_case_and_padding(given: str, stored: bool) -> None:
    assert build(send_on_preanswer=given).send_on_preanswer is stored


@pytest.mark.parametrize("given", [1, 0, "yes"])
def test_send_on_preanswer_refuses_numbers_and_words(given: Any) -> None:
    assert f"send_on_preanswer: {given!r} is not true or false" in refused(send_on_preanswer=given)


def test_validate_fields_refuses_from_given_twice() -> None:
    with pytest.raises(VobizValidationError, match="from: given twice"):
        MakeCallRequest.validate_fields(**{"from": "14155551234"}, from_number="14155551234")


def test_validate_fields_checks_a_given_to_and_answer_url_not_the_placeholders() -> None:
    with pytest.raises(VobizValidationError, match=r"to: at least one destination is required"):
        MakeCallRequest.validate_fields(to=[])
    with pytest.raises(VobizValidationError, match=r"answer_url: '/relative' is not an http\(s\) URL"):
        MakeCallRequest.validate_fields(answer_url="/relative")


def test_exactly_20_problems_are_all_listed_without_a_remainder() -> None:
    message = refused(to=[f"bad{n}" for n in range(20)])
    assert "to[19]" in message
    assert "more" not in message
    message = refused(to=[f"bad{n}" for n in range(21)])
    assert message.endswith("; and 1 more")


def test_every_call_status_vobiz_reports() -> None:
    assert [status.value for status in CallStatus] == [
        "queued",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "failed",
        "no-answer",
        "timeout",
        "cancel",
        "canceled",
    ]
    assert CallStatus("queued") is CallStatus.QUEUED


def test_an_error_of_the_whole_request_is_named_request_in_pydantic_words_lowercased() -> None:
    from pydantic import ValidationError

    from vobiz_provider.models.call import format_validation_errors

    with pytest.raises(ValidationError) as info:
        MakeCallRequest.model_validate(5)
    assert format_validation_errors(info.value, MakeCallRequest) == (
        "request: input should be a valid dictionary or instance of MakeCallRequest"
    )


@pytest.mark.parametrize(
    "uri",
    [
        "sip:alice@ab",  # a two-character host: first and last character, nothing between
        "sip:alice@example.com;",  # an empty parameter list
        "sip:alice@example.com:5",  # a one-digit port
    ],
)
def test_sip_uris_at_the_edges_of_the_grammar_are_accepted(uri: str) -> None:
    assert build(to=uri).to == (uri,)


@pytest.mark.parametrize("uri", ["sip:alice@example.com:", "sip:alice@example.com:123456", "sip:alice@-x"])
def test_sip_uris_with_an_empty_or_long_port_or_a_bad_host_are_refused(uri: str) -> None:
    assert f"to[0]: {uri!r} is not an E.164 number or sip: URI" in refused(to=uri)
