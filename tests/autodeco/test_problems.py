"""The training-problem generator and the answer checker shared with evaluation."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from frontier.autodeco.problems import FAMILIES, check_answer, generate_problems, last_number
from frontier.errors import ConfigError


def test_problems_are_deterministic_distinct_and_cover_every_family():
    problems = generate_problems(200, seed=3)
    assert problems == generate_problems(200, seed=3)
    assert problems != generate_problems(200, seed=4)
    assert len({p.question for p in problems}) == 200
    assert {p.family for p in problems} == set(FAMILIES)


@pytest.mark.parametrize("family", ["arithmetic", "word_problems", "counting"])
def test_numeric_gold_answers_are_right(family):
    for problem in generate_problems(60, seed=1, families=(family,)):
        numbers = [int(n) for n in re.findall(r"\d+", problem.question)]
        answer = int(problem.answer)
        if family == "arithmetic":
            a, b = numbers[:2]
            assert answer in (a + b, a - b, b - a, a * b)  # "Subtract b from a" names b first
        elif family == "word_problems":
            a, b = numbers[:2]
            assert answer in (a + b, a - b, a * b, a // b, b // a)
        else:
            assert 1 <= answer <= 12
        assert problem.is_correct(f"The answer is {answer}.")
        assert not problem.is_correct(f"The answer is {answer + 1}.")


def test_date_answers_follow_the_calendar():
    for problem in generate_problems(40, seed=2, families=("dates",)):
        match = re.search(r"(\w+ \d+, \d{4})", problem.question)
        start = dt.datetime.strptime(match.group(1), "%B %d, %Y").date()
        gold = dt.datetime.strptime(problem.answer, "%m/%d/%Y").date()
        assert 1 <= abs((gold - start).days) <= 30
        assert problem.is_correct(f"So it is {gold.month}/{gold.day}/{gold.year}.")
        assert not problem.is_correct("I am not sure.")


@pytest.mark.parametrize(
    ("text", "number"),
    [("3 plus 4 is 7.", "7"), ("The total is 1,234", "1234"), ("seven apples", "7"), ("-12", "-12"),
     ("x2 and 3.5", "3.5"), ("no digits", None)],
)  # fmt: skip
def test_last_number(text, number):
    assert last_number(text) == number


def test_checker_compares_values_and_refuses_unknown_kinds():
    assert check_answer("It is 4.0", "4")
    assert not check_answer("It is 40", "4")
    with pytest.raises(ConfigError, match="unknown answer kind"):
        check_answer("4", "4", kind="text")


def test_unknown_family_is_named():
    with pytest.raises(ConfigError, match="unknown problem families"):
        generate_problems(3, families=("algebra",))
