# ruff: noqa: E501, W291
"""The prompts the Tongyi-DeepResearch weights were trained on, verbatim (typos included), plus frontier's own.

The wording matters: the released model saw exactly these strings during training (Alibaba-NLP/DeepResearch
`inference/prompt.py` and `inference/react_agent.py`, commit f72f75d; ReSum's summary prompts from
`WebAgent/WebResummer/src/prompt.py`), so any change here can cost accuracy with those weights. The tool lines keep
the reference's "Google web searches" wording even when `search` runs over a local index: the model was trained on it,
and BrowseComp-Plus showed a local retriever behind the unchanged interface works.
"""

from __future__ import annotations

SYSTEM_PROMPT_HEAD = """You are a deep research assistant. Your core function is to conduct thorough, multi-source investigations into any topic. You must handle both broad, open-domain inquiries and queries within specialized academic fields. For every request, synthesize information from credible, diverse sources to deliver a comprehensive, accurate, and objective response. When you have gathered sufficient information and are ready to provide the definitive response, you must enclose the entire final answer within <answer></answer> tags.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
"""

SYSTEM_PROMPT_TAIL = """

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>

Current date: """

# One line per tool inside <tools>, exactly as the reference lists them (the reference's own tool classes describe
# themselves slightly differently; the model was trained on these).
TOOL_SIGNATURES = {
    "search": """{"type": "function", "function": {"name": "search", "description": "Perform Google web searches then returns a string of the top search results. Accepts multiple queries.", "parameters": {"type": "object", "properties": {"query": {"type": "array", "items": {"type": "string", "description": "The search query."}, "minItems": 1, "description": "The list of search queries."}}, "required": ["query"]}}}""",
    "visit": """{"type": "function", "function": {"name": "visit", "description": "Visit webpage(s) and return the summary of the content.", "parameters": {"type": "object", "properties": {"url": {"type": "array", "items": {"type": "string"}, "description": "The URL(s) of the webpage(s) to visit. Can be a single URL or an array of URLs."}, "goal": {"type": "string", "description": "The specific information goal for visiting webpage(s)."}}, "required": ["url", "goal"]}}}""",
    "PythonInterpreter": """{"type": "function", "function": {"name": "PythonInterpreter", "description": "Executes Python code in a sandboxed environment. To use this tool, you must follow this format:
1. The 'arguments' JSON object must be empty: {}.
2. The Python code to be executed must be placed immediately after the JSON block, enclosed within <code> and </code> tags.

IMPORTANT: Any output you want to see MUST be printed to standard output using the print() function.

Example of a correct call:
<tool_call>
{"name": "PythonInterpreter", "arguments": {}}
<code>
import numpy as np
# Your code here
print(f"The result is: {np.mean([1,2,3])}")
</code>
</tool_call>", "parameters": {"type": "object", "properties": {}, "required": []}}}""",
}

EXTRACTOR_PROMPT = """Please process the following webpage content and user goal to extract relevant information:

## **Webpage Content** 
{webpage_content}

## **User Goal**
{goal}

## **Task Guidelines**
1. **Content Scanning for Rationale**: Locate the **specific sections/data** directly related to the user's goal within the webpage content
2. **Key Extraction for Evidence**: Identify and extract the **most relevant information** from the content, you never miss any important information, output the **full original context** of the content as far as possible, it can be more than three paragraphs.
3. **Summary Output for Summary**: Organize into a concise paragraph with logical flow, prioritizing clarity and judge the contribution of the information to the goal.

**Final Output Format using JSON format has "rational", "evidence", "summary" feilds**
"""

# The last-resort turn when the context cap is reached (react_agent.py).
FORCED_ANSWER_PROMPT = "You have now reached the maximum context length you can handle. You should stop making tool calls and, based on all the information above, think again and provide what you consider the most likely answer in the following format:<think>your final thinking</think>\n<answer>your answer</answer>"

# Replaces the last message when the call budget ran out without an answer (react_agent.py).
CALLS_EXHAUSTED_MESSAGE = "Sorry, the number of llm calls exceeds the limit."


