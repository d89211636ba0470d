"""The well-formed sampler's checker (note_matrix.abc.checker): real tunes pass whole, and each kind of
piece that cannot be right is refused where it closes, with the checker back where the piece began."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from note_matrix.abc import playable, split_tunes
from note_matrix.abc.checker import END_SYMBOL, MAX_RETRIES, MIN_BARS_TO_END, TuneChecker

HEADER = "X:1\nT:Test\nM:4/4\nL:1/8\nK:G\n"
BARS = ("GABc dedB", "dedB dedB", "c2ec B2dB", "ABcd efge", "fdec dcBA", "GFED CDEF", "cBAG FGAB", "c2c2 BcdB")


def read(checker: TuneChecker, text: str) -> list[int]:
    """Feed ``text``; the positions of the characters refused."""
    return [position for position, character in enumerate(text) if not checker.take(character)]


def a_tune(bars=BARS) -> str:
    return HEADER + "|:" + "|".join(bars) + ":|\n"


def test_a_whole_tune_is_taken_and_may_end():
    checker = TuneChecker()
    assert read(checker, a_tune()) == []
    assert END_SYMBOL not in checker.forbidden()
    assert checker.take(END_SYMBOL) and checker.ended and checker.text == a_tune()
    assert playable(checker.text).ok


@pytest.mark.skipif(not os.environ.get("NOTE_MATRIX_MIRROR"), reason="needs the dataset mirror")
def test_real_nottingham_tunes_are_taken_whole():
    folder = Path(os.environ["NOTE_MATRIX_MIRROR"]) / "nottingham" / "ABC_cleaned"
    tunes = [tune for path in sorted(folder.glob("*.abc")) for tune in split_tunes(path.read_text(encoding="utf-8"))]
    sample = random.Random(0).sample(tunes, 100)
    whole = 0
    for tune in sample:
        checker = TuneChecker()
        never_forbidden = all(c not in checker.forbidden() and checker.take(c) for c in tune)
        whole += never_forbidden and END_SYMBOL not in checker.forbidden()
    assert whole >= 98  # all 1,034: 1,030 (one has no M:, one an unclosed chord, two a comment mid-bar)


def test_an_overfull_bar_is_refused_and_the_checker_is_back_at_its_start():
    checker = TuneChecker()
    assert read(checker, HEADER + "|GABc dedB|") == []
    before = checker.text
    refused = read(checker, "GABc dedBA|")
    assert refused == [len("GABc dedBA")]
    assert checker.text == before and checker.retries == 1 and checker.refusals == 1
    assert read(checker, "GABc dedB|") == [] and checker.retries == 0  # a good bar closes the piece


def test_short_bars_a_pickup_and_a_pickup_pair_are_taken_others_refused_beyond_the_allowance():
    checker = TuneChecker()
    assert read(checker, HEADER + "D|" + "|".join(BARS[:4]) + "|G4:|\n") == []  # pickup, and a short last bar
    assert read(checker, "P:B\nd2|" + BARS[4] + "|") == []  # a new section opens with a pickup
    assert read(checker, "G6|") == []  # one short bar among a few is allowed
    assert read(checker, "G6|") == [2]  # a second is not, so early in the tune


def test_header_lines_that_cannot_be_right_are_refused():
    for bad in ("T:Test\nhello\n", "M:none\n", "X:2F\n", "M:4/4\nL:1/8\nM:3/4\n", "G:|:ABc|\n", "K:G\n"):
        checker = TuneChecker("X:1\n")
        refused = read(checker, bad)
        assert refused == [len(bad) - 1], bad  # the newline that ends the bad line
        assert checker.text == "X:1\n" + bad[: bad.rfind("\n", 0, -1) + 1]
    checker = TuneChecker("X:1\n")
    assert read(checker, "M:6/8\nK:Dmix\n") == [] and checker.forbidden() >= {END_SYMBOL}


def test_a_field_line_in_the_body_is_checked_and_bar_lines_in_it_are_not_bars():
    checker = TuneChecker(HEADER)
    assert read(checker, "|GABc dedB|\nM:3/4\n") == []
    assert read(checker, "GAB|") == []  # now 3/4
    refused = read(checker, "\nM:46||AB|\n")
    assert refused == [len("\nM:46||AB|")] and checker.text.endswith("GAB|")


def test_symbols_that_cannot_be_right_are_never_drawn():
    checker = TuneChecker()
    assert {"<start>", "<unk>", END_SYMBOL} <= checker.forbidden()
    read(checker, HEADER + '|"G')
    assert {"|", "\n", END_SYMBOL} <= checker.forbidden()  # inside a chord symbol
    read(checker, '"[GB')
    assert {"|", "\n"} <= checker.forbidden()  # inside a chord
    read(checker, "]d dedB|" + "|".join(BARS[: MIN_BARS_TO_END - 2]) + "|")
    assert END_SYMBOL in checker.forbidden()  # seven bars
    read(checker, BARS[0] + "|")
    assert END_SYMBOL not in checker.forbidden() and "<start>" in checker.forbidden()


def test_a_chord_symbol_no_chord_names_and_a_bar_without_end_are_refused():
    checker = TuneChecker(HEADER)
    assert read(checker, '|"G"GABc "D7"dedB|') == []
    assert read(checker, '"Hello"') == [6]  # its closing quote
    assert read(checker, "GABc" * 30)[0] <= 80  # no bar line for too long


def test_two_colons_end_a_bar_too():
    checker = TuneChecker(HEADER)
    assert read(checker, "|GABc dedB::dedB dedB|") == []
    assert read(checker, "GABc dedBA::") == [len("GABc dedBA:")]


def test_a_piece_refused_too_often_is_taken_as_it_is():
    checker = TuneChecker(HEADER + "|")
    for _ in range(MAX_RETRIES):
        assert read(checker, "G8G|") == [3]
    assert read(checker, "G8G|") == [] and checker.text.endswith("|G8G|") and checker.refusals == MAX_RETRIES


def test_a_bar_refused_too_often_gives_up_the_bar_before_it_as_far_back_as_the_primer():
    checker = TuneChecker(HEADER + "|")
    assert read(checker, "GABc dedB|") == []
    for _ in range(MAX_RETRIES):
        assert read(checker, "G8G|") == [3] and checker.back == 0 and checker.text == HEADER + "|GABc dedB|"
    assert read(checker, "G8G|") == [3] and checker.back == 1 and checker.text == HEADER + "|"
    assert read(checker, "dedB dedB|") == []  # the bar before, drawn again
    header = TuneChecker("X:1\n")
    assert read(header, "T:A\n") == []
    for _ in range(MAX_RETRIES):
        assert read(header, "K:G\n") == [3] and header.back == 0  # no M: yet
    assert read(header, "K:G\n") == [3] and header.back == 1 and header.text == "X:1\n"


def test_header_lines_start_with_a_field_letter_and_a_colon_and_k_waits_for_m():
    checker = TuneChecker("X:1\n")
    starts = set("abcdefgABCDEFG|\"' 1") | {"\n"}
    assert starts <= checker.forbidden() and "K" in checker.forbidden()
    assert not {"T", "M", "L", "%"} & checker.forbidden()
    read(checker, "M")
    assert checker.forbidden() >= set("abc:T|M") - {":"} and ":" not in checker.forbidden()
    read(checker, ":6/8\n")
    assert "K" not in checker.forbidden() and "M" in checker.forbidden()  # K: may come now; M: not again


def test_inside_a_chord_no_chord_symbol_field_or_second_chord_and_not_too_long():
    checker = TuneChecker(HEADER)
    read(checker, "|[GB")
    assert {'"', "[", ":", "\\", "|", "\n"} <= checker.forbidden() and " " not in checker.forbidden()
    assert read(checker, "d" * 30)[0] < 20  # refused once longer than the longest chord allowed


def test_each_time_a_piece_is_refused_too_often_twice_as_many_pieces_before_it_are_drawn_again():
    checker = TuneChecker(HEADER + "|")
    assert read(checker, "|".join(BARS[:5]) + "|") == []
    backs = []
    for _ in range(3):
        for _ in range(MAX_RETRIES):
            read(checker, "G8G|")
        read(checker, "G8G|")
        backs.append(checker.back)
        read(checker, "|".join(BARS[: checker.back]) + "|")
    assert backs == [1, 2, 4]
