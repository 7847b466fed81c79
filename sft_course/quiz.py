"""A multiple-choice self-check quiz: ipywidgets in JupyterLab, plain text everywhere else.

`show_quiz` always prints the questions as plain text (so a terminal, nbconvert or a test run shows them too)
and, inside a Jupyter kernel with ipywidgets, also displays one radio-button group and a "Check" button per
question. `answer_key` prints the answers with their explanations; notebooks keep it in a collapsed cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LETTERS = "abcdefgh"


@dataclass(frozen=True)
class QuizQuestion:
    """One question: the options, the index of the right one, and why it is right."""

    prompt: str
    options: tuple[str, ...]
    answer: int
    explanation: str

    def __post_init__(self):
        if not 2 <= len(self.options) <= len(LETTERS):
            raise ValueError(f"a question needs 2 to {len(LETTERS)} options, got {len(self.options)}: {self.prompt!r}")
        if not 0 <= self.answer < len(self.options):
            raise ValueError(
                f"answer index {self.answer} is not one of the {len(self.options)} options: {self.prompt!r}"
            )


def grade(questions: Sequence[QuizQuestion], choices: Mapping[int, int | str | None]) -> dict:
    """Score choices given as `{question index: option index or letter}`; unanswered questions count wrong."""
    right = []
    for i, q in enumerate(questions):
        choice = choices.get(i)
        if isinstance(choice, str):
            choice = LETTERS.index(choice.lower()) if choice.lower() in LETTERS else None
        right.append(choice == q.answer)
    return {"correct": sum(right), "total": len(questions), "score": sum(right) / len(questions), "right": right}


def feedback(question: QuizQuestion, choice: int | None) -> str:
    """What the learner sees after checking one answer."""
    if choice is None:
        return "Pick an option first."
    verdict = "Correct." if choice == question.answer else f"Not quite: the answer is ({LETTERS[question.answer]})."
    return f"{verdict} {question.explanation}"


def plain_text(questions: Sequence[QuizQuestion]) -> str:
    """The quiz as numbered questions with lettered options, without the answers."""
    lines = []
    for i, q in enumerate(questions, 1):
        lines.append(f"Q{i}. {q.prompt}")
        lines += [f"    ({LETTERS[j]}) {option}" for j, option in enumerate(q.options)]
    return "\n".join(lines)


def answer_key(questions: Sequence[QuizQuestion]) -> str:
    """One line per question: the right letter, the option and the explanation."""
    return "\n".join(
        f"Q{i}: ({LETTERS[q.answer]}) {q.options[q.answer]} | {q.explanation}" for i, q in enumerate(questions, 1)
    )


def quiz_widget(questions: Sequence[QuizQuestion]):
    """An ipywidgets box: per question a RadioButtons group, a Check button and a feedback line; a score button."""
    import ipywidgets as widgets

    rows, radios = [], []
    for i, q in enumerate(questions, 1):
        radio = widgets.RadioButtons(
            options=[(f"({LETTERS[j]}) {o}", j) for j, o in enumerate(q.options)],
            value=None,
            layout=widgets.Layout(width="auto"),
        )
        button = widgets.Button(description="Check")
        result = widgets.HTML()

        def check(_, q=q, radio=radio, result=result):
            result.value = feedback(q, radio.value)

        button.on_click(check)
        radios.append(radio)
        rows.append(widgets.VBox([widgets.HTML(f"<b>Q{i}.</b> {q.prompt}"), radio, widgets.HBox([button, result])]))
    score_button, score = widgets.Button(description="Score", button_style="primary"), widgets.HTML()

    def total(_):
        g = grade(questions, {i: r.value for i, r in enumerate(radios)})
        score.value = f"<b>{g['correct']} / {g['total']}</b> correct"

    score_button.on_click(total)
    box = widgets.VBox(rows + [widgets.HBox([score_button, score])])
    box.radios = radios  # for tests and for reading the choices programmatically
    return box


def show_quiz(questions: Sequence[QuizQuestion]):
    """Print the quiz as plain text; in a Jupyter kernel with ipywidgets, also display the interactive version."""
    print(plain_text(questions))
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return None
    box = quiz_widget(questions)
    display(box)
    return box
