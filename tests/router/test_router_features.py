"""Feature unit tests: each feature fires on the text it is meant for and stays quiet on look-alikes."""

from __future__ import annotations

from workbench import Message, Request
from workbench.router import WEIGHTS, Features, approx_tokens, extract_features, score_features
from workbench.router.classify import LONG_TOKENS, MEDIUM_TOKENS, to_messages


def feats(text: str) -> Features:
    return extract_features(to_messages(text))


def fired(text: str | list[dict[str, str]]) -> tuple[str, ...]:
    return score_features(extract_features(to_messages(text))).names


def test_approx_tokens_rounds_up_at_four_chars() -> None:
    assert approx_tokens("") == 0
    assert approx_tokens("abcd") == 1
    assert approx_tokens("abcde") == 2


def test_length_tiers_are_exclusive() -> None:
    assert "medium_prompt" not in fired("hello there")
    medium = "word " * (MEDIUM_TOKENS * 4 // 5 + 1)
    assert "medium_prompt" in fired(medium)
    long = "word " * (LONG_TOKENS * 4 // 5 + 1)
    names = fired(long)
    assert "long_prompt" in names and "medium_prompt" not in names


def test_code_block_fence_traceback_and_indent() -> None:
    assert feats("fix:\n```py\nx = 1\n```").code_blocks >= 1
    assert feats("Traceback (most recent call last):\n  File 'a.py'\nKeyError: 'x'").code_blocks >= 1
    assert feats("look:\n    return x + 1\n").code_blocks == 1
    assert feats("The weather is nice today.").code_blocks == 0


def test_code_task_needs_a_code_verb_near_a_code_noun() -> None:
    assert feats("Write a Python function that reverses a string.").code_task
    assert feats("Implement a queue in C++ please").code_task
    assert not feats("Write a haiku about the sea.").code_task
    assert not feats("Fix the grammar in this sentence: me and him goes.").code_task
    assert not feats("Which keyboard shortcut opens the code editor?").code_task


def test_code_keywords_and_symbols() -> None:
    assert feats("SELECT name FROM users WHERE id = 3").code_keywords >= 2
    # prose "where ... from" in lower case is not SQL
    assert feats("where do you come from").code_keywords == 0
    assert feats("const f = (a) => { return a[0] && a[1]; };").symbol_share > 0.06
    assert feats("An ordinary sentence, with a comma; and a semicolon.").symbol_share < 0.06


def test_latex_and_math_expressions() -> None:
    assert feats(r"Compute \int_0^1 x\,dx").latex >= 1
    assert feats("where $x^2 + 1$ is positive").latex >= 1
    assert feats("I paid $5 for it").latex == 0
    assert feats("Solve 3x + 7 = 2x - 5").math_exprs >= 2
    # hyphenated words are not subtraction
    assert feats("a well-known e-mail x-ray service").math_exprs == 0


def test_math_terms_and_tasks() -> None:
    assert feats("Find the eigenvalues of this matrix").math_terms >= 2
    assert feats("Find the derivative of sin(x)").math_task
    assert not feats("Find the root cause of the outage").math_task
    assert fired("What is the expected value and variance here?")[:2] == ("math_terms", "math_terms_many")


def test_reasoning_cues_strong_beats_weak() -> None:
    assert fired("Why is the sky blue?") == ("reasoning_weak",)
    assert fired("Compare tea and coffee") == ("reasoning_strong",)
    names = fired("Explain step by step why this works")
    assert "reasoning_strong" in names and "reasoning_weak" not in names
    assert fired("hello") == ()


def test_questions_constraints_and_long_form() -> None:
    assert "multi_question" in fired("What is it? Where is it?")
    assert "constraints" in fired("Requirements:\n- fast\n- cheap\n- small")
    assert "long_form" in fired("Write a 1500-word essay on rivers.")
    assert "long_form" in fired("Draft a project proposal for our team.")
    assert "long_form" not in fired("Send me the report now.")


def test_conversation_depth_counts_user_turns_and_reads_the_last_one() -> None:
    conv = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Prove it."},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "hi"},
    ]
    f = extract_features(to_messages(conv))
    assert f.user_turns == 2
    # cues come from the last user message only ("hi"), depth from the whole conversation
    assert fired(conv) == ("some_conversation",)
    deep = [*conv, {"role": "assistant", "content": "yes"}, {"role": "user", "content": "thanks"}]
    assert fired(deep) == ("deep_conversation",)


def test_score_is_the_sum_of_the_weights_that_fired() -> None:
    s = score_features(feats("Write a Python function and compare two approaches step by step."))
    assert s.value == round(sum(WEIGHTS[n] for n in s.names), 6)
    assert all(p == WEIGHTS[n] for n, p in s.reasons)


def test_inputs_request_completion_and_messages() -> None:
    chat = Request.chat("m", "Prove Fermat's little theorem.")
    assert to_messages(chat) == (Message("user", "Prove Fermat's little theorem."),)
    comp = Request.completion("m", "2 + 2 =")
    assert to_messages(comp) == (Message("user", "2 + 2 ="),)
    try:
        to_messages([{"text": "no role"}])
    except ValueError as e:
        assert "role" in str(e)
    else:
        raise AssertionError("a message without role/content must be refused")
