"""Research agent: a Tongyi-DeepResearch-style ReAct agent over a local corpus or the web."""
