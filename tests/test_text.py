"""Untrusted text: control and bidi characters removed once, whitespace folded."""

from __future__ import annotations

import random
import re

from mrt_engine.text import clean, clean_line, excerpt

# The definition, as one regular expression (the module uses a faster equivalent).
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_escape_sequences_and_bidi_overrides_become_inert():
    hostile = "\x1b[2J\x1b]8;;http://x\x07click\x1b]8;;\x07 \u202eevil\u202c \x9b31m"
    cleaned = clean(hostile)
    assert not CONTROL.search(cleaned)
    assert cleaned == "[2J]8;;http://xclick]8;; evil 31m"
    assert clean("tab\tand\nnewline stay") == "tab\tand\nnewline stay"


def test_clean_line_folds_every_kind_of_whitespace():
    assert clean_line("  a\r\n\tb\u00a0\u3000c\u2028d  ") == "a b c d"
    assert clean_line(None) == "" and clean_line(42) == "42"


def test_fast_paths_agree_with_the_definition():
    rng = random.Random(11)
    alphabet = [chr(i) for i in range(0x250)] + list(
        "\u202a\u202e\u2066\u2069\u2028\u00a0\u200b \n\t"
    ) * 5
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(30)))
        assert clean(text) == CONTROL.sub("", text)
        assert clean_line(text) == re.sub(r"\s+", " ", CONTROL.sub("", text)).strip()


def test_excerpt_cuts_at_a_word_and_marks_the_cut():
    assert excerpt("one two three four", 100) == "one two three four"
    cut = excerpt("alpha beta gamma delta epsilon", 20)
    assert cut == "alpha beta gamma…" and len(cut) <= 20


def test_a_count_of_one_takes_the_singular_and_every_other_count_the_plural():
    from mrt_engine.wording import plural

    assert plural(1, "try", "tries") == "1 try"
    assert [plural(n, "try", "tries") for n in (0, 2, 3)] == ["0 tries", "2 tries", "3 tries"]
    assert plural(1, "event") == "1 event" and plural(5, "event") == "5 events"
