from itsm.tickets.queries import escape_like


def test_wildcards_in_search_terms_are_literal():
    assert escape_like("100%_done\\") == "100\\%\\_done\\\\"
