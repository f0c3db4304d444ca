"""What ties an email to its ticket: subject tags, signed tokens, our Message-IDs."""

from __future__ import annotations

import pytest

from itsm.inbound import refs


@pytest.fixture
def app_config():
    return {"BASE_URL": "https://desk.example.org", "MAIL_TICKET_PREFIX": "ITSM-"}


def test_tokens_name_their_ticket_and_cannot_be_made_up(app):
    with app.app_context():
        token = refs.token(123)
        assert token.startswith("123.") and refs.ticket_of_token(token) == 123
        forged = "124." + token.split(".", 1)[1]
        assert refs.ticket_of_token(forged) is None
        assert refs.ticket_of_token("123.nope") is None and refs.ticket_of_token("") is None
        assert refs.subject_tag(7) == "[ITSM-7]"


def test_our_message_ids(app):
    with app.app_context():
        ours = refs.message_id(41, 123)
        assert ours.startswith("<itsm-outbox-41.123.") and ours.endswith("@desk.example.org>")
        assert refs.is_ours(ours) and refs.ticket_of_message_id(ours) == 123
        assert refs.is_ours(refs.message_id(42, None)) and refs.ticket_of_message_id(refs.message_id(42, None)) is None
        assert not refs.is_ours("itsm-outbox-41.123.x@elsewhere.example")  # our shape, another domain
        assert refs.ticket_of_message_id(ours.replace("41.123.", "41.124.")) is None  # a tampered ticket id
        assert not refs.is_ours("CAF1234@mail.gmail.com")
    other = app.config.copy()
    other["SECRET_KEY"] = "another"
    app.config.update(other)
    with app.app_context():
        assert refs.ticket_of_message_id(ours) is None  # signed with the old key: not trusted any more
