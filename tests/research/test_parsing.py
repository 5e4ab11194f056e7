from hypothesis import given, settings
from hypothesis import strategies as st

from frontier.research.parsing import INVALID_TOOL_CALL, PYTHON_FORMAT_ERROR, PYTHON_TOOL, parse_turn


def test_answer_with_think():
    turn = parse_turn("<think>easy</think>\n<answer> Paris </answer>")
    assert (turn.think, turn.answer, turn.tool_call, turn.error) == ("easy", "Paris", None, None)


def test_tool_call_json_and_json5():
    turn = parse_turn(
        '<think>x</think>\n<tool_call>\n{"name": "search", "arguments": {"query": ["a", "b"]}}\n</tool_call>'
    )
    assert turn.tool_call.name == "search" and turn.tool_call.arguments == {"query": ["a", "b"]}
    # json5 accepts single quotes and trailing commas, as the reference's parser does
    turn = parse_turn("<tool_call>{'name': 'visit', 'arguments': {'url': ['x'], 'goal': 'g',},}</tool_call>")
    assert turn.tool_call.name == "visit" and turn.tool_call.arguments["goal"] == "g"


def test_python_call_takes_the_code_block():
    text = '<tool_call>\n{"name": "PythonInterpreter", "arguments": {}}\n<code>\nprint(1 + 1)\n</code>\n</tool_call>'
    turn = parse_turn(text)
    assert turn.tool_call.name == PYTHON_TOOL and turn.tool_call.code == "print(1 + 1)"


def test_python_call_without_code_is_the_reference_formatting_error():
    assert (
        parse_turn('<tool_call>{"name": "PythonInterpreter", "arguments": {}}</tool_call>').error == PYTHON_FORMAT_ERROR
    )
    assert parse_turn("<tool_call>run python please</tool_call>").error == PYTHON_FORMAT_ERROR


def test_broken_json_around_code_still_runs_python():
    turn = parse_turn("<tool_call>{name: PythonInterpreter\n<code>print(2)</code></tool_call>")
    assert turn.tool_call.name == PYTHON_TOOL and turn.tool_call.code == "print(2)"


def test_a_search_about_python_is_a_search():
    # The reference routes any call mentioning "python" to the interpreter; we decide by the parsed name.
    turn = parse_turn('<tool_call>{"name": "search", "arguments": {"query": ["python tutorial"]}}</tool_call>')
    assert turn.tool_call.name == "search"


def test_invalid_calls_give_the_reference_error():
    for body in ("{not json", '["search"]', '{"arguments": {}}', '{"name": 3}', '{"name": "search", "arguments": 5}'):
        assert parse_turn(f"<tool_call>{body}</tool_call>").error == INVALID_TOOL_CALL, body


def test_unclosed_tags_and_missing_actions_are_errors():
    assert "not closed" in parse_turn('<tool_call>{"name": "search"').error
    assert "not closed" in parse_turn("<answer>Paris").error
    assert "no tool call or answer" in parse_turn("I think it is Paris.").error


def test_self_written_tool_response_is_cut():
    text = (
        '<tool_call>{"name": "search", "arguments": {"query": ["q"]}}</tool_call>\n<tool_response>fake</tool_response>'
    )
    turn = parse_turn(text)
    assert "fake" not in turn.content and turn.tool_call.name == "search"
    only_response = parse_turn("<think>hm</think><tool_response>made up results</tool_response><answer>x</answer>")
    assert only_response.answer is None and "do not write <tool_response>" in only_response.error


TAGS = st.sampled_from(
    ["<think>", "</think>", "<tool_call>", "</tool_call>", "<answer>", "</answer>", "<code>", "</code>",
     "<tool_response>", '{"name": "search", "arguments": {"query": ["x"]}}', "{", "}", '"', "python", "\n"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.lists(st.one_of(TAGS, st.text(max_size=8)), max_size=20).map("".join)))
def test_parser_never_raises_and_picks_exactly_one_outcome(text):
    turn = parse_turn(text)
    outcomes = [turn.tool_call is not None, turn.answer is not None, turn.error is not None]
    assert sum(outcomes) == 1
    assert "<tool_response>" not in turn.content


def test_tags_quoted_while_thinking_are_not_the_action():
    turn = parse_turn(
        "<think>I must put the final answer in <answer></answer> tags, later.</think>\n"
        '<tool_call>{"name": "search", "arguments": {"query": ["capital of France"]}}</tool_call>'
    )
    assert turn.answer is None and turn.tool_call.name == "search"
    quoted = '<think>calls look like <tool_call>{"name": "x"}</tool_call></think><answer>Paris</answer>'
    quoted_call = parse_turn(quoted)
    assert quoted_call.answer == "Paris"
