"""Read one assistant turn in the Tongyi-DeepResearch wire format: `<think>`, then `<tool_call>` or `<answer>`.

The reference (`inference/react_agent.py`) cuts a self-written `<tool_response>`, takes the text between the first
`<tool_call>` and `</tool_call>`, routes it to PythonInterpreter when "python" appears anywhere in it (so a search for
"python tutorial" became a formatting error), and otherwise parses it with json5. We keep its error strings, which the
released weights were trained on, but decide on the tool by the parsed name, and we turn every other malformed turn
(unclosed tags, no action at all) into an error the model sees, where the reference silently moved on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import json5

# Error texts of the reference, verbatim.
INVALID_TOOL_CALL = 'Error: Tool call is not a valid JSON. Tool call must contain a valid "name" and "arguments" field.'
PYTHON_FORMAT_ERROR = "[Python Interpreter Error]: Formatting error."

PYTHON_TOOL = "PythonInterpreter"


@dataclass(frozen=True)
class ToolCall:
    """A parsed call: `code` holds the `<code>` block of a PythonInterpreter call, whose `arguments` are `{}`."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    code: str | None = None


@dataclass(frozen=True)
class Turn:
    """One assistant turn: exactly one of `tool_call`, `answer` or `error` is set.

    `content` is the text kept in the history (cut before any `<tool_response>` the model wrote itself); `error` is
    what the model gets back inside `<tool_response>` when the turn could not be acted on.
    """

    content: str
    think: str | None = None
    tool_call: ToolCall | None = None
    answer: str | None = None
    error: str | None = None


def between(text: str, start: str, end: str) -> str | None:
    """The text between the first `start` and the next `end` after it, or None if either is missing."""
    begin = text.find(start)
    if begin < 0:
        return None
    begin += len(start)
    stop = text.find(end, begin)
    return None if stop < 0 else text[begin:stop]


def parse_turn(raw: str) -> Turn:
    """Parse what the model wrote; never raises, whatever the text."""
    wrote_response = "<tool_response>" in raw
    content = raw[: raw.find("<tool_response>")].strip() if wrote_response else raw.strip()
    think = between(content, "<think>", "</think>")
    think = think.strip() if think is not None else None

    # The action follows the reasoning: tags quoted while thinking ("put the answer in <answer></answer>") are not
    # one.
    closed = content.rfind("</think>")
    action = content[closed + len("</think>") :] if closed >= 0 else content
    answer = between(action, "<answer>", "</answer>")
    if answer is not None:
        return Turn(content, think, answer=answer.strip())

    call_text = between(action, "<tool_call>", "</tool_call>")
    if call_text is not None:
        call = _parse_tool_call(call_text)
        if isinstance(call, str):
            return Turn(content, think, error=call)
        return Turn(content, think, tool_call=call)

    return Turn(content, think, error=_missing_action_error(content, wrote_response))


def _parse_tool_call(text: str) -> ToolCall | str:
    """A ToolCall, or the error string the model should see."""
    json_part, code = text, None
    if "<code>" in text:
        json_part = text[: text.find("<code>")]
        code = between(text, "<code>", "</code>")
    try:
        call = json5.loads(json_part.strip())
    except Exception:  # json5 raises ValueError, but also RecursionError and others on odd input
        call = None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        # Broken JSON around a `<code>` block is still clearly a Python call (the reference's own routing rule).
        if "python" in text.lower():
            return ToolCall(PYTHON_TOOL, {}, code.strip()) if code is not None else PYTHON_FORMAT_ERROR
        return INVALID_TOOL_CALL
    name = call["name"]
    arguments = call.get("arguments", {})
    if name == PYTHON_TOOL:
        if code is None:
            return PYTHON_FORMAT_ERROR
        return ToolCall(name, {}, code.strip())
    if not isinstance(arguments, dict):
        return INVALID_TOOL_CALL
    return ToolCall(name, arguments)


def _missing_action_error(content: str, wrote_response: bool) -> str:
    if wrote_response:
        return (
            "Error: do not write <tool_response> yourself. Call a tool with <tool_call>{...}</tool_call> and wait "
            "for its response, or give the final answer inside <answer></answer>."
        )
    if "<tool_call>" in content:
        return "Error: <tool_call> was not closed. Write the call as <tool_call>{...}</tool_call>."
    if "<answer>" in content:
        return "Error: <answer> was not closed. Write the final answer as <answer>your answer</answer>."
    return (
        "Error: no tool call or answer found. Call a tool with <tool_call>{...}</tool_call>, or give the final answer "
        "inside <answer></answer>."
    )
