import pytest

from itsm.web import safe_next


@pytest.mark.parametrize("target", ["/board", "/tickets?q=a&page=2", "/tickets/5#comments"])
def test_same_site_paths_are_kept(target):
    assert safe_next(target) == target


@pytest.mark.parametrize(
    "target",
    [
        "", None, "https://evil.example/", "//evil.example", "/\\evil.example", "\\\\evil.example",
        "javascript:alert(1)", "http:/evil.example", "evil.example/path", "/\t/evil.example", " //evil.example",
    ],
)
def test_off_site_targets_are_dropped(target):
    assert safe_next(target) is None
