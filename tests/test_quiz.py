"""The self-check quiz: grading, plain text without answers, and the widgets reacting to clicks."""

import pytest

from sft_course.quiz import QuizQuestion, answer_key, grade, plain_text, quiz_widget, show_quiz

QUESTIONS = [
    QuizQuestion(
        "Which label value is ignored by the loss?", ("0", "-100", "the pad id"), 1, "PyTorch's ignore_index."
    ),
    QuizQuestion("Is EOS a good pad token?", ("yes", "no"), 1, "Masking pads would mask the stop token."),
]


def test_grade_accepts_indices_and_letters_and_counts_missing_as_wrong():
    assert grade(QUESTIONS, {0: 1, 1: "b"})["correct"] == 2
    assert grade(QUESTIONS, {0: "B"})["right"] == [True, False]
    assert grade(QUESTIONS, {0: 0, 1: "z"})["score"] == 0.0


def test_plain_text_shows_options_but_not_answers():
    text = plain_text(QUESTIONS)
    assert "Q1. Which label value" in text and "    (b) -100" in text
    assert "ignore_index" not in text
    assert "Q2: (b) no | Masking pads" in answer_key(QUESTIONS)


def test_bad_questions_are_refused():
    with pytest.raises(ValueError, match="answer index 2"):
        QuizQuestion("?", ("a", "b"), 2, "")
    with pytest.raises(ValueError, match="2 to 8 options"):
        QuizQuestion("?", ("a",), 0, "")


def test_widget_check_and_score_buttons_give_feedback():
    box = quiz_widget(QUESTIONS)
    first = box.children[0]
    button, result = first.children[2].children
    button.click()
    assert result.value == "Pick an option first."
    box.radios[0].value = 0
    button.click()
    assert result.value.startswith("Not quite: the answer is (b).")
    box.radios[0].value = 1
    button.click()
    assert result.value.startswith("Correct.")
    score_button, score = box.children[-1].children
    score_button.click()
    assert "1 / 2" in score.value


def test_show_quiz_prints_plain_text_outside_a_kernel(capsys):
    assert show_quiz(QUESTIONS) is None
    assert "Q2. Is EOS a good pad token?" in capsys.readouterr().out