# ReSum: the summary model rewrites the question + recent history (+ the previous summary) into <summary>…</summary>.
# Placeholders are the reference's {{{name}}} markers, filled with str.replace (the history may contain braces).
RESUM_SUMMARY_PROMPT = """You are an expert at analyzing conversation history and extracting relevant information. Your task is to thoroughly evaluate the conversation history and current question to provide a comprehensive summary that will help answer the question.

Task Guidelines 
1. Information Analysis:
   - Carefully analyze the conversation history to identify truly useful information.
   - Focus on information that directly contributes to answering the question.
   - Do NOT make assumptions, guesses, or inferences beyond what is explicitly stated in the conversation.
   - If information is missing or unclear, do NOT include it in your summary.

2. Summary Requirements:
   - Extract only the most relevant information that is explicitly present in the conversation.
   - Synthesize information from multiple exchanges when relevant.
   - Only include information that is certain and clearly stated in the conversation.
   - Do NOT output or mention any information that is uncertain, insufficient, or cannot be confirmed from the conversation.

3. Output Format: Your response should be structured as follows:
<summary>
- Essential Information: [Organize the relevant and certain information from the conversation history that helps address the question.]
</summary>

Strictly avoid fabricating, inferring, or exaggerating any information not present in the conversation. Only output information that is certain and explicitly stated.

Question
{{{question}}} 

Conversation History
{{{recent_history_messages}}}

Please generate a comprehensive and useful summary. Note that you are not permitted to invoke tools during this process.
"""

RESUM_SUMMARY_PROMPT_WITH_LAST = """You are an expert at analyzing conversation history and extracting relevant information. Your task is to thoroughly evaluate the conversation history and current question to provide a comprehensive summary that will help answer the question.

The last summary serves as your starting point, marking the information landscape previously collected. Your role is to:
- Analyze progress made since the last summary
- Identify remaining information gaps
- Generate a useful summary that combines previous and new information
- Maintain continuity, especially when recent conversation history is limited

Task Guidelines

1. Information Analysis:
   - Carefully analyze the conversation history to identify truly useful information.
   - Focus on information that directly contributes to answering the question.
   - Do NOT make assumptions, guesses, or inferences beyond what is explicitly stated.
   - If information is missing or unclear, do NOT include it in your summary.
   - Use the last summary as a baseline when recent history is sparse.

2. Summary Requirements:
   - Extract only the most relevant information that is explicitly present in the conversation.
   - Synthesize information from multiple exchanges when relevant.
   - Only include information that is certain and clearly stated.
   - Do NOT output or mention any information that is uncertain, insufficient, or cannot be confirmed.

3. Output Format: Your response should be structured as follows:
<summary>
- Essential Information: [Organize the relevant and certain information from the conversation history that helps address the question.]
</summary>

Strictly avoid fabricating, inferring, or exaggerating any information not present in the conversation. Only output information that is certain and explicitly stated.

Question
{{{question}}}

Last Summary
{{{last_summary}}}

Conversation History
{{{recent_history_messages}}}

Please generate a comprehensive and useful summary. Note that you are not permitted to invoke tools during this process.
"""

# After a summary the conversation restarts from this user turn (WebResummer react_agent.py).
RESUM_RESTART_PROMPT = (
    "Question: {question}\nBelow is a summary of the previous conversation. This summary condenses key information "
    "from earlier steps, so please consider it carefully. Assess whether the summary provides enough information to "
    "answer the question and use it as the basis for further reasoning and information gathering to answer the "
    "question.\nSummary: {summary}\n"
)

# The reference's default equivalence judge (evaluation/prompt.py, JUDGE_PROMPT_GAIA; used for GAIA and WebWalkerQA).
JUDGE_PROMPT = """You are an evaluation assistant. Please determine if the predicted answer is equivalent to the labeled answer.

Question: {question}

Labeled Answer: {correct_answer}

Predicted Answer: {response}

Did the model give an answer **equivalent** to the labeled answer? Please respond with "Correct" if they are equivalent, or "Incorrect" if they are not equivalent. Do not include any other text."""

# frontier's own prompts for the two baselines the agent is compared with; both ask for the reference's answer tags.
CLOSED_BOOK_PROMPT = """Answer the question from your own knowledge. Think briefly, then give only the final answer (a name or a number) inside <answer></answer>.

Question: {question}"""

RAG_PROMPT = """Answer the question using the search results below. Think briefly, then give only the final answer (a name or a number) inside <answer></answer>.

Search results:
{results}

Question: {question}"""
