from harness.acceptance.textmetrics import cer, levenshtein


def test_levenshtein() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("same", "same") == 0


def test_cer() -> None:
    assert cer("Invoice", "Invoice") == 0
    assert cer("Invoce", "Invoice") == 1 / 7
    assert cer("", "") == 0 and cer("x", "") == 1
