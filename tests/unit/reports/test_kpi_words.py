from transforms.kpis import registry
from transforms.reports import kpi_words


def test_every_counter_and_indicator_has_vietnamese_words():
    assert set(kpi_words.COUNTER_VI) == set(registry.COUNTER)
    assert set(kpi_words.SCORE_WORDS_VI) == set(registry.INDICATOR)


def test_formula_in_words_follows_the_registry_terms():
    k = registry.KPI["satisfaction_rate"]  # population - dissatisfied
    words = kpi_words.in_words(k.numerator)
    assert words.startswith("(" + kpi_words.COUNTER_VI["population"]) and " - (" in words
    assert kpi_words.in_words(k.numerator, "en") == registry.in_words(k.numerator)
    assert kpi_words.in_words("received") == kpi_words.COUNTER_VI["received"]
